"""Named, deterministic splits of a beat store: pure functions over its index tables.

A protocol decides which beats train the model, which select it (validation) and which test it,
and guarantees that no test record (and, for ``unseen``, no test person) is seen in training; the
tests check this on fixtures for every protocol.

- ``seed``: the original notebook. Records within +-2 mV with >= 18 beats, the first 18 beats of each,
  every record its own class, beats split 16/1/1 inside each record (train/val/test).
- ``cross-session``: closed-set identification across recordings. Persons with >= 2 records; each
  person's latest record is the probe, the earlier ones train and enrol.
- ``unseen``: the biometric question. Persons with >= 2 records are held out (a fixed slice for
  validation, the rest for test) and never trained on; the others train. Gallery: each held-out
  person's earliest record; probes: their later records.
- ``general``: a general-purpose model, to be tested on other databases: every person trains except
  a validation slice of the multi-record persons, matched across their records (so the model is
  selected on other-session pairs, the question it will be asked); there is no test set.
- ``enrol-probe``: no training at all (for a model that has never seen the store's persons):
  gallery = each person's earliest record, probes = every later record.

Records are ordered by session (recording date) and then by their order in the source, so stores
without dates use recording order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecgbio.errors import ConfigError
from ecgbio.store import BeatStore

PROTOCOLS = ("seed", "cross-session", "unseen", "general", "enrol-probe")
SEED_BEATS = 18
SEED_MAX_ABS_MV = 2.0
SEED_WINDOW_S = 0.4
#: With ``val_fraction=0`` the unseen protocol validates on this share of the training identities
#: (at most ``VAL_SINGLE_MAX``), held out of training and matched first half vs second half of a record.
VAL_SINGLE_SHARE = 0.1
VAL_SINGLE_MAX = 500


@dataclass(frozen=True)
class ClassifySet:
    """Held-out beats of training classes: answered by the softmax head (accuracy, loss)."""

    rows: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class MatchSet:
    """Gallery and probe beats, matched record against record through embeddings.

    Templates are built per record (``BeatStore.index['record']``); the person label is
    ``index['person']``. ``classes`` maps persons to softmax classes when they are training classes
    (closed set), else it is empty.
    """

    gallery: np.ndarray
    probe: np.ndarray


@dataclass
class Split:
    """What a protocol gives the trainer and the evaluator."""

    protocol: str
    classes: list[str]
    train: np.ndarray
    train_labels: np.ndarray
    val: ClassifySet | MatchSet | None
    test: ClassifySet | MatchSet | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def make_split(
    store: BeatStore,
    protocol: str,
    seed: int = 0,
    val_fraction: float = 0.2,
    max_beats_per_record: int = 0,
) -> Split:
    """Build the named protocol's split for ``store``."""
    if protocol == "seed":
        return seed_split(store, seed=seed)
    if protocol == "cross-session":
        return cross_session_split(store, max_beats_per_record=max_beats_per_record)
    if protocol == "unseen":
        return unseen_split(
            store, seed=seed, val_fraction=val_fraction, max_beats_per_record=max_beats_per_record
        )
    if protocol == "general":
        return general_split(
            store,
            seed=seed,
            val_share=val_fraction or 1.0,
            max_beats_per_record=max_beats_per_record,
        )
    if protocol == "enrol-probe":
        return enrol_probe_split(store)
    raise ConfigError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")


