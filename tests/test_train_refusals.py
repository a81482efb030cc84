"""Training and evaluation options no run could use, and runs that go wrong: each is refused with
one line naming the file or the option, never a traceback, and a failed first epoch never blocks
the rerun. Refusals live in the library (``TrainConfig``, ``train``, ``evaluate_run``), so the
Python API gets the same answer as the CLI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import ecgbio.training.loop as loop
from ecgbio.cli import app
from ecgbio.config import MAX_SHIFT_S, ModelConfig, TrainConfig
from ecgbio.errors import ConfigError
from ecgbio.evaluate import evaluate_run
from ecgbio.models import IdentityModel
from tests.cli_checks import one_line_error
from tests.fixtures import build_ptbxl_store
from tests.test_training import TINY
from tests.test_training import tiny_train as training_recipe

runner = CliRunner()


def tiny_train(**kwargs) -> TrainConfig:
    """test_training's tiny recipe, one epoch unless told otherwise."""
    return training_recipe(**{"epochs": 1, **kwargs})


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return build_ptbxl_store(tmp_path_factory.mktemp("refusals"))


def cli_train(store: Path, out: Path, *extra: object):
    args = ["train", "--store", store, "--out", out, "--protocol", "cross-session"]
    args += ["--widths", "8,16", "--blocks", "1,1", "--embedding-dim", "16", "--epochs", "1"]
    args += ["--batch-size", "16", "--m-per-class", "2", "--threads", "1", "--patience", "0"]
    return runner.invoke(app, [str(a) for a in [*args, "--quiet", *extra]])


# --- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"lr": math.nan}, "lr must be a finite number"),
        ({"lr": math.inf}, "lr must be a finite number"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"softmax_weight": math.nan}, "softmax_weight must be a finite number"),
        ({"metric_weight": -1.0}, "needs a positive weight (and neither a negative one)"),
        ({"softmax_weight": 0.0, "metric_weight": 0.0}, "needs a positive weight"),
        ({"arcface_margin": 90.0}, "arcface_margin must be in [0, 90) degrees"),
        ({"arcface_scale": 0.0}, "arcface_scale must be > 0"),
        ({"triplet_margin": -0.1}, "triplet_margin must be in [0, 2]"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in [0, 1)"),
        ({"threads": -1}, "threads must be >= 0"),
        ({"threads": 10**12}, "threads must be at most"),
        ({"seed": -1}, "seed must be in [0, 2**32)"),
        ({"seed": 99999999999999999999}, "seed must be in [0, 2**32)"),
        ({"batch_size": 0}, "batch_size must be >= 2, got 0"),
        ({"m_per_class": -1}, "m_per_class must be >= 1, got -1"),
        ({"batch_size": 10, "m_per_class": 4}, "must be a multiple of m_per_class"),
        ({"patience": -1}, "patience must be >= 0"),
        ({"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
        ({"augment_shift_s": 100.0}, f"must be in [0, {MAX_SHIFT_S:g}], got 100.0"),
        ({"augment_shift_s": -0.01}, "augment_shift_s is the R-peak jitter in seconds"),
    ],
)
def test_train_config_refuses_what_no_run_can_use(fields, problem):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**fields)
    assert problem in str(caught.value)


def test_train_config_keeps_the_recipes():
    """The shipped recipe and the edges of every range still train."""
    TrainConfig(augment_shift_s=MAX_SHIFT_S, seed=2**32 - 1, threads=0, lr=1e-6, patience=0)
    TrainConfig(softmax_weight=0.0, arcface_margin=0.0, label_smoothing=0.0, weight_decay=0.0)
    with pytest.raises(ConfigError, match="kernel sizes must be >= 1"):
        ModelConfig(kernel_size=-1)


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--lr", "nan", "lr must be a finite number"),
        ("--lr", "-1", "lr must be > 0"),
        ("--lr", "inf", "lr must be a finite number"),
        ("--softmax-weight", "nan", "softmax_weight must be a finite number"),
        ("--threads", "-1", "threads must be >= 0"),
        ("--seed", "99999999999999999999", "seed must be in [0, 2**32)"),
        ("--batch-size", "0", "batch_size must be >= 2"),
        ("--m-per-class", "-1", "m_per_class must be >= 1"),
        ("--patience", "-1", "patience must be >= 0"),
        ("--shift", "100", "R-peak jitter in seconds"),
    ],
)
def test_train_cli_refuses_them_before_writing_anything(store, tmp_path, option, value, problem):
    one_line_error(cli_train(store, tmp_path / "run", option, value), problem)
    assert not (tmp_path / "run").exists()


