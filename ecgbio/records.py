"""Read any WFDB record into a validated :class:`Recording` (millivolts, leads x samples).

Everything that can be wrong with a record on disk is caught here and turned into a one-line
:class:`~ecgbio.errors.RecordError` naming the file: missing or truncated signal files, headers wfdb
cannot parse, unknown leads, NaN or flat signals, records that are too short, absurd sampling rates.
Known recording defects are repaired and reported rather than silently kept: ECG-ID, for example,
ships records whose first 1024-2048 frames are a constant block of -1 samples; such runs are cropped at
the edges (``Recording.notes`` says so) and masked inside the record.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

from ecgbio.config import ALL_LEADS
from ecgbio.errors import LeadError, RecordError

MIN_RATE_HZ = 50.0
MAX_RATE_HZ = 20_000.0
#: A lead whose standard deviation is below this (mV) carries no ECG.
FLAT_STD_MV = 1e-3
#: Runs of exactly repeated samples at least this long are recording defects, not ECG.
CONSTANT_RUN_S = 0.5
#: Share of NaN samples above which a lead is refused rather than interpolated.
MAX_NAN_FRACTION = 0.2

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}


@dataclass
class Recording:
    """A record in memory.

    Attributes:
        path: record path without extension.
        signal: float32 array (leads, samples) in millivolts.
        fs: sampling rate in Hz.
        leads: lead names as in the header, one per row of ``signal``.
        session: recording date ``YYYY-MM-DD`` from the header, or ``""``.
        comments: header comment lines.
        mask: boolean (samples,) - False where the signal is a repaired defect (masked constant run or
            interpolated NaN gap); beats overlapping it are not used.
        notes: what was repaired, for the prepare summary.
    """

    path: Path
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    session: str = ""
    comments: tuple[str, ...] = ()
    mask: np.ndarray | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        return self.signal.shape[1] / self.fs

    @property
    def valid(self) -> np.ndarray:
        return np.ones(self.signal.shape[1], bool) if self.mask is None else self.mask


def record_path(path: str | Path) -> Path:
    """Accept ``rec``, ``rec.hea`` or ``rec.dat`` and return the record path without extension."""
    p = Path(path)
    return p.with_suffix("") if p.suffix.lower() in {".hea", ".dat", ".mat", ".atr"} else p


def normalize_lead_name(name: str) -> str:
    """Case- and decoration-insensitive lead name: ``"ECG I"``, ``"lead i"`` and ``"I"`` -> ``"I"``."""
    text = re.sub(r"^(ECG|EKG|LEAD)[\s_\-:]*", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", text).strip().upper()


def select_leads(available: tuple[str, ...], wanted: tuple[str, ...], path: Path) -> list[int]:
    """Indices of ``wanted`` leads in ``available``; ``("all",)`` keeps every lead."""
    if tuple(w.lower() for w in wanted) == (ALL_LEADS,):
        return list(range(len(available)))
    norm = [normalize_lead_name(a) for a in available]
    indices = []
    for lead in wanted:
        key = normalize_lead_name(lead)
        if key not in norm:
            raise LeadError(f"no lead {lead!r} (leads: {', '.join(available) or 'none'})", path)
        indices.append(norm.index(key))
    return indices


def _keep_channels(rec: object, keep: list[int]) -> None:
    """Keep (and order, or repeat) the read record's channels ``keep``."""
    rec.p_signal = rec.p_signal[:, keep]  # type: ignore[attr-defined]
    rec.sig_name = [rec.sig_name[i] for i in keep]  # type: ignore[attr-defined]
    units = rec.units  # type: ignore[attr-defined]
    rec.units = [units[i] for i in keep] if units else None  # type: ignore[attr-defined]


def read_record(
    path: str | Path,
    leads: tuple[str, ...] | str = ("I",),
    rate: float | None = None,
    min_duration_s: float = 2.0,
) -> Recording:
    """Read a WFDB record (single or multi-segment), keep ``leads``, resample to ``rate``.

    Args:
        path: record path, with or without ``.hea``.
        leads: lead names (``("I",)``, ``"I,II"``) or ``"all"``.
        rate: target sampling rate in Hz; ``None`` keeps the record's own.
        min_duration_s: refuse records shorter than this (after cropping defects).

    Raises:
        RecordError: with a one-line message naming the file and the problem.
    """
    import wfdb  # local: keeps `import ecgbio` light

    if isinstance(leads, str):
        leads = tuple(s.strip() for s in leads.split(",") if s.strip())
    rec_path = record_path(path)
    header = Path(str(rec_path) + ".hea")
    if not header.is_file():
        raise RecordError("header file not found (expected a WFDB .hea file)", header)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = wfdb.rdheader(str(rec_path))
    except Exception as exc:  # wfdb raises many types for bad headers
        raise RecordError(f"unreadable WFDB header ({_describe(exc)})", header) from exc

    fs = float(getattr(head, "fs", 0) or 0)
    if not math.isfinite(fs) or not MIN_RATE_HZ <= fs <= MAX_RATE_HZ:
        raise RecordError(
            f"sampling rate {fs:g} Hz is outside {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz", header
        )
    multi_segment = getattr(head, "seg_name", None) is not None
    names = tuple(head.sig_name or ()) if not multi_segment else ()
    wanted = None if multi_segment else select_leads(names, leads, header)
    # wfdb reads each channel once; a lead asked twice (a stand-in for two leads) is copied after
    channels = None if wanted is None else list(dict.fromkeys(wanted))
    if not multi_segment and not names:
        raise RecordError("header declares no signals", header)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = wfdb.rdrecord(str(rec_path), channels=channels, physical=True, m2s=True)
    except FileNotFoundError as exc:
        missing = Path(exc.filename).name if getattr(exc, "filename", None) else "signal file"
        raise RecordError(f"signal file {missing} is missing", header) from exc
    except Exception as exc:
        raise RecordError(
            f"signal file is truncated or corrupt ({_describe(exc)})", header
        ) from exc
    if multi_segment and rec.p_signal is not None:  # leads are known only once segments are read
        _keep_channels(rec, select_leads(tuple(rec.sig_name or ()), leads, header))
    elif wanted is not None and channels != wanted and rec.p_signal is not None:
        _keep_channels(rec, [channels.index(c) for c in wanted])
    if rec.p_signal is None or rec.p_signal.size == 0:
        raise RecordError("record holds no samples", header)

    signal = np.asarray(rec.p_signal, dtype=np.float64).T  # (leads, samples)
    kept = tuple(rec.sig_name)
    units = list(rec.units or ["mV"] * len(kept))
    for i, unit in enumerate(units):
        signal[i] *= _UNIT_TO_MV.get(str(unit or "mV").strip().lower(), 1.0)

    recording = Recording(
        path=rec_path,
        signal=signal,
        fs=fs,
        leads=kept,
        session=session_date(head),
        comments=tuple(head.comments or ()),
    )
    recording = repair_defects(recording, header)
    if recording.duration_s < min_duration_s:
        raise RecordError(
            f"record is {recording.duration_s:.2f} s long after cropping; need >= {min_duration_s:g} s",
            header,
        )
    if rate is not None and abs(rate - recording.fs) > 1e-9:
        recording = resample(recording, float(rate))
    recording.signal = recording.signal.astype(np.float32)
    return recording


