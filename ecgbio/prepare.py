"""Source -> BeatStore: read every record, cut its beats, write the store; parallel and resumable.

Records are processed in chunks; each finished chunk is written atomically to ``STORE/.parts/`` (beats
``.npy`` + a records table), so an interrupted run (Ctrl-C, a killed job, a full disk) resumes where it
stopped when the same command is run again. The final ``beats.npy`` is assembled in the sources' record
order, whatever order the workers finished in, so the same input gives the same store byte for byte.

A store holds biometric data (every person's beats), so it is private like a gallery: the store
directory and ``.parts/`` are made 0700 and every file is 0600, whatever the umask. One `prepare` at
a time writes a store: it holds ``STORE/.lock`` (0600) throughout, and a second one is refused at
once. Holding the lock, it first removes the temporary files a killed writer left
(``.beats.npy.XXXXXXXX.tmp`` and the like, in the store and in ``.parts/``): no live writer can own
them.

A prepare that fails (a refusal, an error, Ctrl-C) leaves no lock behind, nor a ``.parts/`` without a
finished chunk, nor the directory when it made it and nothing is left in it: only the chunks a rerun
resumes from stay. Options are checked before any of that is made.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgbio.beats import DETECTORS, QUALITY_CONTEXT_S, extract_beats
from ecgbio.config import BeatConfig, save_json, to_dict
from ecgbio.errors import ConfigError, EcgbioError, StoreError, option
from ecgbio.io import as_text, atomic_open, private_dir, remove_stale_temps, temp_target
from ecgbio.records import read_record
from ecgbio.sources import RecordSpec
from ecgbio.store import (
    BEAT_INDEX_FILE,
    BEATS_FILE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    RECORDS_FILE,
    STORE_DTYPE,
    BeatStore,
)

PARTS_DIR = ".parts"
LOCK_FILE = ".lock"
CHUNK_RECORDS = 64
#: the files `prepare` writes into a store (their leftover temporaries are removed on the next run)
STORE_FILES = frozenset({BEATS_FILE, BEAT_INDEX_FILE, RECORDS_FILE, MANIFEST_FILE})


@dataclass
class RecordResult:
    """What preparing one record gave: its beats (float16) or the reason it was rejected."""

    seq: int
    spec: RecordSpec
    waves: np.ndarray | None = None
    peaks: np.ndarray | None = None
    quality: np.ndarray | None = None
    leads: tuple[str, ...] = ()
    detected: int = 0
    rejected_beats: int = 0
    max_abs_mv: float = float("nan")
    duration_s: float = float("nan")
    notes: tuple[str, ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class PrepareSummary:
    """What `prepare` did, printed to people and written into the manifest."""

    store: str
    records_total: int = 0
    records_read: int = 0
    records_rejected: int = 0
    records_resumed: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    beats: int = 0
    persons: int = 0
    persons_multi_record: int = 0
    leads: list[str] = field(default_factory=list)
    window_samples: int = 0
    rate: int = 0
    wall_s: float = 0.0
    records_per_s: float = 0.0

    def lines(self) -> list[str]:
        """A human-readable summary, one fact a line."""
        out = [
            f"store        {self.store}",
            f"records      {self.records_read} read, {self.records_rejected} rejected "
            f"(of {self.records_total}; {self.records_resumed} resumed from an earlier run)",
            f"beats        {self.beats} kept ({self.window_samples} samples x "
            f"{len(self.leads)} lead(s) {','.join(self.leads)} at {self.rate} Hz)",
            f"persons      {self.persons}, {self.persons_multi_record} with >= 2 records",
            f"speed        {self.records_per_s:.1f} records/s ({self.wall_s:.1f} s)",
        ]
        for reason, count in sorted(self.rejected_reasons.items(), key=lambda kv: -kv[1]):
            out.append(f"rejected     {count} x {reason}")
        for note, count in sorted(self.repaired.items(), key=lambda kv: -kv[1]):
            out.append(f"repaired     {count} record(s): {note}")
        return out


#: At most this much of each record goes into a store, in seconds: memory stays bounded whatever
#: a header claims (a 24-hour Holter record lends its first hour; cut it into hour-long records to
#: store all of it). MIT-BIH's 30 minutes, PTB-XL's 10 s and CinC's minute fit whole.
PREPARE_READ_LIMIT_S = 3600.0


def prepare_record(seq: int, spec: RecordSpec, config: BeatConfig) -> RecordResult:
    """Prepare one record; never raises for bad data (the reason is returned)."""
    try:
        if spec.leads and (config.all_leads or len(spec.leads) != len(config.leads)):
            raise StoreError(
                f"record {spec.record} reads leads {','.join(spec.leads)} in place of the "
                f"store's {','.join(config.leads)}: they must be as many",
                spec.path,
            )
        rec = read_record(
            spec.path,
            leads=spec.leads or config.leads,
            rate=config.rate,
            min_duration_s=config.min_duration_s,
            max_duration_s=PREPARE_READ_LIMIT_S,
            fs=spec.fs,
        )
        valid = rec.signal[:, rec.valid]
        max_abs = float(np.abs(valid).max())
        beats = extract_beats(rec, config)
    except EcgbioError as exc:
        return RecordResult(seq, spec, error=str(exc))
    return RecordResult(
        seq,
        spec,
        waves=beats.waves.astype(STORE_DTYPE),
        peaks=beats.peaks,
        quality=beats.quality,
        leads=beats.leads,
        detected=beats.detected,
        rejected_beats=beats.rejected,
        max_abs_mv=max_abs,
        duration_s=rec.duration_s,
        notes=rec.notes,
    )


def _prepare_chunk(args: tuple[list[tuple[int, RecordSpec]], BeatConfig]) -> list[RecordResult]:
    items, config = args
    return [prepare_record(seq, spec, config) for seq, spec in items]


def prepare_store(
    specs: Sequence[RecordSpec],
    out: str | Path,
    config: BeatConfig = BeatConfig(),
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> PrepareSummary:
    """Prepare ``specs`` into a beat store at ``out``.

    Args:
        specs: records to prepare (from a source: ``ptbxl_records``, ``folder_records``...).
        out: store directory. An existing finished store is refused unless ``overwrite``; an
            interrupted one with the same config is resumed.
        config: preprocessing config, saved in the manifest.
        workers: processes (1 = in this process).
        overwrite: replace a finished store at ``out``.
        progress: show a progress bar.
        source: description of where the records came from (kept in the manifest).
    """
    out = Path(out)
    start = time.perf_counter()
    if not specs:
        raise StoreError("no records to prepare (the source listed none)", out)
    _check_config(config)
    specs = [_text_spec(spec) for spec in specs]
    _check_unique(specs, out)
    _check_target(out, overwrite=True)  # never drop a lock file into someone's folder
    made = not out.exists()
    private_dir(out)
    try:
        lock = _StoreLock(out)
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    try:
        summary = _prepare_locked(specs, out, config, workers, overwrite, progress, source, start)
    except BaseException:
        lock.release(cleanup=True, made=made)
        raise
    lock.release()
    return summary


def _text_spec(spec: RecordSpec) -> RecordSpec:
    """``spec`` with its person, record and session as valid UTF-8 text (:func:`as_text`): names
    from a non-UTF-8 file system would otherwise fail the store's CSV tables half-way."""
    texts = {k: as_text(getattr(spec, k)) for k in ("person", "record", "session")}
    if all(texts[k] == getattr(spec, k) for k in texts):
        return spec
    return replace(spec, **texts)