# --- where the run goes ---------------------------------------------------------------------------
def test_out_that_is_a_file_or_under_one_is_named(store, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a run")
    one_line_error(cli_train(store, afile), "is a file, not a directory", path=afile)
    sub = afile / "sub"
    one_line_error(cli_train(store, sub), f"{afile} is a file, not a directory", path=sub)
    assert afile.read_text() == "not a run"


def test_out_that_cannot_be_created_is_named(store, tmp_path, monkeypatch):
    def read_only(out: Path, resume: bool) -> None:
        raise PermissionError(13, "Permission denied", str(out))

    monkeypatch.setattr(loop, "_prepare_run_dir", read_only)
    out = tmp_path / "run"
    one_line_error(cli_train(store, out), "cannot write the run directory", path=out)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_under_proc_is_named(store):
    out = Path("/proc/ecgbio-no-run-here")
    one_line_error(cli_train(store, out), "cannot write the run directory", path=out)


# --- divergence and the rerun ---------------------------------------------------------------------
def test_diverged_training_says_so_and_the_rerun_names_overwrite(store, tmp_path):
    """A folder without a first checkpoint may hold a failed run or one still in its first
    epoch: a plain rerun is refused (two trainings in one folder), --overwrite starts again."""
    out = tmp_path / "run"
    diverged = cli_train(store, out, "--lr", "1e9")
    one_line_error(diverged, "training diverged in epoch 1", "became NaN or infinite", "--lr")
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint").exists()
    nothing = cli_train(store, out, "--lr", "1e9", "--resume")
    one_line_error(nothing, "nothing to resume", "--overwrite", "starts it again", path=out)
    plain = cli_train(store, out)
    one_line_error(plain, "has not reached its first checkpoint", "--overwrite", path=out)
    rerun = cli_train(store, out, "--json", "--overwrite")
    assert rerun.exit_code == 0, rerun.output
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 2e-3
    # a finished run stays protected, even with its checkpoint gone
    for item in (out / "checkpoint").iterdir():
        item.unlink()
    one_line_error(cli_train(store, out), "a run already exists here", path=out)


def test_weights_whose_outputs_overflow_are_divergence(store):
    """A last huge step can leave finite weights whose embeddings are NaN: validation would fail
    with a metrics error naming no cause, so the loop checks a few beats' embeddings too."""
    torch.manual_seed(0)
    model = IdentityModel(1, 4, TINY, tiny_train())
    probe = torch.randn(8, 1, 40)
    assert loop._broken(model, None, model, probe) == ""
    with torch.no_grad():
        for parameter in model.backbone.parameters():
            parameter.fill_(1e30)
    assert loop._broken(model, None, model, probe) == "embeddings"
    with torch.no_grad():
        next(model.parameters()).fill_(math.nan)
    assert loop._broken(model, None, model, probe) == "weights"


# --- resume ---------------------------------------------------------------------------------------
def test_resume_names_what_differs_and_a_damaged_state(store, tmp_path):
    out = tmp_path / "run"
    assert cli_train(store, out).exit_code == 0
    lr = cli_train(store, out, "--resume", "--lr", "0.01")
    one_line_error(lr, "--resume needs the same", "lr: 0.002 in the run, 0.01 now", path=out)
    wider = cli_train(store, out, "--resume", "--widths", "8,32", "--seed", "3")
    one_line_error(wider, "widths: 8,16 in the run, 8,32 now; seed: 0 in the run, 3 now")

    state = out / "checkpoint" / "state.json"
    for damaged in ("garbage\n", '["a list"]', '{"epoch": "x"}', '{"epoch": 1, "best_epoch": 1}'):
        state.write_text(damaged)
        resumed = cli_train(store, out, "--resume")
        one_line_error(resumed, "corrupt checkpoint state", "--overwrite", path=state)


# --- evaluate ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--enrol-beats", "-1", "--enrol-beats must be a whole number >= 0"),
        ("--threads", "-1", "--threads must be a whole number >= 0"),
        ("--threads", "99999999999", "--threads must be at most"),
    ],
)
def test_evaluate_refuses_negative_counts(store, option, value, problem):
    args = ["evaluate", "--store", str(store), "--protocol", "enrol-probe", option, value]
    one_line_error(runner.invoke(app, args), problem, only_output=True)
    with pytest.raises(ConfigError, match=problem):
        evaluate_run("default", store, "enrol-probe", **{option[2:].replace("-", "_"): int(value)})
