"""ECG-ID's enrol-records mode: which records enrol and which probe, on an ECG-ID-shaped folder.

Synthetic records, ``# ECG date`` headers as ECG-ID's; figures from them are test output only.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from ecgbio.evaluate import match_figures
from ecgbio.prepare import prepare_store
from ecgbio.runs import load_run
from ecgbio.sources.folder import folder_records
from ecgbio.store import BeatStore
from experiments.ecgid import enrol_records_sets, person_scores, probe_trials, run_enrol_records
from tests.conftest import simulate_ecg, write_wfdb

#: person -> [(record, ECG date)]; Person_D's dates run against its record numbers
PERSONS = {
    "Person_A": [("rec_1", "07.12.2004")],
    "Person_B": [("rec_1", "07.12.2004"), ("rec_2", "07.12.2004")],
    "Person_C": [("rec_1", "07.12.2004"), ("rec_2", "07.12.2004"), ("rec_3", "28.12.2004")],
    "Person_D": [
        ("rec_1", "10.01.2005"),
        ("rec_2", "07.12.2004"),
        ("rec_3", "07.12.2004"),
        ("rec_10", "01.02.2005"),
    ],
    "Person_E": [(f"rec_{i}", d) for i, d in enumerate(["07.12.2004"] * 2 + ["28.12.2004"] * 3, 1)],
    "Person_F": [(f"rec_{i}", "15.03.2005") for i in range(1, 5)],
}
#: records in the order ecgbio ranks them (date, then record number)
ORDERED = {
    "Person_B": ["rec_1", "rec_2"],
    "Person_C": ["rec_1", "rec_2", "rec_3"],
    "Person_D": ["rec_2", "rec_3", "rec_1", "rec_10"],
    "Person_E": ["rec_1", "rec_2", "rec_3", "rec_4", "rec_5"],
    "Person_F": ["rec_1", "rec_2", "rec_3", "rec_4"],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> BeatStore:
    tmp = tmp_path_factory.mktemp("enrol-records")
    root = tmp / "ecgid"
    for p, (person, records) in enumerate(PERSONS.items()):
        for r, (name, date) in enumerate(records):
            signal = simulate_ecg(6, 500, heart_rate=60 + 7 * p + r, seed=10 * p + r)
            write_wfdb(root / person, name, signal, 500, comments=[f"ECG date: {date}"])
    out = tmp / "store"
    beat = load_run("default").beat  # cut as the shipped model's beats, which the last test uses
    prepare_store(folder_records(root), out, beat, progress=False)
    return BeatStore.open(out)


def names(person: str, positions: range | list[int]) -> list[str]:
    return [f"{person}/{ORDERED[person][i]}" for i in positions]


def test_each_n_enrols_the_first_n_records_and_probes_the_later_ones(store):
    sets = {(s["setting"], s["n"]): s for s in enrol_records_sets(store)}
    assert set(sets) == {(s, n) for s in ("all", "same") for n in (1, 2, 3)}
    for n in (1, 2, 3):
        persons = [p for p, recs in ORDERED.items() if len(recs) > n]
        got = sets["all", n]
        assert got["gallery"] == [r for p in persons for r in names(p, range(n))]
        assert got["probes"] == [r for p in persons for r in names(p, range(n, len(ORDERED[p])))]
        assert got["days_from"] == got["gallery"]
    assert sets["all", 1]["gallery"][2] == "Person_D/rec_2"  # the earliest date, not rec_1


def test_the_same_persons_setting_changes_only_the_enrolment(store):
    sets = [s for s in enrol_records_sets(store) if s["setting"] == "same"]
    persons = ["Person_D", "Person_E", "Person_F"]  # >= 4 records
    probes = [r for p in persons for r in names(p, range(3, len(ORDERED[p])))]
    for s in sets:
        assert s["probes"] == probes  # identical for n = 1, 2, 3
        assert s["gallery"] == [r for p in persons for r in names(p, range(s["n"]))]
        assert s["days_from"] == [r for p in persons for r in names(p, range(3))]
        assert not set(s["gallery"]) & set(s["probes"])


def test_templates_score_as_the_gallery_does():
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(5, 8))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    templates, owners, probes = unit[:3], np.array(["b", "a", "b"]), unit[3:]
    persons, each = person_scores(probes, templates, owners, "each")
    assert list(persons) == ["a", "b"]
    np.testing.assert_allclose(each[:, 0], probes @ templates[1])
    np.testing.assert_allclose(each[:, 1], np.maximum(probes @ templates[0], probes @ templates[2]))
    persons, mean = person_scores(probes, templates, owners, "mean")
    b = templates[0] + templates[2]
    np.testing.assert_allclose(mean[:, 1], probes @ (b / np.linalg.norm(b)), rtol=1e-5)
    truth = np.array(["a", "b"])
    trials = probe_trials(mean, persons, truth)
    assert trials.hit.mean() == match_figures(mean, persons, truth)["rank1"]


def test_the_mode_runs_on_the_store(store):
    out = run_enrol_records(argparse.Namespace(model="default", threads=1), store)
    rows = {(r["setting"], r["enrol_records"], r["template_mode"]): r for r in out["rows"]}
    assert len(rows) == 12 and out["same_persons"] == {"min_records": 4, "persons": 3, "probes": 4}
    assert rows["same", 1, "each"]["rank1"] == rows["same", 1, "mean"]["rank1"]  # one template
    assert rows["all", 2, "each"]["persons"] == 4 and rows["all", 2, "each"]["probes"] == 8
    assert rows["same", 1, "each"]["other_day"]["probes"] == 1  # Person_D/rec_10 only
    assert rows["same", 3, "each"]["enrolled_over_several_days"] == 2  # Person_D and Person_E
    assert [(p["template_mode"], p["enrol_records"]) for p in out["paired"]] == [
        ("each", 2),
        ("each", 3),
        ("mean", 2),
        ("mean", 3),
    ]
