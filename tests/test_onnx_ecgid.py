"""The shipped default model's ``model.onnx`` on real people (ECG-ID, issue #15).

* every beat of every ECG-ID record: torch and ONNX Runtime embeddings agree (cosine >= 0.9999);
* a cold ``ecgbio identify`` with the default backend never imports torch;
* ``--backend torch`` and ``--backend onnx`` give the same answer on a real record.

ECG-ID (310 records of 90 persons, lead I, 500 Hz) was never used to train or select the default
model. Skipped cleanly when ``../shared/data`` is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ecgbio.cli import app
from tests.conftest import shared

pytestmark = pytest.mark.realdata
runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
#: a few persons spread over the database (fixed, not chosen by the outcome)
PERSONS = ["Person_01", "Person_03", "Person_17", "Person_42", "Person_75"]


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ecgid() -> Path:
    return shared("ecg-id-database-1.0.0")


@pytest.fixture(scope="module")
def gallery(ecgid, tmp_path_factory) -> Path:
    """The PERSONS enrolled from their rec_1 with the default model (backend auto: ONNX)."""
    path = tmp_path_factory.mktemp("onnx-ecgid") / "g"
    for person in PERSONS:
        result = run("enroll", ecgid / person / "rec_1.hea", "--gallery", path, "--id", person)
        assert result.exit_code == 0, result.output
    return path


def test_torch_and_onnx_agree_on_every_ecgid_beat(ecgid):
    from ecgbio.embed import Embedder
    from ecgbio.errors import RecordError

    onnx = Embedder("default", backend="onnx")
    torch = Embedder("default", backend="torch")
    assert onnx.binding == torch.binding and onnx.fingerprint == torch.fingerprint
    records = sorted(ecgid.glob("Person_*/rec_*.hea"))
    assert len(records) == 310
    waves, owners = [], []
    for record in records:  # cut once (as Embedder.embed_record cuts), embedded by both
        try:
            beats = onnx.cut_record(record)[1].waves
        except RecordError:
            continue  # a record too poor for beats is refused alike by both backends
        waves.append(beats)
        owners += [record.parent.name + "/" + record.stem] * len(beats)
    waves_all = np.concatenate(waves)
    assert len(waves) >= 300 and len(waves_all) > 5000
    a, b = torch.embed_waves(waves_all), onnx.embed_waves(waves_all)
    cosines = np.sum(a * b, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= 0.9999, f"beat {worst} of {owners[worst]}: cosine {cosines[worst]}"
    assert np.abs(a - b).max() < 1e-4


def test_a_cold_identify_with_the_default_backend_never_imports_torch(ecgid, gallery):
    probe = ecgid / PERSONS[1] / "rec_2.hea"
    code = f"""
import json, sys
from ecgbio.cli import main
sys.argv = ["ecgbio", "identify", "--gallery", {str(gallery)!r}, {str(probe)!r}, "--json"]
try:
    main()
except SystemExit as stop:
    code = stop.code
print(json.dumps({{"exit": code, "torch": "torch" in sys.modules}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    *answer, last = out.stdout.strip().splitlines()
    assert json.loads(last) == {"exit": 0, "torch": False}
    assert json.loads("\n".join(answer))["decision"] == PERSONS[1]


def test_backend_torch_and_onnx_give_the_same_identification(ecgid, gallery):
    answers = {}
    for backend in ("torch", "onnx"):
        result = run(
            "identify", ecgid / PERSONS[1] / "rec_2.hea", "--gallery", gallery,
            "--backend", backend, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        answers[backend] = json.loads(result.stdout)
    torch, onnx = answers["torch"], answers["onnx"]
    assert torch["decision"] == onnx["decision"] == PERSONS[1]
    assert [c["person"] for c in torch["candidates"]] == [c["person"] for c in onnx["candidates"]]
    for t, o in zip(torch["candidates"], onnx["candidates"], strict=True):
        assert abs(t["score"] - o["score"]) < 1e-4
