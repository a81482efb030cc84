"""Protocols: exact seed preprocessing, and no record or person leaking across splits."""

from __future__ import annotations

import numpy as np
import pytest

from ecgbio.errors import ConfigError
from ecgbio.protocols import (
    ClassifySet,
    MatchSet,
    cross_session_split,
    enrol_probe_split,
    general_split,
    make_split,
    seed_split,
    unseen_split,
)
from ecgbio.store import BeatStore
from tests.fixtures import RECORDS_PER_PERSON, build_ptbxl_store, build_seed_store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> BeatStore:
    return BeatStore.open(build_ptbxl_store(tmp_path_factory.mktemp("proto")))


@pytest.fixture(scope="module")
def seed_store(tmp_path_factory) -> BeatStore:
    return BeatStore.open(build_seed_store(tmp_path_factory.mktemp("seed")))


def records_of(store: BeatStore, rows: np.ndarray) -> set[str]:
    return set(store.index["record"].to_numpy()[rows])


def persons_of(store: BeatStore, rows: np.ndarray) -> set[str]:
    return set(store.index["person"].to_numpy()[rows])


def test_seed_protocol_reproduces_the_notebook(seed_store):
    split = seed_split(seed_store)
    assert seed_store.beats.shape[2] == 200  # 200-sample windows at 500 Hz
    assert seed_store.config.samples_before == 100  # centred on the R-peak
    assert split.n_classes == 4  # the +-2 mV record and the < 18-beat record are dropped
    assert "P8/loud" not in split.classes and "P9/short" not in split.classes
    assert split.info["records_over_2mV"] == 1
    assert len(split.train) == 16 * 4
    assert isinstance(split.val, ClassifySet) and isinstance(split.test, ClassifySet)
    assert len(split.val.rows) == 4 and len(split.test.rows) == 4
    index = seed_store.index
    for label, record in enumerate(split.classes):
        rows = np.concatenate(
            [
                split.train[split.train_labels == label],
                split.val.rows[split.val.labels == label],
                split.test.rows[split.test.labels == label],
            ]
        )
        # the first 18 windows of the record, each used exactly once
        assert sorted(index.loc[rows, "beat"]) == list(range(18))
        assert set(index.loc[rows, "record"]) == {record}
    all_rows = np.concatenate([split.train, split.val.rows, split.test.rows])
    assert len(np.unique(all_rows)) == len(all_rows)


def test_seed_protocol_refuses_other_windows(store):
    import dataclasses
    import json

    manifest = json.loads(json.dumps(store.manifest))
    manifest["config"]["after_s"] = 0.45  # a window to the end of the T wave
    longer = dataclasses.replace(store, manifest=manifest)
    with pytest.raises(ConfigError, match=r"0\.4 s windows centred .* --before 0\.2 --after 0\.2"):
        seed_split(longer)


def test_cross_session_never_trains_on_a_probe_record(store):
    split = cross_session_split(store)
    multi = [n for n in RECORDS_PER_PERSON if n >= 2]
    assert split.n_classes == len(multi)
    assert isinstance(split.test, MatchSet)
    probes = records_of(store, split.test.probe)
    assert len(probes) == len(multi)  # one probe record per person: the latest
    assert not probes & records_of(store, split.train)
    assert not probes & records_of(store, split.val.rows)
    assert not probes & records_of(store, split.test.gallery)
    assert persons_of(store, split.test.probe) == set(split.classes)
    sessions = store.index.drop_duplicates("record").set_index("record")["session"]
    for person in split.classes:
        probe = next(
            r for r in probes if store.index.set_index("record").loc[r, "person"].iloc[0] == person
        )
        others = store.index.loc[store.index["person"] == person, "record"].unique()
        assert all(sessions[probe] >= sessions[o] for o in others)
    # validation beats are the end of training records, never probe beats
    assert not set(split.val.rows) & set(split.train)


def test_unseen_never_trains_on_a_test_or_validation_person(store):
    split = unseen_split(store, val_fraction=0.25)
    train_p = persons_of(store, split.train)
    val_p = persons_of(store, split.val.gallery) | persons_of(store, split.val.probe)
    test_p = persons_of(store, split.test.gallery) | persons_of(store, split.test.probe)
    assert not train_p & val_p and not train_p & test_p and not val_p & test_p
    assert len(val_p) + len(test_p) == sum(n >= 2 for n in RECORDS_PER_PERSON)
    assert train_p == set(split.classes) and len(train_p) == RECORDS_PER_PERSON.count(1)
    gallery_records = records_of(store, split.test.gallery)
    assert len(gallery_records) == len(test_p)  # one gallery record per test person
    assert not gallery_records & records_of(store, split.test.probe)


def test_unseen_with_all_multi_record_persons_as_test(store):
    split = unseen_split(store, val_fraction=0.0)
    test_p = persons_of(store, split.test.gallery)
    assert len(test_p) == sum(n >= 2 for n in RECORDS_PER_PERSON)
    val_p = persons_of(store, split.val.gallery)
    assert val_p and not val_p & persons_of(store, split.train) and not val_p & test_p
    # validation pairs are the two halves of one record of an unseen training identity
    assert records_of(store, split.val.gallery) == records_of(store, split.val.probe)
    assert not set(split.val.gallery) & set(split.val.probe)


def test_unseen_folds_cover_every_person_once(store):
    tests = [persons_of(store, unseen_split(store, folds=3, fold=f).test.gallery) for f in range(3)]
    assert sum(len(t) for t in tests) == len(set().union(*tests))
    assert len(set().union(*tests)) == sum(n >= 2 for n in RECORDS_PER_PERSON)
    for f, test_p in enumerate(tests):
        assert not test_p & persons_of(store, unseen_split(store, folds=3, fold=f).train)


