"""The shipped default model: it loads offline with no training step, and recognises real people.

The real-data test is the user's first five minutes on ECG-ID: enrol persons from their ``rec_1``
through the CLI with no ``--model``, then identify and verify their ``rec_2``. ECG-ID was never
used to train or select the default model (see experiments/train_default.py).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ecgbio.cli import app
from ecgbio.runs import DEFAULT_MODEL_DIR, load_run
from tests.conftest import shared

runner = CliRunner()
#: ECG-ID persons whose rec_2 exists, spread over the database (fixed, not chosen by the outcome).
PERSONS = [f"Person_{i:02d}" for i in range(1, 90, 8)]


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_default_model_ships_inside_the_package():
    files = {p.name: p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "classes.json", "thresholds.json"} <= set(files)
    assert sum(files.values()) < 10 * 2**20  # a few MB
    model = load_run("default")
    assert model.beat.leads == ("I",) and model.beat.rate == 100
    assert model.train_config.protocol == "general"
    assert not any(c.startswith("Person_") for c in model.classes)  # never saw ECG-ID


@pytest.mark.realdata
def test_enrol_ecgid_rec1_and_identify_rec2_with_the_default_model(tmp_path):
    root = shared("ecg-id-database-1.0.0")
    gallery = tmp_path / "gallery"
    for person in PERSONS:
        result = run("enroll", root / person / "rec_1.hea", "--gallery", gallery, "--id", person)
        assert result.exit_code == 0, result.output
    listed = json.loads(run("gallery", "list", gallery, "--json").stdout)
    assert {p["name"] for p in listed["persons"]} == set(PERSONS)
    top1 = 0
    for person in PERSONS:
        result = run("identify", root / person / "rec_2.hea", "--gallery", gallery, "--json")
        assert result.exit_code in (0, 1), result.output  # recognised or 'unknown'
        answer = json.loads(result.stdout)
        top1 += answer["candidates"][0]["person"] == person
    assert top1 >= len(PERSONS) - 2, f"{top1}/{len(PERSONS)} rec_2 identified at rank 1"
    claim = run(
        "verify", root / PERSONS[0] / "rec_2.hea", "--gallery", gallery, "--claim", PERSONS[0]
    )
    impostor = run(
        "verify", root / PERSONS[1] / "rec_2.hea", "--gallery", gallery, "--claim", PERSONS[0]
    )
    assert claim.exit_code == 0, claim.output  # the same person, another record
    assert impostor.exit_code == 1, impostor.output


def test_evaluate_with_the_default_model_warns_on_its_training_databases(tmp_path):
    from tests.fixtures import build_ptbxl_store

    store = build_ptbxl_store(tmp_path)  # PTB-XL-shaped (synthetic): its source says ptbxl
    result = run("evaluate", "--store", store, "--protocol", "enrol-probe")
    assert result.exit_code == 0, result.output
    assert "warning: the default model was trained on PTB-XL and MIT-BIH" in result.output


def test_a_missing_default_model_is_one_line_and_exit_2(tmp_path, monkeypatch):
    import ecgbio.rundir

    monkeypatch.setattr(ecgbio.rundir, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    record = tmp_path / "r.hea"  # never read: the model is looked up first
    result = run("enroll", record, "--gallery", tmp_path / "g", "--id", "x")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "the default model is not installed" in lines[0]
    assert not (tmp_path / "g").exists()  # nothing created


def test_report_will_not_write_into_the_installed_package():
    result = run("report", DEFAULT_MODEL_DIR)
    assert result.exit_code == 2 and "part of the installed ecgbio package" in result.output


def test_a_smaller_validation_compares_with_the_shipped_model_on_the_same_persons(tmp_path):
    from ecgbio.protocols import general_split
    from ecgbio.store import BeatStore
    from experiments.train_default import shipped_on_same_persons
    from tests.fixtures import build_ptbxl_store

    store = BeatStore.open(build_ptbxl_store(tmp_path))
    half, _ = shipped_on_same_persons(store, general_split(store, val_share=0.5))
    every, scores = shipped_on_same_persons(store, general_split(store, val_share=1.0))
    assert 2 <= half["persons"] < every["persons"]
    assert half["probes"] < every["probes"] and 0 <= half["rank1"] <= 1
    assert half["model_sha256"] == load_run(DEFAULT_MODEL_DIR).fingerprint
    # every (earlier, later) pair: at least as many trials as probes, scores saved for pairing
    assert every["pairs"]["trials"] >= every["probes"]
    assert every["pairs"]["rank1_ci"][0] <= every["pairs"]["rank1"] <= every["pairs"]["rank1_ci"][1]
    assert scores is not None and scores.hit.size == every["pairs"]["trials"]


def test_the_shipped_comparison_reads_a_lead_view_and_skips_another_window(tmp_path):
    from ecgbio.config import BeatConfig
    from ecgbio.prepare import prepare_store
    from ecgbio.protocols import general_split
    from ecgbio.sources.ptbxl import ptbxl_records
    from ecgbio.sources.synthetic import write_synthetic_cohort
    from ecgbio.store import BeatStore
    from experiments.train_default import shipped_on_same_persons

    root = write_synthetic_cohort(
        tmp_path / "ptbxl", n_persons=5, records_per_person=[2] * 5, duration_s=8.0, n_leads=2
    )
    stores = {}
    for name, beat in {
        "axis": BeatConfig(leads=("I", "II")),  # what --axis trains on: the model reads lead I
        "window": BeatConfig(before_s=0.25, after_s=0.45),
    }.items():
        prepare_store(ptbxl_records(root, rate=100), tmp_path / name, beat, progress=False)
        store = BeatStore.open(tmp_path / name)
        stores[name], _ = shipped_on_same_persons(store, general_split(store, val_share=0.5))
    assert "skipped" not in stores["axis"] and stores["axis"]["persons"] >= 2
    assert "store was prepared differently" in stores["window"]["skipped"]


def test_train_default_refuses_a_validation_share_outside_0_1(capsys):
    from experiments import train_default

    for share in ("0", "1.5"):
        with pytest.raises(SystemExit) as stop:
            train_default.main(["--val-share", share])
        assert stop.value.code == 2
        assert f"--val-share must be in (0, 1], got {float(share)}" in capsys.readouterr().err


def test_train_default_reads_mitdb_unless_told_none(tmp_path):
    from argparse import Namespace

    from ecgbio.errors import EcgbioError
    from ecgbio.sources.synthetic import write_synthetic_cohort
    from experiments.train_default import training_records

    root = write_synthetic_cohort(
        tmp_path / "ptbxl", n_persons=3, records_per_person=[1, 1, 2], duration_s=4.0, seed=1
    )
    alone = training_records(Namespace(root=root, rate=100, mitdb="none", cinc="none"), 1)
    assert len(alone) == 4 and not any(s.person.startswith("mitdb-") for s in alone)
    with pytest.raises(EcgbioError, match="no MIT-BIH records"):
        training_records(Namespace(root=root, rate=100, mitdb=tmp_path / "absent", cinc="none"), 1)


def test_train_default_caps_cinc_records_apart_and_refuses_bad_folds(capsys):
    from argparse import Namespace

    from experiments import train_default

    cap = train_default.beats_cap(Namespace(cinc_beats=12, mitdb_beats=100))
    assert cap("cinc2017/A00001") == 12 and cap("mitdb/100") == 100 and cap("1") == 100
    for argv in (["--folds", "1"], ["--folds", "5", "--fold", "5"]):
        with pytest.raises(SystemExit) as stop:
            train_default.main(argv)
        assert stop.value.code == 2 and "--folds needs" in capsys.readouterr().err
