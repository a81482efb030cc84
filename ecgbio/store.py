"""BeatStore: one directory per prepared dataset, opened without loading the beats into memory.

Layout::

    STORE/            0700
      beats.npy       0600  (beats, leads, samples) float16, memory-mapped on open
      beats.csv       0600  one row per beat: person, record, session, beat, peak, quality
      records.csv     0600  one row per record: person, record, session, order, status, reason, ...
      manifest.json   0600  format, preprocessing config, library versions, counts, how it was made
      .lock           0600  file lock: one `prepare` at a time
      .parts/         0700  finished chunks of an unfinished `prepare` (removed when it finishes)

A store holds every person's beats, biometric data like a gallery's templates: `prepare` makes its
files readable by their owner only, whatever the umask (a directory that existed before keeps its
permissions).

float16 is the measured choice (``benchmarks/store_dtype.py``): its rounding error on real beats is
below the 1 uV resolution of the source ADCs and it halves disk and page-cache use against float32.
Beats of a record are contiguous and in time order, so "the first k beats of a record" is a slice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgbio.config import BeatConfig, from_dict
from ecgbio.errors import StoreError, shorten

FORMAT = "ecgbio-beatstore"
FORMAT_VERSION = 1
BEATS_FILE = "beats.npy"
BEAT_INDEX_FILE = "beats.csv"
RECORDS_FILE = "records.csv"
MANIFEST_FILE = "manifest.json"
STORE_DTYPE = np.float16

BEAT_COLUMNS = ["person", "record", "session", "beat", "peak", "quality"]
#: the records table's columns that ecgbio reads (``prepare`` writes more)
RECORD_COLUMNS = ["person", "record", "session", "path", "status"]
_STR_COLUMNS = {"person": str, "record": str, "session": str}
#: bytes of beats checked for NaN at a time by :meth:`BeatStore.check_finite` (bounded memory,
#: whatever the number of leads and samples a beat has)
_FINITE_CHUNK_BYTES = 1 << 25


@dataclass
class BeatStore:
    """A prepared dataset on disk.

    Attributes:
        root: the store directory.
        beats: memory-mapped (beats, leads, samples) array (read-only).
        index: per-beat table aligned with ``beats`` (row i describes ``beats[i]``).
        records: per-record table, including rejected records and the reason.
        manifest: the store's manifest dict (config under ``"config"``).
    """

    root: Path
    beats: np.ndarray
    index: pd.DataFrame
    records: pd.DataFrame
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> BeatStore:
        """Open a store; the beats stay on disk (``np.load(mmap_mode="r")``)."""
        root = Path(root)
        if not root.is_dir():
            raise StoreError("beat store not found (run `ecgbio prepare` first)", root)
        manifest_path = root / MANIFEST_FILE
        if not manifest_path.is_file():
            partial = (root / ".parts").is_dir()
            hint = (
                "preparation was interrupted: rerun the same `ecgbio prepare` to resume"
                if partial
                else "not an ecgbio beat store"
            )
            raise StoreError(f"no {MANIFEST_FILE} ({hint})", root)
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"corrupt manifest ({exc})", manifest_path) from exc
        if manifest.get("format") != FORMAT:
            raise StoreError(
                f"not an ecgbio beat store (format {manifest.get('format')!r})", manifest_path
            )
        if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise StoreError(
                f"store format {manifest['format_version']} is newer than this ecgbio "
                f"reads ({FORMAT_VERSION}); upgrade ecgbio",
                manifest_path,
            )
        try:
            beats = np.load(root / BEATS_FILE, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise StoreError(f"unreadable beats array ({exc})", root / BEATS_FILE) from exc
        index = _read_csv(root / BEAT_INDEX_FILE, BEAT_COLUMNS)
        _check_index(index, root / BEAT_INDEX_FILE)
        records = _read_csv(root / RECORDS_FILE, RECORD_COLUMNS)
        expected = tuple(manifest.get("shape", ()))
        if beats.shape != expected or len(index) != beats.shape[0]:
            raise StoreError(
                f"inconsistent store: beats {beats.shape}, manifest {expected}, "
                f"index {len(index)} rows",
                root,
            )
        return cls(root, beats, index, records, manifest)

    @cached_property
    def config(self) -> BeatConfig:
        """The preprocessing config the store was made with (re-used for probes)."""
        return from_dict(BeatConfig, self.manifest["config"])

    @property
    def leads(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("leads", ()))

    def __len__(self) -> int:
        return int(self.beats.shape[0])

    def waves(self, rows: np.ndarray | list[int] | slice) -> np.ndarray:
        """float32 copies of the beats at ``rows`` (only those pages are read from disk)."""
        if isinstance(rows, slice):
            return np.asarray(self.beats[rows], dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")  # sorted reads are sequential on disk
        out = np.empty((len(rows), *self.beats.shape[1:]), np.float32)
        out[order] = self.beats[rows[order]]
        return out

    def check_finite(self, rows: np.ndarray | list[int]) -> None:
        """Refuse the beats at ``rows`` if any holds a NaN or infinite sample, naming the store's
        beats file, how many beats and the first one's record.

        Why: ``prepare`` never stores such a beat, so one is damage to the file; embedded, it
        turns every score it touches into NaN, and the metrics could then only say that the
        scores hold NaN, not where they came from. Read in chunks: memory stays bounded.
        """
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        bad: list[np.ndarray] = []
        beat_bytes = max(1, int(np.prod(self.beats.shape[1:])) * self.beats.dtype.itemsize)
        step = max(1, _FINITE_CHUNK_BYTES // beat_bytes)
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            finite = np.isfinite(np.asarray(self.beats[chunk])).reshape(len(chunk), -1).all(1)
            bad.append(chunk[~finite])
        found = np.concatenate(bad) if bad else np.zeros(0, np.int64)
        if found.size:
            first = int(found[0])
            raise StoreError(
                f"{found.size} of the {rows.size} beats read hold NaN or infinite samples (first: "
                f"beat {first}, record {self.index['record'].iat[first]}); the store is damaged: "
                "prepare it again",
                self.root / BEATS_FILE,
            )

    def select_leads(self, leads: tuple[str, ...]) -> BeatStore:
        """A view of this store with only ``leads`` (a contiguous run of its leads, in order).

        Why: a model can train on one lead while its augmentation reads others from the same
        store (``TrainConfig.augment_axis_deg`` mixes lead II into lead I); the view is what the
        model sees, validates on and remembers, without a second copy of the beats on disk.
        """
        have = self.leads
        missing = [lead for lead in leads if lead not in have]
        if missing or not leads:
            raise StoreError(
                f"store has no lead(s) {', '.join(missing) or '(none asked)'} "
                f"(leads: {', '.join(have)})",
                self.root,
            )
        first = have.index(leads[0])
        if have[first : first + len(leads)] != tuple(leads):
            raise StoreError(
                f"leads {', '.join(leads)} are not a contiguous run of the store's "
                f"({', '.join(have)})",
                self.root,
            )
        detect = self.config.detect_lead
        if detect and detect not in leads:
            raise StoreError(
                f"its beats were found on lead {detect}, which a view of {', '.join(leads)} "
                f"would not have: a model trained on it could not find beats the same way",
                self.root,
            )
        manifest = json.loads(json.dumps(self.manifest))
        manifest["leads"] = list(leads)
        manifest["config"]["leads"] = list(leads)
        manifest["shape"] = [len(self), len(leads), int(self.beats.shape[2])]
        beats = self.beats[:, first : first + len(leads), :]  # a view: nothing is read
        return BeatStore(self.root, beats, self.index, self.records, manifest)

    def summary(self) -> dict[str, Any]:
        """Counts a person wants to see after `prepare` (also stored in the manifest)."""
        return dict(self.manifest.get("summary", {}))


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """A store table, refused in one line naming it when unreadable or without ``columns``."""
    if not path.is_file():
        raise StoreError("missing store table", path)
    try:
        table = pd.read_csv(path, dtype=_STR_COLUMNS, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise StoreError(f"corrupt store table ({exc})", path) from exc
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise StoreError(
            f"corrupt store table: no column(s) {', '.join(missing)} (it needs "
            f"{', '.join(columns)}); prepare the store again",
            path,
        )
    return table


def _check_index(index: pd.DataFrame, path: Path) -> None:
    """Refuse a beats table whose cells ecgbio could not use: an empty person or record (beats
    of no one, pooled into one identity) or a beat, peak or quality that is not a number; the
    message names the first data row (1 = the first row under the header)."""
    for column in ("person", "record"):
        empty = np.flatnonzero((index[column] == "").to_numpy())
        if empty.size:
            raise StoreError(
                f"corrupt store table: data row {empty[0] + 1} has an empty {column} "
                f"({empty.size} such row(s)); prepare the store again",
                path,
            )
    for column, whole in (("beat", True), ("peak", True), ("quality", False)):
        values = index[column]
        if pd.api.types.is_integer_dtype(values) or (
            not whole and pd.api.types.is_float_dtype(values) and np.isfinite(values).all()
        ):
            continue
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(numbers)
        if whole:
            bad |= np.isfinite(numbers) & (numbers != np.floor(numbers))
        rows = np.flatnonzero(bad)
        if rows.size:
            kind = "whole numbers" if whole else "finite numbers"
            raise StoreError(
                f"corrupt store table: column {column} must hold {kind}; data row {rows[0] + 1} "
                f"holds {shorten(str(values.iat[rows[0]]), 40)!r} ({rows.size} such row(s)); "
                "prepare the store again",
                path,
            )