# --- seed ----------------------------------------------------------------------------------------
def seed_split(store: BeatStore, seed: int = 0) -> Split:
    """The seed notebook's protocol (see module docstring); needs a store with 0.4 s windows."""
    cfg = store.config
    window_s = cfg.window_samples / cfg.rate
    if abs(window_s - SEED_WINDOW_S) > 1e-6 or cfg.samples_before != cfg.samples_after:
        raise ConfigError(
            f"the seed protocol needs 0.4 s windows centred on the R-peak (200 samples at 500 Hz); "
            f"this store has {cfg.window_samples} samples at {cfg.rate} Hz "
            f"(prepare with --before 0.2 --after 0.2)",
            store.root,
        )
    records = _ok_records(store)
    amp_ok = set(records.loc[records["max_abs_mv"].astype(float) <= SEED_MAX_ABS_MV, "record"])
    index = store.index
    counts = index.groupby("record").size()
    eligible = sorted(r for r in counts.index[counts >= SEED_BEATS] if r in amp_ok)
    if not eligible:
        raise ConfigError(
            f"no record has >= {SEED_BEATS} beats within +-{SEED_MAX_ABS_MV} mV", store.root
        )
    rng = np.random.default_rng(seed)
    train, train_y, val, val_y, test, test_y = [], [], [], [], [], []
    rows_by_record = index.groupby("record").indices
    for label, record in enumerate(eligible):
        rows = np.sort(rows_by_record[record])[:SEED_BEATS]  # the first 18 windows
        perm = rng.permutation(SEED_BEATS)
        train.append(rows[perm[:16]])
        val.append(rows[perm[16:17]])
        test.append(rows[perm[17:18]])
        train_y += [label] * 16
        val_y.append(label)
        test_y.append(label)
    info = {
        "classes": len(eligible),
        "records_considered": int(len(records)),
        "records_over_2mV": int(len(records) - len(amp_ok)),
        "records_with_18_beats": int((counts >= SEED_BEATS).sum()),
    }
    return Split(
        "seed",
        eligible,
        np.concatenate(train),
        np.asarray(train_y),
        ClassifySet(np.concatenate(val), np.asarray(val_y)),
        ClassifySet(np.concatenate(test), np.asarray(test_y)),
        info,
    )


# --- cross-session -------------------------------------------------------------------------------
def cross_session_split(
    store: BeatStore, max_beats_per_record: int = 0, val_share: float = 0.2
) -> Split:
    """Closed-set identification across recordings (see module docstring).

    Validation: the last ``val_share`` of the beats (at least one) of every training record, in time
    order, answered by the softmax head; test records are never used for model selection.
    """
    records = _ordered_records(store)
    multi = records.groupby("person").filter(lambda g: len(g) >= 2)
    if multi.empty:
        raise ConfigError(
            "cross-session needs persons with >= 2 records; this store has none", store.root
        )
    persons = sorted(multi["person"].unique())
    label_of = {p: i for i, p in enumerate(persons)}
    probe_records = multi.groupby("person").tail(1)["record"]
    train_records = multi.loc[~multi["record"].isin(set(probe_records)), "record"]
    rows_by_record = store.index.groupby("record").indices
    train, train_y, val, val_y, gallery = [], [], [], [], []
    for record in train_records:
        rows = np.sort(rows_by_record[record])
        gallery.append(rows)
        n_val = max(1, int(round(val_share * len(rows)))) if len(rows) > 1 else 0
        fit = rows[: len(rows) - n_val]
        if max_beats_per_record:
            fit = fit[:max_beats_per_record]
        label = label_of[store.index.at[rows[0], "person"]]
        train.append(fit)
        train_y += [label] * len(fit)
        val.append(rows[len(rows) - n_val :])
        val_y += [label] * n_val
    probe = np.concatenate([np.sort(rows_by_record[r]) for r in probe_records])
    info = {
        "persons": len(persons),
        "train_records": int(len(train_records)),
        "probe_records": int(len(probe_records)),
    }
    return Split(
        "cross-session",
        persons,
        np.concatenate(train),
        np.asarray(train_y),
        ClassifySet(np.concatenate(val), np.asarray(val_y)),
        MatchSet(np.concatenate(gallery), probe),
        info,
    )