def test_general_validates_across_records_of_persons_it_never_trains_on(store):
    split = general_split(store, val_share=0.5)
    val_p = persons_of(store, split.val.gallery)
    multi = sum(n >= 2 for n in RECORDS_PER_PERSON)
    assert len(val_p) == round(0.5 * multi) and split.test is None
    assert not val_p & persons_of(store, split.train)
    # every other person trains, multi-record ones with all their records
    assert len(persons_of(store, split.train)) == len(RECORDS_PER_PERSON) - len(val_p)
    assert not records_of(store, split.val.gallery) & records_of(store, split.val.probe)
    everyone = general_split(store)  # the default: every multi-record person validates
    assert len(persons_of(store, everyone.val.gallery)) == multi


def test_general_spreads_capped_beats_over_the_record(store):
    full, capped = general_split(store), general_split(store, max_beats_per_record=3)
    first = store.index["record"].to_numpy()[full.train[0]]
    rows = full.train[store.index["record"].to_numpy()[full.train] == first]
    kept = capped.train[store.index["record"].to_numpy()[capped.train] == first]
    assert len(kept) == 3 and kept[0] == rows[0] and kept[-1] == rows[-1]


def test_general_folds_validate_every_multi_record_person_once_and_train_the_rest(store):
    multi = sum(n >= 2 for n in RECORDS_PER_PERSON)
    vals = [persons_of(store, general_split(store, folds=3, fold=f).val.gallery) for f in range(3)]
    assert sum(len(v) for v in vals) == len(set().union(*vals)) == multi
    for f, val_p in enumerate(vals):
        split = general_split(store, folds=3, fold=f)
        trained = persons_of(store, split.train)
        assert not val_p & trained
        assert set().union(*vals) - val_p <= trained  # the other folds' persons train
    with pytest.raises(ConfigError, match="fold must be in"):
        general_split(store, folds=3, fold=3)


def test_general_caps_beats_per_record_by_a_function_of_its_id(store):
    first = store.index["record"].iloc[0]
    split = general_split(store, max_beats_per_record=lambda r: 2 if r == first else 0)
    records = store.index["record"].to_numpy()[split.train]
    assert (records == first).sum() == 2
    full = general_split(store)
    other = store.index["record"].to_numpy()[full.train]
    assert (records != first).sum() == (other != first).sum()


def test_general_can_leave_persons_out_altogether(store):
    full = general_split(store)
    left_out = {
        sorted(persons_of(store, full.train))[0],
        sorted(persons_of(store, full.val.probe))[0],
    }
    split = general_split(store, exclude_persons=left_out)
    seen = persons_of(store, np.concatenate([split.train, split.val.gallery, split.val.probe]))
    assert not seen & left_out
    assert len(split.classes) == len(full.classes) - 1


def test_enrol_probe_uses_the_earliest_record_as_gallery(store):
    split = enrol_probe_split(store)
    assert split.n_classes == 0 and len(split.train) == 0
    first = store.records.sort_values(["person", "session", "order"]).groupby("person").head(1)
    multi = first[first["person"].isin(persons_of(store, split.test.probe))]
    assert records_of(store, split.test.gallery) == set(multi["record"])


def test_splits_are_deterministic(store):
    a, b = unseen_split(store, seed=3), unseen_split(store, seed=3)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.test.probe, b.test.probe)


def test_unknown_protocol(store):
    with pytest.raises(ConfigError, match="unknown protocol 'magic'"):
        make_split(store, "magic")


@pytest.fixture(scope="module")
def singles(tmp_path_factory) -> BeatStore:
    """Three persons with one record each: no protocol that matches records can be formed."""
    from ecgbio.config import BeatConfig
    from ecgbio.prepare import prepare_store
    from ecgbio.sources.folder import folder_records
    from tests.conftest import simulate_ecg, write_wfdb

    tmp = tmp_path_factory.mktemp("singles")
    for p in range(3):
        write_wfdb(tmp / "db" / f"P{p}", "r", simulate_ecg(6, 250, seed=p), 250)
    prepare_store(folder_records(tmp / "db"), tmp / "s", BeatConfig(rate=250), progress=False)
    return BeatStore.open(tmp / "s")


@pytest.mark.parametrize(
    "protocol, message",
    [
        ("cross-session", "cross-session needs persons with >= 2 records; this store has none"),
        ("unseen", "unseen needs >= 2 persons with >= 2 records"),
        ("enrol-probe", "enrol-probe needs persons with >= 2 records; this store has none"),
        ("general", "general needs >= 2 persons with >= 2 records"),
    ],
)
def test_protocols_refuse_stores_without_repeat_persons(singles, protocol, message):
    with pytest.raises(ConfigError, match=message) as err:
        make_split(singles, protocol)
    assert str(singles.root) in str(err.value) and "\n" not in str(err.value)


def test_train_cli_exit_code_for_an_impossible_protocol(singles, tmp_path):
    from typer.testing import CliRunner

    from ecgbio.cli import EXIT_ERROR, app

    result = CliRunner().invoke(
        app,
        [
            "train",
            "--store",
            str(singles.root),
            "--out",
            str(tmp_path / "r"),
            "--protocol",
            "cross-session",
        ],
    )
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.startswith("error: ") and "cross-session needs persons" in result.stderr
    assert not (tmp_path / "r").exists()