def _check_config(config: BeatConfig) -> None:
    """Refuse options that every record would be refused for, before anything is written: found
    per record, they would leave a ``.parts/`` that blocks the next run with other options."""
    if config.peak_method not in DETECTORS:
        raise ConfigError(
            f"unknown R-peak detector {config.peak_method!r} (--peak-method); choose from "
            f"{', '.join(DETECTORS)}"
        )


def _prepare_locked(
    specs: Sequence[RecordSpec],
    out: Path,
    config: BeatConfig,
    workers: int,
    overwrite: bool,
    progress: bool,
    source: dict[str, Any] | None,
    start: float,
) -> PrepareSummary:
    """:func:`prepare_store`'s work, under the store's writer lock."""
    remove_stale_temps(out, set(STORE_FILES))
    remove_stale_temps(out / PARTS_DIR)
    _check_target(out, overwrite)
    if (out / MANIFEST_FILE).exists():
        for name in (MANIFEST_FILE, BEATS_FILE, BEAT_INDEX_FILE, RECORDS_FILE):
            (out / name).unlink(missing_ok=True)
    parts = _PartWriter(out / PARTS_DIR, config, specs)
    done = parts.done_records()
    todo = [(i, s) for i, s in enumerate(specs) if s.record not in done]
    chunks = [todo[i : i + CHUNK_RECORDS] for i in range(0, len(todo), CHUNK_RECORDS)]

    bar = _progress(len(specs), len(specs) - len(todo), progress, out)
    try:
        for results in _run_chunks(chunks, config, workers):
            parts.write(results)
            bar.update(len(results))
            bar.set_postfix(beats=parts.beats_written, rejected=parts.rejected_written)
    finally:
        bar.close()
    summary = _finalize(out, specs, config, parts, source or {})
    summary.records_resumed = len(specs) - len(todo)
    summary.wall_s = time.perf_counter() - start
    processed = max(len(todo), 1)
    summary.records_per_s = processed / max(summary.wall_s, 1e-9)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["summary"] = summary.__dict__
    save_json(out / MANIFEST_FILE, manifest, private=True)
    return summary


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse a finished store (unless ``overwrite``) and a folder that is not a store's."""
    if out.exists() and not out.is_dir():
        raise StoreError("not a directory; choose another --out", out)
    if (out / MANIFEST_FILE).exists():
        if not overwrite:
            raise StoreError(
                f"a beat store already exists here; use {option('--overwrite', 'overwrite=True')} "
                "to rebuild it, or write it elsewhere",
                out,
            )
    elif (
        out.is_dir() and not (out / PARTS_DIR).is_dir() and any(_foreign(p) for p in out.iterdir())
    ):
        raise StoreError(
            "directory is not empty and is not an ecgbio store; choose another --out", out
        )


