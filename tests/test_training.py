"""Training: both heads get gradients, ArcFace weights are trained and saved, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import ecgbio.training.loop as loop
from ecgbio.cli import EXIT_ERROR, app
from ecgbio.config import ModelConfig, TrainConfig
from ecgbio.errors import ConfigError
from ecgbio.evaluate import evaluate_run
from ecgbio.models import IdentityModel
from ecgbio.models.resnet1d import ResNet1d
from ecgbio.runs import WEIGHTS_FILE, RunError, load_run
from ecgbio.training import train
from tests.fixtures import build_ptbxl_store, build_seed_store

TINY = ModelConfig(widths=(8, 16), blocks=(1, 1), embedding_dim=16, dropout=0.1)


def tiny_train(**kwargs) -> TrainConfig:
    defaults = dict(
        protocol="cross-session", epochs=2, batch_size=16, m_per_class=2, threads=1, patience=0
    )
    return TrainConfig(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return build_ptbxl_store(tmp_path_factory.mktemp("train"))


@pytest.mark.parametrize("leads, samples", [(1, 70), (12, 40), (2, 350)])
def test_backbone_shapes(leads, samples):
    net = ResNet1d(leads, ModelConfig(widths=(8, 16, 32), blocks=(1, 2, 1), embedding_dim=24))
    assert net(torch.randn(5, leads, samples)).shape == (5, 24)


@pytest.mark.parametrize("metric", ["arcface", "subcenter-arcface", "triplet", "arcface+triplet"])
def test_both_heads_get_gradients(metric):
    torch.manual_seed(0)
    model = IdentityModel(1, 6, TINY, tiny_train(metric_loss=metric))
    x, y = torch.randn(12, 1, 70), torch.arange(12) % 6
    out = model(x, y)
    assert set(out) >= {"loss", "softmax", "metric", "logits"} and out["logits"].shape == (12, 6)
    out["loss"].backward()
    assert model.softmax.fc.weight.grad.abs().sum() > 0
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0
    if "arcface" in metric:
        assert model.metric.arcface.W.grad.abs().sum() > 0
    emb = model.embed(x)
    assert torch.allclose(emb.norm(dim=1), torch.ones(12), atol=1e-5)


def test_arcface_weights_are_in_the_optimiser_and_saved(store, tmp_path):
    config = tiny_train(metric_loss="arcface")
    train(store, tmp_path / "run", TINY, config, progress=False, echo=None)
    saved = load_file(tmp_path / "run" / "model.safetensors")
    assert "metric.arcface.W" in saved
    torch.manual_seed(config.seed)
    initial = IdentityModel(1, 8, TINY, config).metric.arcface.W.detach()
    assert saved["metric.arcface.W"].shape == initial.shape
    assert not torch.allclose(saved["metric.arcface.W"], initial)  # it was trained
    run = load_run(tmp_path / "run")  # and loads back into the model
    assert torch.equal(run.model.metric.arcface.W.detach(), saved["metric.arcface.W"])


def test_run_directory_contents(store, tmp_path):
    result = train(store, tmp_path / "r", TINY, tiny_train(), progress=False, echo=None)
    out = tmp_path / "r"
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["protocol"] == "cross-session" and config["beat"]["rate"] == 100
    assert config["model"]["widths"] == [8, 16]
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss,") and len(history) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["persons"] == 8 and 0 <= metrics["test"]["rank1"] <= 1
    assert "by_enrol_beats" in metrics["test"] and "softmax" in metrics["test"]
    # the headline figures enrol from all beats of the gallery records
    assert metrics["test"]["rank1"] == metrics["test"]["by_enrol_beats"]["all"]["rank1"]
    assert list(metrics["test"]["by_enrol_beats"]) == ["1", "3", "5", "10", "all"]
    assert result.best_epoch in (1, 2)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_gives_the_same_model_as_an_uninterrupted_run(
    store, tmp_path, monkeypatch, ema_decay
):
    config = tiny_train(epochs=3, ema_decay=ema_decay)
    train(store, tmp_path / "full", TINY, config, progress=False, echo=None)

    real_epoch = loop._train_epoch

    def die_in_third_epoch(*args, **kwargs):
        if args[9] == 2:  # epoch index
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", die_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(store, tmp_path / "cut", TINY, config, progress=False, echo=None)
    monkeypatch.setattr(loop, "_train_epoch", real_epoch)
    state = json.loads((tmp_path / "cut/checkpoint/state.json").read_text())
    assert state["epoch"] == 2
    train(store, tmp_path / "cut", TINY, config, resume=True, progress=False, echo=None)
    names = ["last.safetensors"] + ([loop.EMA_FILE] if ema_decay else [])
    for name in names:
        full = load_file(tmp_path / "full/checkpoint" / name)
        cut = load_file(tmp_path / "cut/checkpoint" / name)
        assert full.keys() == cut.keys()
        for key in full:
            assert torch.equal(full[key], cut[key]), (name, key)
    assert (tmp_path / "full/history.csv").read_text().count("\n") == (
        tmp_path / "cut/history.csv"
    ).read_text().count("\n")


def test_ema_run_validates_and_keeps_the_weight_average(store, tmp_path):
    train(
        store, tmp_path / "r", TINY, tiny_train(epochs=1, ema_decay=0.5), progress=False, echo=None
    )
    kept = load_file(tmp_path / "r" / WEIGHTS_FILE)
    average = load_file(tmp_path / "r/checkpoint" / loop.EMA_FILE)
    last = load_file(tmp_path / "r/checkpoint/last.safetensors")
    assert int(average.pop("n_averaged")) > 1  # updated after every step
    assert kept.keys() == last.keys() == {k.removeprefix("module.") for k in average}
    for key in kept:
        assert torch.equal(kept[key], average["module." + key]), key
    weights = [k for k in kept if k.endswith("weight")]
    assert any(not torch.equal(kept[k], last[k]) for k in weights)  # not the live weights
    for decay in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="ema_decay must be in"):
            TrainConfig(ema_decay=decay)


def test_resume_refuses_other_options(store, tmp_path):
    train(store, tmp_path / "r", TINY, tiny_train(), progress=False, echo=None)
    with pytest.raises(RunError, match="--resume needs the same model and training options"):
        train(
            store, tmp_path / "r", TINY, tiny_train(lr=1e-2), resume=True, progress=False, echo=None
        )
    with pytest.raises(RunError, match="a run already exists here; use --resume"):
        train(store, tmp_path / "r", TINY, tiny_train(), progress=False, echo=None)


def test_seed_protocol_reports_the_seed_columns(tmp_path):
    store = build_seed_store(tmp_path)
    result = train(
        store,
        tmp_path / "seed",
        TINY,
        tiny_train(protocol="seed", epochs=2),
        progress=False,
        echo=None,
    )
    assert set(result.test) >= {"accuracy", "loss"} and result.classes == 4
    assert {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(result.train_last)


def test_unseen_training_and_enrol_probe_evaluation(store, tmp_path):
    result = train(
        store,
        tmp_path / "u",
        TINY,
        tiny_train(protocol="unseen", val_fraction=0.0),
        progress=False,
        echo=None,
    )
    assert result.test["persons"] == 8 and result.test["probes"] == 12
    thresholds = json.loads((tmp_path / "u/thresholds.json").read_text())
    assert set(thresholds) >= {"eer", "far=0.01", "far=0.001"}
    assert thresholds["far=0.001"]["far"] <= 0.001 and -1 <= thresholds["eer"]["threshold"] <= 1
    figures = evaluate_run(
        tmp_path / "u", store, "enrol-probe", enrol_beats=3, out=tmp_path / "eval"
    )
    assert figures["enrol_beats"] == 3 and figures["persons"] == 8
    assert json.loads((tmp_path / "eval/metrics.json").read_text())["rank1"] == figures["rank1"]


def test_general_training_with_time_augmentation_has_no_test_set(store, tmp_path):
    config = tiny_train(protocol="general", augment_stretch=0.08, augment_shift_s=0.02)
    result = train(store, tmp_path / "g", TINY, config, progress=False, echo=None)
    assert result.test == {} and {"rank1", "eer"} <= set(result.val)
    assert (tmp_path / "g/thresholds.json").is_file()  # validated on persons: operating points
    # every (earlier, later) record pair too, with intervals, its scores kept private
    assert result.val["pairs_trials"] >= 1 and len(result.val["pairs_rank1_ci"]) == 2
    pairs = tmp_path / "g" / loop.VAL_PAIRS_FILE
    assert pairs.stat().st_mode & 0o777 == 0o600
    with np.load(pairs, allow_pickle=False) as saved:
        assert saved["hit"].size == result.val["pairs_trials"]
    with pytest.raises(ConfigError, match="protocol general has no test set"):
        evaluate_run(tmp_path / "g", store, "general")
    assert evaluate_run(tmp_path / "g", store)["protocol"] == "enrol-probe"  # its natural test
    evaluate_run(tmp_path / "g", store, out=tmp_path / "ev")
    with pytest.raises(ConfigError, match="an evaluation exists here; use --overwrite"):
        evaluate_run(tmp_path / "g", store, out=tmp_path / "ev")
    evaluate_run(tmp_path / "g", store, out=tmp_path / "ev", overwrite=True)
    with pytest.raises(ConfigError, match="this is a run directory"):
        evaluate_run(tmp_path / "g", store, out=tmp_path / "g", overwrite=True)


def test_warp_keeps_the_r_peak_and_moves_the_rest():
    from ecgbio.training.augment import warp_beats

    x = torch.zeros(64, 1, 70)
    x[:, 0, 25] = 1.0  # an R-peak at index 25
    x[:, 0, 45] = 0.5  # a T wave after it
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(warp_beats(x, gen, 25), x)  # nothing asked, nothing changed
    stretched = warp_beats(x, gen, 25, stretch=0.2)
    assert torch.allclose(stretched[:, 0, 25], torch.ones(64))  # the pivot stays put
    t_wave = stretched[:, 0, 40:51].argmax(1) + 40
    assert t_wave.min() < 45 < t_wave.max()  # ... the T wave moves with the stretch
    shifted = warp_beats(x, gen, 25, shift=2.0)
    assert (shifted[:, 0].argmax(1) - 25).abs().max() <= 2


def test_evaluate_refuses_a_store_cut_differently(store, tmp_path):
    train(store, tmp_path / "r", TINY, tiny_train(), progress=False, echo=None)
    other = build_seed_store(tmp_path / "other")
    with pytest.raises(ConfigError, match="store was prepared differently from the model's beats"):
        evaluate_run(tmp_path / "r", other, "enrol-probe")


def test_corrupt_weights_are_a_clear_error(store, tmp_path):
    train(store, tmp_path / "r", TINY, tiny_train(epochs=1), progress=False, echo=None)
    (tmp_path / "r/model.safetensors").write_bytes(b"garbage")
    with pytest.raises(RunError, match=r"model\.safetensors: corrupt weights file"):
        load_run(tmp_path / "r")


def test_train_cli(store, tmp_path):
    runner = CliRunner()
    args = [
        "train",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "c"),
        "--protocol",
        "cross-session",
        "--epochs",
        "1",
        "--widths",
        "8,16",
        "--blocks",
        "1,1",
        "--embedding-dim",
        "16",
        "--batch-size",
        "16",
        "--m-per-class",
        "2",
        "--threads",
        "1",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classes"] == 8
    again = runner.invoke(app, args)
    assert again.exit_code == EXIT_ERROR and "a run already exists here" in again.stderr
    bad = runner.invoke(app, [*args[:-1], "--widths", "8,x"])
    assert bad.exit_code == EXIT_ERROR and "expected comma-separated integers" in bad.stderr
    warped = [*args[:4], str(tmp_path / "w"), *args[5:], "--stretch", "0.05", "--shift", "0.01"]
    assert runner.invoke(app, [*warped, "--ema", "0.99"]).exit_code == 0
    saved = json.loads((tmp_path / "w/config.json").read_text())["train"]
    assert (saved["augment_stretch"], saved["augment_shift_s"]) == (0.05, 0.01)
    assert saved["ema_decay"] == 0.99
    axis = runner.invoke(app, [*args[:4], str(tmp_path / "a"), *args[5:], "--axis", "20"])
    assert axis.exit_code == EXIT_ERROR and "needs a store whose first leads are I and II" in (
        axis.stderr
    )


def test_training_is_deterministic(store, tmp_path):
    for name in ("a", "b"):
        train(store, tmp_path / name, TINY, tiny_train(epochs=1), progress=False, echo=None)
    a = load_file(tmp_path / "a/model.safetensors")
    b = load_file(tmp_path / "b/model.safetensors")
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_fine_tuning_starts_from_the_pretrained_backbone(store, tmp_path):
    train(store, tmp_path / "pre", TINY, tiny_train(), progress=False, echo=None)
    config = tiny_train(epochs=1, lr=1e-12, augment=False)
    train(
        store, tmp_path / "ft", TINY, config, progress=False, echo=None, init_from=tmp_path / "pre"
    )
    pre, ft = load_run(tmp_path / "pre").model, load_run(tmp_path / "ft").model
    weights = [k for k in pre.backbone.state_dict() if k.endswith("weight")]
    for name in weights:  # lr ~0: the fine-tuned backbone is still the pretrained one
        assert torch.allclose(pre.backbone.state_dict()[name], ft.backbone.state_dict()[name])
    assert json.loads((tmp_path / "ft/config.json").read_text())["init_from"] == str(
        tmp_path / "pre"
    )
    other = ModelConfig(widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    other_store = build_ptbxl_store(tmp_path / "s500", rate=500)
    with pytest.raises(ConfigError, match="store was prepared differently"):
        train(
            other_store,
            tmp_path / "y",
            TINY,
            config,
            progress=False,
            echo=None,
            init_from=tmp_path / "pre",
        )
    with pytest.raises(RunError, match="same model config"):
        train(
            store,
            tmp_path / "x",
            other,
            config,
            progress=False,
            echo=None,
            init_from=tmp_path / "pre",
        )


def test_smoothing_keeps_the_mean_and_softens_the_peak():
    from ecgbio.training.augment import smooth_beats

    x = torch.zeros(16, 1, 70)
    x[:, 0, 25] = 1.0
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(smooth_beats(x, gen, 0.0), x)
    y = smooth_beats(x, gen, 0.3)
    assert torch.allclose(y.sum(-1), x.sum(-1))  # a low-pass: nothing added or lost
    assert (y[:, 0, 25] <= 1).all() and (y[:, 0, 25] >= 0.4).all()  # softened, not erased
    assert torch.allclose(y[:, 0, 24], y[:, 0, 26])  # symmetric: no shift of the R-peak
    with pytest.raises(ConfigError, match="augment_smooth"):
        TrainConfig(augment_smooth=0.5)


def test_lead_axis_rotation_stays_in_the_frontal_plane_within_the_angle():
    from ecgbio.training.augment import rotate_lead_axis

    gen = torch.Generator().manual_seed(0)
    hx, hy = torch.randn(256, 1, 70, generator=gen), torch.randn(256, 1, 70, generator=gen)
    lead_i = hx  # Einthoven: lead I reads the heart vector's horizontal part ...
    lead_ii = hx * 0.5 + hy * 3**0.5 / 2  # ... lead II the part along +60 degrees
    assert torch.equal(rotate_lead_axis(lead_i, lead_ii, gen, 0.0), lead_i)
    out = rotate_lead_axis(lead_i, lead_ii, gen, 30.0)
    basis = torch.cat([hx, hy], dim=1).transpose(1, 2)  # (beats, samples, 2)
    coef = torch.linalg.lstsq(basis, out.transpose(1, 2)).solution[..., 0]  # (cos t, sin t)
    assert torch.allclose(coef.norm(dim=1), torch.ones(256), atol=1e-4)  # a lead, not a gain
    angle = torch.rad2deg(torch.atan2(coef[:, 1], coef[:, 0]))
    assert angle.abs().max() <= 30.0 + 1e-3 and angle.min() < -20 and angle.max() > 20
    same = torch.randn(8, 1, 70, generator=gen)  # one limb lead standing in for both
    assert torch.equal(rotate_lead_axis(same, same.clone(), gen, 30.0), same)
    with pytest.raises(ConfigError, match="augment_axis_deg"):
        TrainConfig(augment_axis_deg=60)  # beyond 45 degrees lead I turns into another lead
    with pytest.raises(ConfigError, match="augment_axis_deg need augment"):
        TrainConfig(augment=False, augment_axis_deg=20)


def test_axis_augmented_model_reads_lead_i_only(tmp_path):
    from ecgbio.config import BeatConfig
    from ecgbio.prepare import prepare_store
    from ecgbio.sources.ptbxl import ptbxl_records
    from ecgbio.sources.synthetic import write_synthetic_cohort

    root = write_synthetic_cohort(
        tmp_path / "db", n_persons=8, records_per_person=[1] * 4 + [2] * 4, rate=500, n_leads=2
    )
    specs = ptbxl_records(root, rate=100)
    prepare_store(specs, tmp_path / "i-ii", BeatConfig(leads=("I", "II")), progress=False)
    prepare_store(specs, tmp_path / "i", BeatConfig(leads=("I",)), progress=False)
    config = tiny_train(protocol="general", augment_axis_deg=25)
    train(tmp_path / "i-ii", tmp_path / "run", TINY, config, progress=False, echo=None)
    run = json.loads((tmp_path / "run/config.json").read_text())
    assert run["beat"]["leads"] == ["I"] and run["leads"] == ["I"]
    assert load_run(tmp_path / "run").model.backbone.in_leads == 1
    assert evaluate_run(tmp_path / "run", tmp_path / "i")["persons"] == 4  # enrol from lead I
    with pytest.raises(ConfigError, match="needs a store whose first leads are I and II"):
        train(tmp_path / "i", tmp_path / "bad", TINY, config, progress=False, echo=None)
    zscored = BeatConfig(leads=("I", "II"), normalize="beat")
    prepare_store(specs, tmp_path / "z", zscored, progress=False)
    with pytest.raises(ConfigError, match="z-scored per beat"):
        train(tmp_path / "z", tmp_path / "bad", TINY, config, progress=False, echo=None)


def test_device_is_checked_and_not_part_of_the_recipe(store, tmp_path):
    with pytest.raises(ConfigError, match="device must be"):
        tiny_train(device="gpu")
    assert loop.resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert loop.resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            loop.resolve_device("cuda")
        result = CliRunner().invoke(
            app, ["train", "--store", str(store), "--out", str(tmp_path / "c"), "--device", "cuda"]
        )
        assert result.exit_code == EXIT_ERROR and "sees no CUDA GPU" in result.output
        assert not (tmp_path / "c").exists()  # refused before anything is written
    # a run may resume on another device: the device is where it ran, not what it is
    train(store, tmp_path / "r", TINY, tiny_train(epochs=1), progress=False, echo=None)
    resumed = train(
        store,
        tmp_path / "r",
        TINY,
        tiny_train(epochs=1, device="auto"),
        resume=True,
        progress=False,
        echo=None,
    )
    assert resumed.epochs_run == 1


def test_gain_and_noise_augmentation_are_options():
    with pytest.raises(ConfigError, match="augment_gain"):
        tiny_train(augment_gain=1.5)
    x = torch.ones(64, 1, 40)
    generator = torch.Generator().manual_seed(0)
    from ecgbio.training.augment import augment_beats

    out = augment_beats(x, generator, scale=0.35, offset=0, drift=0, noise=0)
    gains = out[:, 0, 0]
    assert gains.min() >= 0.65 - 1e-6 and gains.max() <= 1.35 + 1e-6 and gains.std() > 0.1
