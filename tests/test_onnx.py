"""ONNX export and torch-free inference (issue #15): ``ecgbio export --onnx``, the backends behind
``--backend auto|torch|onnx``, and the refusals of a stale, tampered or corrupt ``model.onnx``.

The tiny model of ``tests/test_gallery.py`` (on its synthetic cohort) serves the export and CLI
tests; ``tests/test_onnx_ecgid.py`` checks the shipped default model on ECG-ID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ecgbio.cli import app
from tests.cli_checks import one_line_error as assert_one_line_error
from tests.test_gallery import Cohort, make_cohort
from tests.test_tamper import snapshot

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    return make_cohort(tmp_path_factory.mktemp("onnx-cohort"))


@pytest.fixture(scope="module")
def exported(cohort, tmp_path_factory) -> Path:
    """A copy of the tiny run with its model.onnx (exported once for the module)."""
    from ecgbio.export import export_onnx

    run_dir = tmp_path_factory.mktemp("onnx-run") / "run"
    shutil.copytree(cohort.run, run_dir)
    result = export_onnx(run_dir)
    assert Path(result.path) == run_dir / "model.onnx" and result.min_cosine >= 0.9999
    return run_dir


def copy_run(source: Path, tmp: Path, name: str = "run") -> Path:
    target = tmp / name
    shutil.copytree(source, target)
    return target


def cohort_waves(cohort: Cohort, embedder) -> np.ndarray:
    """Real (synthetic-cohort) beats, cut as the model cuts them."""
    from ecgbio.beats import extract_beats
    from ecgbio.records import read_record

    config = embedder.beat_config
    waves = []
    for records in cohort.records.values():
        for record in records:
            rec = read_record(record, leads=embedder.read_leads, rate=config.rate)
            waves.append(extract_beats(rec, config).waves)
    return np.concatenate(waves)


# ------------------------------------------------------------------------------------- export


def test_export_writes_metadata_and_ort_agrees_with_torch_on_every_beat(cohort, exported):
    import onnx

    from ecgbio.backends import META_MODEL, META_OPSET, META_VERSION, META_WEIGHTS
    from ecgbio.embed import Embedder
    from ecgbio.rundir import fingerprint

    model = onnx.load(exported / "model.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[META_WEIGHTS] == fingerprint(exported / "model.safetensors")
    assert meta[META_VERSION] and int(meta[META_OPSET]) >= 17
    assert json.loads(meta[META_MODEL])["in_leads"] == 1
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[2].dim_param  # dynamic batch and sample axes
    # every convolution runs as a 2-D one over a height of 1 (ONNX Runtime's fast kernels)
    weights = {w.name: len(w.dims) for w in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(weights[n.input[1]] == 4 for n in convs)

    torch_e = Embedder(exported, backend="torch")
    onnx_e = Embedder(exported, backend="onnx")
    auto_e = Embedder(exported)
    assert (torch_e.backend, onnx_e.backend, auto_e.backend) == ("torch", "onnx", "onnx")
    assert torch_e.binding == onnx_e.binding and torch_e.fingerprint == onnx_e.fingerprint
    waves = cohort_waves(cohort, torch_e)
    a, b = torch_e.embed_waves(waves), onnx_e.embed_waves(waves)
    assert a.shape == b.shape == (len(waves), torch_e.dim) and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(a * b, axis=1)) >= 0.9999 and np.abs(a - b).max() < 1e-4
    assert onnx_e.embed_waves(waves[:0]).shape == (0, torch_e.dim)
    assert np.abs(onnx_e.embed_waves(waves[:1]) - a[:1]).max() < 1e-4  # batch of one
    longer = np.repeat(waves[:5], 3, axis=-1)  # another window: the file takes any length
    assert np.abs(onnx_e.embed_waves(longer) - torch_e.embed_waves(longer)).max() < 1e-4


def test_export_refuses_an_existing_file_and_force_replaces_it(cohort, tmp_path):
    from ecgbio.export import ExportError, export_onnx

    run_dir = copy_run(cohort.run, tmp_path)
    target = run_dir / "model.onnx"
    target.write_bytes(b"an older file")
    with pytest.raises(ExportError, match=r"model\.onnx: already exists; --force"):
        export_onnx(run_dir)
    assert target.read_bytes() == b"an older file"
    export_onnx(run_dir, force=True)
    assert target.read_bytes()[:16] != b"an older file"[:16] and target.stat().st_size > 1000
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def test_export_refuses_a_disagreement_and_leaves_nothing_behind(cohort, tmp_path, monkeypatch):
    import ecgbio.export

    run_dir = copy_run(cohort.run, tmp_path)
    before = sorted(p.name for p in run_dir.iterdir())
    monkeypatch.setattr(ecgbio.export, "MIN_COSINE", 1.5)  # no export can reach it
    with pytest.raises(ecgbio.export.ExportError, match=r"disagrees with torch.*nothing written"):
        ecgbio.export.export_onnx(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_cli_export(cohort, tmp_path):
    run_dir = copy_run(cohort.run, tmp_path)
    result = run("export", "--onnx", "--model", run_dir, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(run_dir / "model.onnx") and data["min_cosine"] >= 0.9999
    assert data["weights_sha256"] and data["opset"] >= 17 and data["beats_checked"] > 0

    before = (run_dir / "model.onnx").read_bytes()
    assert_one_line_error(
        run("export", "--onnx", "--model", run_dir), "model.onnx: already exists", "--force"
    )
    assert (run_dir / "model.onnx").read_bytes() == before
    forced = run("export", "--onnx", "--model", run_dir, "--force")
    assert forced.exit_code == 0 and "ONNX Runtime agrees with torch" in forced.stdout

    elsewhere = tmp_path / "out" / "net.onnx"
    other = run("export", "--onnx", "--model", run_dir, "--out", elsewhere, "--json")
    assert other.exit_code == 0 and elsewhere.is_file(), other.output
    assert_one_line_error(run("export", "--model", run_dir), "--onnx")
    assert_one_line_error(run("export", "--onnx", "--model", tmp_path / "nope"), "not found")


def test_an_out_under_a_file_is_one_line_before_the_export(tmp_path):
    """Was: unexpected FileExistsError (after the seconds of an export)."""
    a_file = tmp_path / "rec_1.hea"
    a_file.write_text("not a folder")
    out = a_file / "x.onnx"
    result = run("export", "--onnx", "--out", out)  # (the shipped model: refused before loading)
    assert_one_line_error(result, f"{a_file} is a file, not a folder", path=out)
    deeper = a_file / "sub" / "x.onnx"
    assert_one_line_error(run("export", "--onnx", "--out", deeper), "is a file", path=deeper)


def test_an_unwritable_out_is_one_line_and_leaves_no_model_without_digest(tmp_path, monkeypatch):
    """Was: unexpected FileNotFoundError (``--out /proc/x.onnx``). A model whose digest could
    not be written is removed: OnnxBackend would refuse it."""
    import ecgbio.export
    from ecgbio.export import ExportError

    if Path("/proc").is_dir():
        with pytest.raises(ExportError, match=r"^/proc/x\.onnx: cannot write the ONNX file here"):
            ecgbio.export._write(Path("/proc/x.onnx"), b"model")
    out = tmp_path / "x.onnx"
    blocked = tmp_path / "a file"
    blocked.write_text("")
    monkeypatch.setattr(ecgbio.export, "digest_path", lambda path: blocked / "x.sha256")
    with pytest.raises(ExportError, match=r"x\.onnx: cannot write the ONNX file here"):
        ecgbio.export._write(out, b"model")
    assert not out.exists()


# ------------------------------------------------------------------------------------ backends


def test_embedder_import_and_onnx_inference_never_import_torch(cohort, exported, tmp_path):
    """``from ecgbio.embed import Embedder`` stays torch-free, and so do a whole enrolment and
    identification through the library with a run that has model.onnx (backend auto)."""
    person = cohort.persons[0]
    mine, second = (str(r) for r in cohort.records[person][:2])
    code = f"""