# --- unseen --------------------------------------------------------------------------------------
def unseen_split(
    store: BeatStore,
    seed: int = 0,
    val_fraction: float = 0.2,
    max_beats_per_record: int = 0,
    folds: int = 0,
    fold: int = 0,
) -> Split:
    """Persons in the test gallery are never trained on (see module docstring).

    With ``folds`` > 0 the multi-record persons are dealt into ``folds`` folds (deterministically);
    fold ``fold`` is the test, the other folds' persons join training, and the validation persons
    are a slice of them (for stores such as ECG-ID where every person has several records).
    """
    records = _ordered_records(store)
    n_records = records.groupby("person")["record"].transform("size")
    multi_persons = sorted(records.loc[n_records >= 2, "person"].unique())
    if len(multi_persons) < 2:
        raise ConfigError(
            "unseen needs >= 2 persons with >= 2 records to form a gallery and probes", store.root
        )
    ranked = sorted(multi_persons, key=lambda p: _stable_hash(p, seed))
    if folds:
        if not 0 <= fold < folds:
            raise ConfigError(f"fold must be in [0, {folds}), got {fold}")
        test_persons = set(ranked[fold::folds])
        rest = [p for p in ranked if p not in test_persons]
        val_persons = set(rest[: max(2, int(round(val_fraction * len(rest))))])
    elif val_fraction > 0:
        n_val = max(2, int(round(val_fraction * len(ranked))))
        val_persons, test_persons = set(ranked[:n_val]), set(ranked[n_val:])
    else:  # every multi-record person is a test person; validate on unseen single-record persons
        val_persons, test_persons = set(), set(ranked)
    held_out = val_persons | test_persons
    train_records = records[~records["person"].isin(held_out)]
    rows_by_record = store.index.groupby("record").indices
    val: MatchSet
    if val_persons:
        val = _gallery_probe(records, rows_by_record, val_persons)
    else:
        singles = sorted(train_records["person"].unique(), key=lambda p: _stable_hash(p, seed))
        n_val = min(VAL_SINGLE_MAX, max(2, int(round(VAL_SINGLE_SHARE * len(singles)))))
        val_persons = set(singles[:n_val])
        val = _within_record(
            train_records[train_records["person"].isin(val_persons)], rows_by_record
        )
        train_records = train_records[~train_records["person"].isin(val_persons)]
    if train_records["person"].nunique() < 2:
        raise ConfigError(
            "unseen leaves fewer than 2 training identities (every person has several "
            "records): use folds",
            store.root,
        )
    classes, train, train_y = _person_classes(
        train_records, rows_by_record, lambda rows: rows[: max_beats_per_record or None]
    )
    info = {
        "train_identities": len(classes),
        "train_records": int(len(train_records)),
        "val_persons": len(val_persons),
        "test_persons": len(test_persons),
        "folds": folds,
        "fold": fold,
    }
    return Split(
        "unseen",
        classes,
        train,
        train_y,
        val,
        _gallery_probe(records, rows_by_record, test_persons),
        info,
    )


# --- general -------------------------------------------------------------------------------------
def general_split(
    store: BeatStore,
    seed: int = 0,
    val_share: float = 1.0,
    max_beats_per_record: int | Callable[[str], int] = 0,
    exclude_persons: Collection[str] = (),
    folds: int = 0,
    fold: int = 0,
) -> Split:
    """Every person trains except ``val_share`` of the multi-record persons (see module docstring).

    ``max_beats_per_record`` keeps that many beats of each training record, spread evenly over it, so
    a 30-minute record (MIT-BIH) lends beats from its whole length without outweighing the 10 s
    records of other persons; a function of the record id gives each database its own cap.
    ``exclude_persons`` are left out altogether, neither trained nor validated on: a model
    pretrained for a downstream task must not have seen its test persons. With ``folds`` > 0 the
    multi-record persons are dealt into that many folds and fold ``fold`` validates, the others
    train (``val_share`` is then unused): every person validates once over the folds, and the
    only cross-session examples in a store can both train a model and choose its recipe.
    """
    if not 0 < val_share <= 1:
        raise ConfigError(f"val_share must be in (0, 1], got {val_share}")
    if folds and not 0 <= fold < folds:
        raise ConfigError(f"fold must be in [0, {folds}), got {fold}")
    records = _ordered_records(store)
    records = records[~records["person"].isin(set(exclude_persons))]
    n_records = records.groupby("person")["record"].transform("size")
    multi = sorted(
        records.loc[n_records >= 2, "person"].unique(), key=lambda p: _stable_hash(p, seed)
    )
    if len(multi) < 2:
        raise ConfigError(
            "general needs >= 2 persons with >= 2 records to validate across records", store.root
        )
    if folds:
        val_persons = set(multi[fold::folds])
    else:
        val_persons = set(multi[: max(2, int(round(val_share * len(multi))))])
    train_records = records[~records["person"].isin(val_persons)]
    if train_records["person"].nunique() < 2:
        raise ConfigError("general leaves fewer than 2 training identities", store.root)
    rows_by_record = store.index.groupby("record").indices
    cap = (
        max_beats_per_record
        if callable(max_beats_per_record)
        else (lambda _record: max_beats_per_record)
    )
    classes, train, train_y = _person_classes(
        train_records,
        rows_by_record,
        lambda rows: _spread(rows, cap(store.index.at[rows[0], "record"])),
    )
    info = {
        "train_identities": len(classes),
        "train_records": int(len(train_records)),
        "train_beats": len(train),
        "val_persons": len(val_persons),
        "test_persons": 0,
        "folds": folds,
        "fold": fold,
    }
    val = _gallery_probe(records, rows_by_record, val_persons)
    return Split("general", classes, train, train_y, val, None, info)