def repair_defects(rec: Recording, header: Path) -> Recording:
    """Crop constant runs at the edges, mask inner ones, interpolate short NaN gaps; refuse the rest."""
    signal = rec.signal
    n = signal.shape[1]
    notes: list[str] = []
    nan = np.isnan(signal)
    for i, lead in enumerate(rec.leads):
        frac = nan[i].mean()
        if frac >= 1.0:
            raise RecordError(f"lead {lead} is entirely NaN", header)
        if frac > MAX_NAN_FRACTION:
            raise RecordError(f"lead {lead} is {100 * frac:.0f}% NaN", header)
    mask = ~nan.any(axis=0)
    if not mask.all():
        idx = np.arange(n)
        for i in range(signal.shape[0]):
            bad = nan[i]
            if bad.any():
                signal[i, bad] = np.interp(idx[bad], idx[~bad], signal[i, ~bad])
        notes.append(f"interpolated {int((~mask).sum())} NaN samples")

    min_run = max(2, int(round(CONSTANT_RUN_S * rec.fs)))
    for start, stop in constant_runs(signal, min_run):
        mask[start:stop] = False
        notes.append(f"constant run of {stop - start} samples at {start}")

    valid = np.flatnonzero(mask)
    if valid.size == 0:
        raise RecordError("signal is constant (flat) throughout", header)
    first, last = int(valid[0]), int(valid[-1]) + 1
    if first > 0 or last < n:
        signal, mask = signal[:, first:last], mask[first:last]
        notes = [note + " (cropped)" if _run_at(note, first, last, n) else note for note in notes]

    for i, lead in enumerate(rec.leads):
        if float(np.std(signal[i][mask])) < FLAT_STD_MV:
            raise RecordError(f"lead {lead} is flat (std < {FLAT_STD_MV:g} mV)", header)
    return replace(rec, signal=signal, mask=None if mask.all() else mask, notes=tuple(notes))


def _run_at(note: str, first: int, last: int, n: int) -> bool:
    match = re.search(r"constant run of (\d+) samples at (\d+)", note)
    if not match:
        return False
    length, start = int(match.group(1)), int(match.group(2))
    return start < first or start + length > last


def constant_runs(signal: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """``[start, stop)`` spans where every lead repeats the same value for >= ``min_length`` samples."""
    same = np.all(np.diff(signal, axis=1) == 0, axis=0)  # sample i+1 equals sample i on all leads
    if not same.any():
        return []
    edges = np.diff(np.concatenate(([0], same.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs = []
    for s, e in zip(starts, stops, strict=True):
        if e - s + 1 >= min_length:  # k equal diffs span k+1 samples
            runs.append((int(s), int(e) + 1))
    return runs


def resample(rec: Recording, rate: float) -> Recording:
    """Polyphase resampling to ``rate`` (anti-aliased); the mask follows by nearest sample."""
    from scipy.signal import resample_poly

    ratio = Fraction(rate / rec.fs).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    signal = resample_poly(rec.signal, up, down, axis=1, padtype="line")
    mask = rec.mask
    if mask is not None:
        src = np.minimum(
            (np.arange(signal.shape[1]) * down / up).round().astype(int), mask.size - 1
        )
        mask = mask[src]
    return replace(rec, signal=signal, fs=float(rate), mask=mask)


def session_date(head: object) -> str:
    """Recording date from the header (``base_date``) or a comment such as ``# ECG date: 07.12.2004``."""
    base = getattr(head, "base_date", None)
    if isinstance(base, (date, datetime)):
        return base.strftime("%Y-%m-%d")
    for line in getattr(head, "comments", None) or ():
        match = re.search(r"date\s*[:=]\s*(\S+)", line, flags=re.IGNORECASE)
        if match:
            parsed = parse_date(match.group(1))
            if parsed:
                return parsed
    return ""


def parse_date(text: str) -> str:
    """``07.12.2004``, ``2004-12-07``, ``07/12/2004`` or ``2004-12-07 09:17:34`` -> ``2004-12-07``."""
    text = text.strip()
    for fmt in ("%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d"):
        try:
            return datetime.strptime(text, fmt).strftime("%Y-%m-%d")
        except ValueError:
            continue
    return ""


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
