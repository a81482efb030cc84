"""Arrays from Python (``ecgbio.Signal``, ``Embedder.embed_signal``) and ``--lead`` stand-ins
(issue #14 items 2 and 3), on the shipped default model (lead I, 100 Hz)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ecgbio
from ecgbio.cli import app
from ecgbio.records import read_record
from tests.conftest import shared, simulate_ecg, write_wfdb

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def embedder():
    return ecgbio.Embedder("default")


def _ecg(seed: int, heart_rate: float = 70.0, seconds: float = 12.0) -> np.ndarray:
    return simulate_ecg(seconds=seconds, fs=500, heart_rate=heart_rate, seed=seed)


def test_embed_signal_gives_the_template_embed_record_gives(embedder, tmp_path):
    path = write_wfdb(tmp_path, "rec", _ecg(0), 500, ["I"])
    rec = read_record(path, rate=None)  # the record's own samples, (leads, samples)
    from_file = embedder.embed_record(path)
    from_rows = embedder.embed_signal(rec.signal.T, rec.fs, leads=rec.leads, name="mine")
    from_cols = embedder.embed_signal(rec.signal, rec.fs, leads=rec.leads)  # (leads, samples)
    assert from_rows.n_beats == from_file.n_beats > 5
    np.testing.assert_allclose(from_rows.template, from_file.template, atol=1e-4)
    np.testing.assert_allclose(from_cols.template, from_file.template, atol=1e-4)
    assert from_rows.path == "<mine>" and from_rows.leads == ("I",)


def test_gallery_enrols_and_identifies_signals(embedder, tmp_path):
    gallery = ecgbio.Gallery.create(tmp_path / "g", embedder)
    with gallery:
        for i, rate in enumerate((55.0, 75.0, 95.0)):
            gallery.enroll(f"p{i}", [ecgbio.Signal(_ecg(i, rate), 500, ("I",), name=f"p{i}-1")])
        assert gallery.templates("p1")[0].record == "<p1-1>"
        result = gallery.identify(ecgbio.Signal(_ecg(1, 75.0), 500, ("I",), name="probe"))
        assert result.candidates[0].person == "p1"
        assert result.probe["record"] == "<probe>"
        assert not any("stands in" in w for w in result.warnings)
        verdict = gallery.verify("p1", ecgbio.Signal(_ecg(1, 75.0)[:, 0], 500, "I"))
        assert verdict.score > 0.9


@pytest.mark.parametrize(
    ("samples", "fs", "fragment"),
    [
        (np.full(6000, np.nan), 500, "entirely NaN"),
        (np.zeros(6000), 500, "flat"),
        (None, 1e6, "outside"),
        (None, float("nan"), "outside"),
    ],
)
def test_a_bad_signal_is_one_clean_error_naming_it(embedder, samples, fs, fragment):
    x = _ecg(0)[:, 0] if samples is None else samples
    with pytest.raises(ecgbio.EcgbioError) as err:
        embedder.embed_record(ecgbio.Signal(x, fs, ("I",), name="bad one"))
    text = str(err.value)
    assert text.startswith("<bad one>: ") and fragment in text and "\n" not in text, text


def test_a_signal_without_the_models_lead_is_refused(embedder):
    with pytest.raises(ecgbio.EcgbioError, match=r"<watch>: no lead 'I' \(leads: ECG\)"):
        embedder.embed_signal(_ecg(0), 500, leads=("ECG",), name="watch")


@pytest.fixture(scope="module")
def holter(tmp_path_factory) -> Path:
    """A record whose only lead is ECG1 (a Holter's name), and a second one of the same heart."""
    folder = tmp_path_factory.mktemp("holter")
    write_wfdb(folder, "day1", _ecg(3, 65.0), 500, ["ECG1"])
    write_wfdb(folder, "day2", _ecg(3, 65.0), 500, ["ECG1"])
    return folder


def test_lead_on_the_cli_reads_the_stand_in_and_says_so(holter, tmp_path):
    refused = run("beats", holter / "day1.hea")
    assert refused.exit_code == 2 and "no lead 'I'" in refused.output

    beats = run("beats", holter / "day1.hea", "--lead", "ECG1", "--json")
    assert beats.exit_code == 0, beats.output
    data = json.loads(beats.stdout)
    assert data["leads"] == ["ECG1"] and data["beats"] > 5
    assert data["warnings"] == [
        "lead ECG1 stands in for the model's lead I: the model was trained on lead I, so scores "
        "on another lead are less reliable"
    ]

    gallery = tmp_path / "g"
    enrol = run("enroll", holter / "day1.hea", "--gallery", gallery, "--id", "h", "--lead", "ECG1")
    assert enrol.exit_code == 0, enrol.output
    assert "lead ECG1 stands in for the model's lead I" in enrol.stdout

    ident = run("identify", holter / "day2.hea", "--gallery", gallery, "--lead", "ECG1", "--json")
    assert ident.exit_code in (0, 1), ident.output
    out = json.loads(ident.stdout)
    assert out["probe"]["leads"] == ["ECG1"]
    assert any("lead ECG1 stands in for the model's lead I" in w for w in out["warnings"])
    printed = run(
        "verify", holter / "day2.hea", "--gallery", gallery, "--claim", "h", "--lead", "ECG1"
    )
    assert printed.exit_code in (0, 1), printed.output
    assert "warning: lead ECG1 stands in for the model's lead I" in printed.stdout


def test_reading_another_lead_shares_the_model_and_leaves_the_embedder_as_it_was(embedder, holter):
    """``Embedder.reading``: what a service does per request (another lead, a CSV's rate)."""
    ecg1 = embedder.reading("ECG1", fs=250.0)
    assert ecg1.encoder is embedder.encoder and ecg1.fingerprint == embedder.fingerprint
    assert (ecg1.lead, ecg1.fs, embedder.lead, embedder.fs) == ("ECG1", 250.0, None, None)
    assert ecg1.embed_record(holter / "day1.hea").leads == ("ECG1",)
    with pytest.raises(ecgbio.EcgbioError, match="no lead 'I'"):
        embedder.embed_record(holter / "day1.hea")


@pytest.mark.parametrize("command", ["beats", "identify"])
def test_lead_naming_a_lead_the_record_lacks_is_one_line(holter, tmp_path, command):
    extra = ["--gallery", tmp_path / "none"] if command == "identify" else []
    if command == "identify":  # a gallery to open first
        ok = run(
            "enroll", holter / "day1.hea", "--gallery", extra[1], "--id", "h", "--lead", "ECG1"
        )
        assert ok.exit_code == 0, ok.output
    result = run(command, holter / "day2.hea", *extra, "--lead", "V9")
    assert result.exit_code == 2, result.output
    text = result.stderr.strip()
    assert "\n" not in text and "no lead 'V9' (leads: ECG1)" in text, text


def test_prepare_wfdb_lead_stores_the_stand_in_and_evaluate_warns(holter, tmp_path):
    from ecgbio.config import BeatConfig
    from ecgbio.evaluate import lead_warnings
    from ecgbio.store import BeatStore

    root = tmp_path / "db"
    for person, seed in (("Person_01", 3), ("Person_02", 4)):
        for rec in ("rec_1", "rec_2"):
            write_wfdb(root / person, rec, _ecg(seed), 500, ["ECG1"])
    out = tmp_path / "store"
    made = run("prepare", "wfdb", "--root", root, "--out", out, "--lead", "ECG1", "-q", "-j", 1)
    assert made.exit_code == 0, made.output
    store = BeatStore.open(out)
    assert list(store.leads) == ["I"]
    assert set(store.records["leads"]) == {"ECG1"}
    assert lead_warnings(BeatConfig(), store) == [
        "lead ECG1 stands in for the model's lead I: the model was trained on lead I, so scores "
        "on another lead are less reliable"
    ]
    assert lead_warnings(BeatConfig(leads=("ECG1",)), store) == []


@pytest.mark.realdata
def test_a_cinc2017_record_through_beats_lead_ecg():
    record = shared("cinc2017") / "training2017" / "A00001.hea"
    if not record.exists():
        pytest.skip(f"{record} not present")
    result = run("beats", record, "--lead", "ECG", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["leads"] == ["ECG"] and data["beats"] >= 5
    assert any("lead ECG stands in for the model's lead I" in w for w in data["warnings"])