import json, sys
from ecgbio.embed import Embedder
assert "torch" not in sys.modules, "importing ecgbio.embed imported torch"
from ecgbio.gallery import Gallery
e = Embedder({str(exported)!r})
with Gallery.create({str(tmp_path / "g")!r}, e) as g:
    g.enroll({person!r}, [{mine!r}])
    answer = g.identify({second!r})
print(json.dumps({{"backend": e.backend, "top": answer.candidates[0].person,
                  "torch": "torch" in sys.modules}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer == {"backend": "onnx", "top": person, "torch": False}


def test_a_gallery_enrolled_with_torch_identifies_with_onnx_and_back(cohort, exported, tmp_path):
    person = cohort.persons[0]
    mine, second = cohort.records[person][:2]
    galleries = {}
    for enrol in ("torch", "onnx"):
        gallery = tmp_path / f"g-{enrol}"
        common = ("--model", exported, "--gallery", gallery)
        done = run("enroll", *common, "--id", person, mine, "--backend", enrol, "--json")
        assert done.exit_code == 0, done.output
        for other in cohort.persons[1:3]:
            assert run("enroll", *common, "--id", other, cohort.records[other][0]).exit_code == 0
        galleries[enrol] = gallery
    answers = {}
    for enrol, gallery in galleries.items():
        for probe in ("torch", "onnx"):
            result = run(
                "identify", "--model", exported, "--gallery", gallery, second,
                "--backend", probe, "--json",
            )  # fmt: skip
            assert result.exit_code in (0, 1), result.output
            answers[enrol, probe] = json.loads(result.stdout)
    first = answers["torch", "torch"]
    for answer in answers.values():
        assert answer["decision"] == first["decision"]
        assert [c["person"] for c in answer["candidates"]] == [
            c["person"] for c in first["candidates"]
        ]
        for mine_c, ref_c in zip(answer["candidates"], first["candidates"], strict=True):
            assert abs(mine_c["score"] - ref_c["score"]) < 1e-4


def test_backend_onnx_without_model_onnx_is_one_line(cohort, tmp_path):
    person = cohort.persons[0]
    result = run(
        "enroll", "--model", cohort.run, "--gallery", tmp_path / "g", "--id", person,
        cohort.records[person][0], "--backend", "onnx",
    )  # fmt: skip
    assert_one_line_error(result, "no model.onnx", "ecgbio export --onnx --model")
    assert not (tmp_path / "g").exists()
    bad = run(
        "enroll", "--model", cohort.run, "--gallery", tmp_path / "g", "--id", person,
        cohort.records[person][0], "--backend", "tensorflow",
    )  # fmt: skip
    assert_one_line_error(bad, "unknown backend 'tensorflow'")


@pytest.mark.parametrize(
    "damage",
    [
        "other-weights",
        "model-config",
        "garbage",
        "no-metadata",
        "edited-sha",
        "edited-weights",
        "no-digest",
    ],
)
def test_a_stale_or_tampered_model_onnx_is_refused_and_the_gallery_kept(
    cohort, exported, tmp_path, damage
):
    """Exit 2, one line naming model.onnx and saying to re-export; never a silent fallback to
    torch, and the gallery exactly as it was (identify and a refused enrolment alike)."""
    import onnx

    from ecgbio.backends import META_WEIGHTS

    model = copy_run(exported, tmp_path, "model")
    person = cohort.persons[0]
    mine, second = cohort.records[person][:2]
    gallery = tmp_path / "g"
    assert (
        run("enroll", "--model", model, "--gallery", gallery, "--id", person, mine).exit_code == 0
    )
    before = snapshot(gallery)
    target = model / "model.onnx"
    if damage == "other-weights":  # the run re-trained (other weights) after the export
        shutil.copy(cohort.other_run / "model.safetensors", model / "model.safetensors")
        expected = ("exported from other weights", "stale or tampered")
    elif damage == "model-config":  # input_norm changes the network, not a weight
        config = json.loads((model / "config.json").read_text())
        config["model"]["input_norm"] = {"beat": "none", "none": "beat"}[
            config["model"]["input_norm"]
        ]
        (model / "config.json").write_text(json.dumps(config))
        expected = ("exported for another model config (model differ",)
    elif damage == "garbage":  # (with a digest to match: the reader's own check answers)
        target.write_bytes(b"\x00garbage, not a protobuf\xff" * 10)
        rehash(target)
        expected = ("not a readable ONNX model",)
    elif damage == "edited-weights":  # a weight scaled, the metadata left as it was
        proto = onnx.load(target)
        weight = max(proto.graph.initializer, key=lambda w: len(w.raw_data))
        values = onnx.numpy_helper.to_array(weight) * 1.5
        weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
        target.write_bytes(proto.SerializeToString())
        expected = ("changed since it was exported", "damaged or edited")
    elif damage == "no-digest":
        (model / "model.onnx.sha256").unlink()
        expected = ("no readable model.onnx.sha256 beside it",)
    else:
        proto = onnx.load(target)
        props = {p.key: p.value for p in proto.metadata_props}
        del proto.metadata_props[:]
        if damage == "edited-sha":
            props[META_WEIGHTS] = "0" * 64
            onnx.helper.set_model_props(proto, props)
            expected = ("exported from other weights",)
        else:
            expected = ("without ecgbio's weights fingerprint",)
        target.write_bytes(proto.SerializeToString())
        rehash(target)
    hint = f"re-export it: ecgbio export --onnx --model {model} --force"
    common = ("--model", model, "--gallery", gallery)
    text = assert_one_line_error(run("identify", *common, second), *expected, hint)
    assert text.startswith(f"error: {target}: ")
    assert_one_line_error(run("identify", *common, second, "--backend", "onnx"), *expected)
    refused = run("enroll", *common, "--id", "newcomer", cohort.records[cohort.persons[1]][0])
    assert_one_line_error(refused, *expected)
    assert snapshot(gallery) == before
    if damage not in ("other-weights", "model-config"):  # torch still works: the model is fine
        fine = run("identify", *common, second, "--backend", "torch")
        assert fine.exit_code in (0, 1), fine.output


def rehash(model: Path) -> None:
    """Write ``model``'s current sha256 beside it, as an export would."""
    import hashlib

    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    (model.parent / (model.name + ".sha256")).write_text(f"{digest}  {model.name}\n")


def test_evaluate_with_the_onnx_backend_gives_torchs_figures(cohort, exported):
    store = cohort.run.parent / "store100"  # where make_cohort's build_unseen_run put it
    assert store.is_dir()
    figures = {}
    for backend in ("torch", "onnx"):
        result = run(
            "evaluate", "--store", store, "--model", exported, "--backend", backend, "--json"
        )
        assert result.exit_code == 0, result.output
        figures[backend] = json.loads(result.stdout)
    assert figures["torch"]["backend"] == "torch" and figures["onnx"]["backend"] == "onnx"
    for key in ("rank1", "rank5", "eer", "auc", "probes", "persons"):
        assert figures["onnx"][key] == pytest.approx(figures["torch"][key], abs=1e-6), key
    assert_one_line_error(
        run("evaluate", "--store", store, "--model", cohort.run, "--backend", "onnx"),
        "no model.onnx",
    )


def test_the_shipped_default_model_has_a_current_model_onnx():
    """``ecgbio/models/default/model.onnx`` ships, about the size of its float32 weights, and
    matches the shipped weights (else every default-model command would refuse it)."""
    from ecgbio.backends import expected_metadata, open_backend
    from ecgbio.rundir import DEFAULT_MODEL_DIR, read_run

    path = DEFAULT_MODEL_DIR / "model.onnx"
    assert path.is_file() and 1e6 < path.stat().st_size < 6e6
    info, parsed, weights = read_run("default")
    encoder, run_info = open_backend(info, parsed, weights, "auto")
    assert encoder.name == "onnx" and run_info is info
    assert expected_metadata(info)["ecgbio.weights_sha256"] == info.fingerprint


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")  # torch's exporter
def test_conv1d_as_conv2d_keeps_shared_grouped_dilated_and_padded_convolutions():
    """The rewrite gives ONNX Runtime the same numbers for every kind of 1-D convolution torch
    exports: a weight two convolutions share, groups, dilation, stride, 'same' padding."""
    import onnx
    import onnxruntime as ort
    import torch

    from ecgbio.export import conv1d_as_conv2d

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv1d(4, 4, 3, padding=1)
            self.b = torch.nn.Conv1d(4, 4, 3, padding=1)
            self.b.weight = self.a.weight  # shared
            self.grouped = torch.nn.Conv1d(4, 8, 5, groups=2, dilation=2, stride=2, padding=4)
            self.same = torch.nn.Conv1d(8, 3, 4, padding="same")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.same(self.grouped(torch.relu(self.b(self.a(x)))))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(3, 4, 40)
    proto = torch.onnx.export(net, (x,), dynamo=True, verbose=False).model_proto
    before = proto.SerializeToString()
    assert conv1d_as_conv2d(proto) == 4
    weights = {w.name: len(w.dims) for w in proto.graph.initializer}
    assert all(weights[n.input[1]] == 4 for n in proto.graph.node if n.op_type == "Conv")
    onnx.checker.check_model(proto)
    outputs = []
    for data in (before, proto.SerializeToString()):
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        reference = net(x).numpy()
    assert outputs[1].shape == reference.shape
    assert np.abs(outputs[1] - reference).max() < 1e-5
    assert np.abs(outputs[1] - outputs[0]).max() < 1e-5