def _spread(rows: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` of ``rows``, evenly spaced over them (all when ``k`` is 0 or enough)."""
    if not k or len(rows) <= k:
        return rows
    return rows[np.unique(np.linspace(0, len(rows) - 1, k).round().astype(int))]


# --- enrol-probe ---------------------------------------------------------------------------------
def enrol_probe_split(store: BeatStore) -> Split:
    """Gallery = each person's earliest record, probes = every later record; nothing to train."""
    records = _ordered_records(store)
    per_person = records.groupby("person")["record"].transform("size")
    persons = set(records.loc[per_person >= 2, "person"])
    if not persons:
        raise ConfigError(
            "enrol-probe needs persons with >= 2 records; this store has none", store.root
        )
    rows_by_record = store.index.groupby("record").indices
    test = _gallery_probe(records, rows_by_record, persons)
    info = {
        "persons": len(persons),
        "probe_records": int((records["person"].isin(persons)).sum() - len(persons)),
    }
    empty = np.zeros(0, np.int64)
    return Split("enrol-probe", [], empty, empty, None, test, info)


# --- helpers -------------------------------------------------------------------------------------
def _person_classes(
    train_records: pd.DataFrame,
    rows_by_record: dict,
    pick: Callable[[np.ndarray], np.ndarray],
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Training persons as softmax classes: (classes, beat rows, labels), ``pick`` choosing the
    beats kept of each record (in time order)."""
    classes = sorted(train_records["person"].unique())
    label_of = {p: i for i, p in enumerate(classes)}
    train, train_y = [], []
    for record, person in zip(train_records["record"], train_records["person"], strict=True):
        rows = pick(np.sort(rows_by_record[record]))
        train.append(rows)
        train_y += [label_of[person]] * len(rows)
    return classes, np.concatenate(train), np.asarray(train_y)


def _gallery_probe(records: pd.DataFrame, rows_by_record: dict, persons: set[str]) -> MatchSet:
    chosen = records[records["person"].isin(persons)]
    first = chosen.groupby("person").head(1)["record"]
    later = chosen.loc[~chosen["record"].isin(set(first)), "record"]
    gallery = [np.sort(rows_by_record[r]) for r in first]
    probe = [np.sort(rows_by_record[r]) for r in later]
    empty = np.zeros(0, np.int64)
    return MatchSet(
        np.concatenate(gallery) if gallery else empty, np.concatenate(probe) if probe else empty
    )


def _within_record(records: pd.DataFrame, rows_by_record: dict) -> MatchSet:
    """Gallery = first half of each record's beats, probe = second half (same-session pairs)."""
    gallery, probe = [], []
    for record in records["record"]:
        rows = np.sort(rows_by_record[record])
        half = len(rows) // 2
        if half >= 1:
            gallery.append(rows[:half])
            probe.append(rows[half:])
    empty = np.zeros(0, np.int64)
    return MatchSet(
        np.concatenate(gallery) if gallery else empty, np.concatenate(probe) if probe else empty
    )


def _ok_records(store: BeatStore) -> pd.DataFrame:
    records = store.records
    ok = records[records["status"] == "ok"]
    return ok[ok["record"].isin(set(store.index["record"]))]


def _ordered_records(store: BeatStore) -> pd.DataFrame:
    """OK records sorted by person, then session date, then source order."""
    records = _ok_records(store).copy()
    records["order"] = records["order"].astype(int)
    return records.sort_values(["person", "session", "order"], kind="stable").reset_index(drop=True)


def record_order(store: BeatStore) -> dict[str, int]:
    """Each OK record's position among its person's records (0 = earliest), by session date and
    then source order, as every protocol orders them."""
    records = _ordered_records(store)
    return dict(
        zip(records["record"], records.groupby("person").cumcount().astype(int), strict=True)
    )


def _stable_hash(text: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()