def _foreign(entry: Path) -> bool:
    """Whether ``entry`` in a store directory without a manifest or parts is not `prepare`'s own
    (its lock file, or a temporary file of a killed run)."""
    return entry.name != LOCK_FILE and temp_target(entry.name) not in STORE_FILES


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a planted symbolic link is not our lock file


class _StoreLock:
    """``out/.lock`` (0600), held (``flock``) from construction until :meth:`release`; a second
    writer is refused at once.

    A failed prepare removes the file (:meth:`release` with ``cleanup``), so a writer checks that
    the file it locked is still the one at the path: one that opened it just before the removal
    would otherwise hold a lock on a file nobody else sees.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_FILE
        for _ in range(3):  # the file was removed under us: a writer just failed; lock the new one
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot lock the store ({exc.strerror or exc})", out) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise StoreError(
                        "another `ecgbio prepare` is writing this store; wait for it to finish", out
                    ) from None
                raise StoreError(f"cannot lock the store ({exc.strerror or exc})", out) from exc
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                with contextlib.suppress(OSError):  # (a lock file of another owner stays theirs)
                    os.fchmod(fd, 0o600)
                self.fd = fd
                return
            os.close(fd)
        raise StoreError("another `ecgbio prepare` is writing this store; wait for it", out)

    def release(self, cleanup: bool = False, made: bool = False) -> None:
        """Unlock. ``cleanup`` (the prepare failed): when no finished store is here, remove the
        lock file and a ``.parts/`` without a finished chunk (nothing to resume), and the
        directory itself if this prepare ``made`` it and it is left empty."""
        out = self.path.parent
        try:  # (a cleanup that fails must not hide why the prepare failed)
            if cleanup and not (out / MANIFEST_FILE).exists():
                parts = out / PARTS_DIR
                with contextlib.suppress(OSError):
                    if parts.is_dir() and not any(parts.glob("part-*.csv")):
                        shutil.rmtree(parts, ignore_errors=True)
                    self.path.unlink(missing_ok=True)  # while still held: see the class docstring
                    if made:
                        out.rmdir()  # only when empty
        finally:
            os.close(self.fd)  # (closing releases the flock)


def _run_chunks(chunks: list, config: BeatConfig, workers: int) -> Iterator[list[RecordResult]]:
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield _prepare_chunk((chunk, config))
        return
    # spawn: workers start clean, so a caller that already imported torch/faiss (OpenMP) can't hang
    # them; the few seconds of start-up are nothing against a database.
    ctx = mp.get_context("spawn")
    small = [c[i : i + 8] for c in chunks for i in range(0, len(c), 8)]  # balance slow records
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        buffer: list[RecordResult] = []
        for results in pool.map(_prepare_chunk, [(c, config) for c in small]):
            buffer.extend(results)
            if len(buffer) >= CHUNK_RECORDS:
                yield buffer
                buffer = []
        if buffer:
            yield buffer


class _PartWriter:
    """Chunks of finished records under ``.parts/``; each chunk lands atomically or not at all."""

    def __init__(self, directory: Path, config: BeatConfig, specs: Sequence[RecordSpec]) -> None:
        self.dir = private_dir(directory)
        cfg_path = directory / "config.json"
        cfg = to_dict(config)
        if cfg_path.exists() and self.part_ids():
            old = json.loads(cfg_path.read_text())
            if old != cfg:
                raise StoreError(
                    "an interrupted preparation with a different config is here; "
                    "rerun with the same options, or delete the directory",
                    directory,
                )
        else:
            save_json(cfg_path, cfg, private=True)
        self.beats_written = 0
        self.rejected_written = 0

    def part_ids(self) -> list[int]:
        found = (re.fullmatch(r"part-(\d+)\.csv", p.name) for p in self.dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def done_records(self) -> set[str]:
        done: set[str] = set()
        for pid in self.part_ids():
            table = pd.read_csv(
                self.dir / f"part-{pid:06d}.csv", dtype={"record": str}, keep_default_na=False
            )
            done.update(table["record"])
        return done

    def write(self, results: list[RecordResult]) -> None:
        pid = (self.part_ids() or [-1])[-1] + 1
        ok = [r for r in results if r.ok]
        waves = np.concatenate([r.waves for r in ok]) if ok else np.zeros((0,), STORE_DTYPE)
        with atomic_open(self.dir / f"part-{pid:06d}.npy", "wb", private=True) as handle:
            np.save(handle, waves, allow_pickle=False)
        beat_rows = [
            {"seq": r.seq, "record": r.spec.record, "beat": j, "peak": int(p), "quality": float(q)}
            for r in ok
            for j, (p, q) in enumerate(zip(r.peaks, r.quality, strict=True))
        ]
        with atomic_open(self.dir / f"part-{pid:06d}.beats.csv", "w", private=True) as handle:
            pd.DataFrame(beat_rows, columns=["seq", "record", "beat", "peak", "quality"]).to_csv(
                handle, index=False
            )
        # the records table is written last: its presence marks the chunk as done
        with atomic_open(self.dir / f"part-{pid:06d}.csv", "w", private=True) as handle:
            pd.DataFrame([_record_row(r) for r in results]).to_csv(handle, index=False)
        self.beats_written += len(beat_rows)
        self.rejected_written += len(results) - len(ok)


def _record_row(r: RecordResult) -> dict[str, Any]:
    row = {
        "seq": r.seq,
        "person": r.spec.person,
        "record": r.spec.record,
        "session": r.spec.session,
        "order": r.spec.order,
        "path": as_text(str(r.spec.path)),
        "status": "ok" if r.ok else "rejected",
        "reason": as_text(r.error),
        "beats": 0 if r.waves is None else len(r.waves),
        "detected": r.detected,
        "rejected_beats": r.rejected_beats,
        "max_abs_mv": r.max_abs_mv,
        "duration_s": r.duration_s,
        "notes": as_text("; ".join(r.notes)),
        "leads": as_text(",".join(r.leads)),
    }
    row.update({f"x_{k}": v for k, v in r.spec.extra.items()})
    return row


def _finalize(
    out: Path,
    specs: Sequence[RecordSpec],
    config: BeatConfig,
    parts: _PartWriter,
    source: dict[str, Any],
) -> PrepareSummary:
    """Assemble parts into beats.npy + tables in record order, write the manifest, drop the parts."""
    pids = parts.part_ids()
    records = pd.concat(
        [
            pd.read_csv(parts.dir / f"part-{p:06d}.csv", dtype=str, keep_default_na=False)
            for p in pids
        ],
        ignore_index=True,
    )
    records["seq"] = records["seq"].astype(int)
    records = records.drop_duplicates("record", keep="last").sort_values("seq")
    beat_tables, shapes = [], []
    for p in pids:
        table = pd.read_csv(
            parts.dir / f"part-{p:06d}.beats.csv", dtype={"record": str}, keep_default_na=False
        )
        table["part"], table["row"] = p, np.arange(len(table))
        beat_tables.append(table)
        shapes.append(np.load(parts.dir / f"part-{p:06d}.npy", mmap_mode="r").shape)
    beats = pd.concat(beat_tables, ignore_index=True).sort_values(["seq", "beat"], kind="stable")
    ok = records[records["status"] == "ok"]
    beats = beats[beats["record"].isin(set(ok["record"]))]
    leads = _leads(ok, config)
    shape = (len(beats), len(leads), config.window_samples)
    if not len(beats):
        shutil.rmtree(parts.dir, ignore_errors=True)  # a verdict, not an interruption: no resume
        raise StoreError(
            "no record gave usable beats; nothing was stored (first reasons: "
            + "; ".join(records["reason"].head(3))
            + ")",
            out,
        )

    with atomic_open(out / BEATS_FILE, "wb", private=True) as handle:
        np.lib.format.write_array_header_1_0(
            handle,
            {
                "descr": np.lib.format.dtype_to_descr(np.dtype(STORE_DTYPE)),
                "fortran_order": False,
                "shape": shape,
            },
        )
        for p, rows in beats.groupby("part", sort=False)["row"]:
            part = np.load(parts.dir / f"part-{p:06d}.npy", mmap_mode="r")
            handle.write(np.ascontiguousarray(part[rows.to_numpy()], dtype=STORE_DTYPE).tobytes())
    meta = records.set_index("record")[["person", "session"]]
    index = pd.DataFrame(
        {
            "person": meta.loc[beats["record"], "person"].to_numpy(),
            "record": beats["record"].to_numpy(),
            "session": meta.loc[beats["record"], "session"].to_numpy(),
            "beat": beats["beat"].to_numpy(),
            "peak": beats["peak"].to_numpy(),
            "quality": beats["quality"].round(4).to_numpy(),
        }
    )
    with atomic_open(out / BEAT_INDEX_FILE, "w", private=True) as handle:
        index.to_csv(handle, index=False)
    with atomic_open(out / RECORDS_FILE, "w", private=True) as handle:
        records.drop(columns=["seq"]).to_csv(handle, index=False)

    summary = _summarize(out, records, len(beats), leads, config)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dtype": np.dtype(STORE_DTYPE).name,
        "shape": list(shape),
        "leads": leads,
        "config": to_dict(config),
        # how beats were judged, which the config does not say: a store made by another rule is
        # another store (experiments' cached stores are rebuilt when it differs)
        "quality_context_s": list(QUALITY_CONTEXT_S),
        "source": source,
        "versions": _versions(),
        "summary": summary.__dict__,
    }
    save_json(out / MANIFEST_FILE, manifest, private=True)
    shutil.rmtree(parts.dir, ignore_errors=True)
    BeatStore.open(out)  # the store we just wrote must open; fail here rather than at training
    return summary


def _leads(ok: pd.DataFrame, config: BeatConfig) -> list[str]:
    """Lead names of the store; with ``all``, every record must have the same leads."""
    if not config.all_leads:
        return list(config.leads)
    distinct = sorted(set(ok["leads"]))
    if len(distinct) > 1:
        raise StoreError(
            f"records have different leads ({' | '.join(distinct[:3])}); choose leads with --leads"
        )
    return distinct[0].split(",") if distinct else []


def _summarize(
    out: Path, records: pd.DataFrame, n_beats: int, leads: list[str], config: BeatConfig
) -> PrepareSummary:
    ok = records[records["status"] == "ok"]
    per_person = ok.groupby("person")["record"].nunique()
    rejected = records[records["status"] != "ok"]
    reasons = Counter(_reason_kind(r) for r in rejected["reason"])
    repaired = Counter(_repair_kind(n) for notes in ok["notes"] for n in notes.split("; ") if n)
    return PrepareSummary(
        store=str(out),
        records_total=len(records),
        records_read=len(ok),
        records_rejected=len(rejected),
        rejected_reasons=dict(reasons),
        repaired=dict(repaired),
        beats=n_beats,
        persons=int(per_person.size),
        persons_multi_record=int((per_person >= 2).sum()),
        leads=leads,
        window_samples=config.window_samples,
        rate=config.rate,
    )


def _reason_kind(message: str) -> str:
    """Group rejection messages: drop the path, replace numbers with N."""
    text = message.split(": ", 1)[1] if ": " in message else message
    return re.sub(r"\d+(\.\d+)?", "N", text)


def _repair_kind(note: str) -> str:
    """Group what was done to records by its kind, without its numbers: ``constant run of 2048
    samples at 0 (cropped)`` -> ``constant run cropped at an edge``."""
    text = re.sub(r" of \d+ samples at \d+", "", note)
    text = text.replace("constant run (cropped)", "constant run cropped at an edge")
    text = text.replace("constant run", "constant run masked inside the record", 1) if (
        text == "constant run") else text  # fmt: skip
    text = re.sub(r"^interpolated \d+ NaN samples$", "NaN samples interpolated", text)
    text = re.sub(r"^read the first .*", "read in part (a long record)", text)
    text = re.sub(r"^clipped \(saturated\).*", "clipped (saturated): beats on a rail dropped", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


def _check_unique(specs: Sequence[RecordSpec], out: Path) -> None:
    counts = Counter(s.record for s in specs)
    dupes = [r for r, c in counts.items() if c > 1]
    if dupes:
        raise StoreError(f"record ids must be unique; repeated: {', '.join(dupes[:5])}", out)


def _progress(total: int, initial: int, enabled: bool, out: Path) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        unit="rec",
        desc=f"prepare {out.name}",
        dynamic_ncols=True,
    )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("ecgbio", "numpy", "scipy", "neurokit2", "wfdb"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out
