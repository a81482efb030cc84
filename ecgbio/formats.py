"""Records in formats other than WFDB: EDF, EDF+ and BDF (via ``edfio``), and CSV tables.

Each reader returns a :class:`RawRecord`, the same raw pieces the WFDB path of
:func:`ecgbio.records.read_record` builds (signal (leads, samples) in millivolts, sampling rate,
lead names, session date, comments), and :func:`~ecgbio.records.read_record` does everything
after reading (defect repair, flat leads, rails, resampling, the amplitude checks on the beats)
with the same code for every format. The format is chosen by the file's suffix
(:func:`file_format`): ``.edf``, ``.bdf``, ``.csv``; anything else is a WFDB record.

EDF/EDF+C/BDF/BDF+C: physical values in the file's units (``uV``, ``mV``, ``V`` -> mV), lead
names from the signal labels, the recording's start date as the session; annotation signals and
annotations are ignored, other signals (EEG, respiration ...) are simply not selected. Signals of
one file may have different rates: the wanted leads are resampled to the first one's rate.
Refused: EDF+D (discontinuous), files shorter than their header claims, uncalibratable signals,
a lead asked for by name whose unit is not a voltage (``degC``: never read as mV).

CSV: a header row naming the leads (``I,II,V1``; ``I [uV]`` or ``I (uV)`` sets a lead's unit,
millivolts otherwise), one row per sample, the delimiter sniffed (comma, semicolon, tab; a
decimal comma is understood beside ``;`` or tab). The rate comes from a time column (``time``,
``t``, ``seconds``, ``time_s`` in seconds; ``ms``, ``time_ms`` in milliseconds) or from the
caller (``fs``). Leading ``#`` lines are comments (``# date: 2024-05-01`` gives the session).
Refused: no header row, non-numeric cells, empty columns, irregular or non-increasing time, no
rate.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ecgbio.config import ALL_LEADS
from ecgbio.errors import RecordError, shorten
from ecgbio.records import (
    MAX_RATE_HZ,
    MIN_RATE_HZ,
    OTHER_FORMATS,
    _describe,
    _duration,
    normalize_lead_name,
    record_file_format,
    resample_poly,
    select_leads,
    session_date,
    unit_to_mv,
)

#: File suffix -> format; every other path is a WFDB record.
SUFFIXES = OTHER_FORMATS
file_format = record_file_format


@dataclass
class RawRecord:
    """A record as read, before :func:`ecgbio.records.read_record`'s shared checks.

    Attributes:
        path: the file.
        signal: float64 (leads, samples) in millivolts.
        fs: sampling rate in Hz.
        leads: lead names as in the file, one per row of ``signal``.
        session: recording date ``YYYY-MM-DD`` or ``""``.
        comments: free-text lines from the file.
        notes: what the reader did (part read, leads resampled, rate taken from a time column).
        scales: per lead, the units (and gain) for messages about amplitudes.
        limits: per lead, the converter's limits in mV, or ``()`` when unknown.
    """

    path: Path
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    session: str = ""
    comments: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    scales: list[str] = field(default_factory=list)
    limits: list[tuple[float, ...]] = field(default_factory=list)


def read_raw(
    path: str | Path,
    leads: tuple[str, ...],
    max_duration_s: float | None = None,
    fs: float | None = None,
) -> RawRecord:
    """Read an EDF, BDF or CSV file (by its suffix); see :func:`read_edf`, :func:`read_csv`."""
    kind = file_format(path)
    if kind in ("edf", "bdf"):
        return read_edf(path, leads, max_duration_s)
    if kind == "csv":
        return read_csv(path, leads, max_duration_s, fs)
    raise RecordError("not an EDF, BDF or CSV file (read WFDB records with read_record)", path)


def check_file(path: Path, what: str) -> int:
    """The file's size, or a :class:`RecordError` saying why it cannot be read as one."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RecordError("symbolic link loop: the path never reaches a file", path) from None
        if os.path.islink(path):
            raise RecordError(
                f"is a symbolic link to {os.readlink(path)}, which does not exist", path
            ) from None
        if exc.errno == errno.ENOENT:
            raise RecordError(f"{what} file not found", path) from None
        raise RecordError(f"cannot be opened ({exc.strerror or exc})", path) from None
    if stat.S_ISDIR(info.st_mode):
        raise RecordError(f"is a directory, not an {what} file", path)
    if not stat.S_ISREG(info.st_mode):
        raise RecordError(f"is not a regular file (an {what} file must be a plain file)", path)
    return int(info.st_size)


def check_rate(fs: float, path: Path, source: str) -> float:
    """``fs`` within :data:`~ecgbio.records.MIN_RATE_HZ`-:data:`~ecgbio.records.MAX_RATE_HZ`."""
    if not math.isfinite(fs) or not MIN_RATE_HZ <= fs <= MAX_RATE_HZ:
        raise RecordError(
            f"sampling rate {fs:g} Hz ({source}) is outside {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz",
            path,
        )
    return float(fs)


def _resample_to(x: np.ndarray, source: float, target: float) -> np.ndarray:
    ratio = Fraction(target / source).limit_denominator(1000)
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=0, padtype="line")


# EDF / BDF ----------------------------------------------------------------------------------
#: The EDF+ "clipping date": writers put 01.01.85 where the start date is unknown or anonymised.
_UNKNOWN_EDF_DATE = date(1985, 1, 1)
#: Bytes of one signal's header in EDF/BDF (label 16, transducer 80, dimension 8, physical and
#: digital min/max 4 x 8, prefiltering 80; then samples per data record 8, reserved 32).
_SIGNAL_HEADER = 256
_SAMPLES_FIELD = 16 + 80 + 8 + 8 + 8 + 8 + 8 + 80  # offset of "samples per data record" * ns


@dataclass
class _EdfLayout:
    header_bytes: int
    n_records: int  # as the header says (-1: unknown, still recording)
    record_s: float
    samples: list[int]  # samples per data record, per signal (annotation signals included)
    reserved: str


def _edf_layout(path: Path, head: bytes, what: str) -> _EdfLayout:
    """The fixed header fields that size the data (to read only part of it, and to check the
    file holds what its header claims); edfio parses and checks the rest."""
    if len(head) < 256:
        raise RecordError(f"is not an {what} file (shorter than the 256-byte header)", path)
    try:
        header_bytes = int(head[184:192].decode("ascii").strip())
        n_records = int(head[236:244].decode("ascii").strip())
        record_s = float(head[244:252].decode("ascii").strip())
        ns = int(head[252:256].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise RecordError(
            f"unreadable {what} header (its size, record count, record duration or signal "
            f"count is not a number): is this an {what} file?",
            path,
        ) from None
    if ns <= 0 or header_bytes != _SIGNAL_HEADER * (ns + 1):
        raise RecordError(
            f"unreadable {what} header: {ns} signals need a {_SIGNAL_HEADER * (ns + 1):,}-byte "
            f"header, the header says {header_bytes:,}",
            path,
        )
    if len(head) < header_bytes:
        raise RecordError(
            f"{what} header is truncated ({len(head):,} of {header_bytes:,} bytes)", path
        )
    offset = 256 + ns * _SAMPLES_FIELD
    try:
        samples = [
            int(head[offset + 8 * i : offset + 8 * i + 8].decode("ascii")) for i in range(ns)
        ]
    except (UnicodeDecodeError, ValueError):
        raise RecordError(f"unreadable {what} header: a samples-per-record field", path) from None
    if any(s < 0 for s in samples) or sum(samples) == 0:
        raise RecordError(f"{what} header declares no samples per data record", path)
    if not math.isfinite(record_s) or record_s <= 0:
        raise RecordError(
            f"{what} data-record duration {record_s:g} s is not positive (an annotations-only "
            f"file holds no signal)",
            path,
        )
    reserved = head[192:236].decode("ascii", errors="replace").strip()
    return _EdfLayout(header_bytes, n_records, record_s, samples, reserved)


def _edf_session(edf: object) -> str:
    """The recording's start date, or ``""`` when absent, anonymised or the EDF+ unknown date."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = edf.startdate  # type: ignore[attr-defined]
    except Exception:  # AnonymizedDateError, or a date field that is not a date
        return ""
    if not isinstance(start, date) or start == _UNKNOWN_EDF_DATE:
        return ""
    return start.strftime("%Y-%m-%d")


def _open_edf(data: bytes, what: str, path: Path, header_bytes: int) -> object:
    import edfio

    reader = edfio.read_bdf if what == "BDF" else edfio.read_edf
    # The standard says ASCII; devices write "µV" in Latin-1 or UTF-8 all the same
    try:
        data[:header_bytes].decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "latin-1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reader(data, header_encoding=encoding)
    except Exception as exc:  # edfio raises ValueError and others for malformed headers
        raise RecordError(f"unreadable {what} file ({_describe(exc)})", path) from exc


def read_edf(
    path: str | Path, leads: tuple[str, ...], max_duration_s: float | None = None
) -> RawRecord:
    """Read the ``leads`` of an EDF/EDF+C (``.edf``) or BDF/BDF+C (``.bdf``) file.

    At most the first ``max_duration_s`` seconds are read from disk. ``leads`` ``("all",)``
    keeps every signal measured in volts whose label does not name it EEG, EOG or EMG.
    """
    path = Path(path)
    what = "BDF" if file_format(path) == "bdf" else "EDF"
    width = 3 if what == "BDF" else 2
    size = check_file(path, what)
    try:
        with open(path, "rb") as f:
            head = f.read(256)
            layout = _edf_layout(path, head + f.read(_header_rest(head)), what)
    except OSError as exc:
        raise RecordError(f"cannot be read ({exc.strerror or exc})", path) from None
    if layout.reserved.upper().startswith(("EDF+D", "BDF+D")):
        raise RecordError(
            f"{layout.reserved[:5]} (discontinuous) recordings are not supported: export the "
            f"recording as continuous {what}+C",
            path,
        )
    record_bytes = sum(layout.samples) * width
    held = max(0, size - layout.header_bytes) // record_bytes
    total = held if layout.n_records < 0 else layout.n_records
    if total > held:
        raise RecordError(
            f"{what} file is truncated or its header is wrong: the header claims {total:,} data "
            f"records ({_duration(total * layout.record_s)}), the file holds {held:,}",
            path,
        )
    notes = []
    take = total
    if max_duration_s is not None and total * layout.record_s > max_duration_s:
        take = min(total, max(1, math.ceil(max_duration_s / layout.record_s)))
    if take == 0:
        raise RecordError(f"{what} file holds no data records", path)
    try:
        with open(path, "rb") as f:
            data = f.read(layout.header_bytes + take * record_bytes)
    except OSError as exc:
        raise RecordError(f"cannot be read ({exc.strerror or exc})", path) from None
    edf = _open_edf(data, what, path, layout.header_bytes)
    signals = list(edf.signals)  # type: ignore[attr-defined]
    labels = tuple(s.label for s in signals)
    if tuple(w.lower() for w in leads) == (ALL_LEADS,):
        wanted = [
            i
            for i, s in enumerate(signals)
            if unit_to_mv(s.physical_dimension) is not None
            and s.physical_dimension.strip()
            and not re.match(r"\s*(EEG|EOG|EMG)\b", s.label, flags=re.IGNORECASE)
        ]
        if not wanted:
            raise RecordError(
                f"no ECG signal (measured in volts, not EEG/EOG/EMG) among: "
                f"{', '.join(labels) or 'none'}",
                path,
            )
    else:
        wanted = select_leads(labels, leads, path)
    first = signals[wanted[0]]
    fs = check_rate(float(first.sampling_frequency), path, f"signal {first.label}")
    rows, scales = [], []
    for i in wanted:
        s = signals[i]
        unit = s.physical_dimension.strip()
        factor = unit_to_mv(unit)
        if factor is None:  # as the CSV and WFDB readers: never read an unknown unit as mV
            raise RecordError(
                f"signal {s.label}: unit {unit!r} is not a voltage (give mV, uV or V)", path
            )
        if s.digital_min == s.digital_max or s.physical_min == s.physical_max:
            raise RecordError(
                f"signal {s.label} cannot be calibrated: its header's digital or physical range "
                f"is empty (min == max)",
                path,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = np.asarray(s.data, dtype=np.float64)
        rate = float(s.sampling_frequency)
        if abs(rate - fs) > 1e-9:
            check_rate(rate, path, f"signal {s.label}")
            x = _resample_to(x, rate, fs)
            notes.append(
                f"lead {s.label} resampled from {rate:g} to {fs:g} Hz (lead {first.label}'s)"
            )
        rows.append(x * factor)
        scales.append(
            f"units {unit or 'mV'}, physical range {s.physical_min:g} to {s.physical_max:g}"
        )
    n = min(r.size for r in rows)
    if max_duration_s is not None and total * layout.record_s > max_duration_s:
        n = min(n, max(1, int(max_duration_s * fs)))
        notes.append(f"read the first {_duration(n / fs)} of {_duration(total * layout.record_s)}")
    signal = np.stack([r[:n] for r in rows]) if n else np.zeros((len(rows), 0))
    if signal.size == 0:
        raise RecordError("record holds no samples", path)
    return RawRecord(
        path=path,
        signal=signal,
        fs=fs,
        leads=tuple(labels[i] for i in wanted),
        session=_edf_session(edf),
        notes=tuple(notes),
        scales=scales,
        # The physical range is not used as the converter's limits: many writers (MNE, pyedflib,
        # edfio itself) set it to the data's own extremes, which would mark every R top a rail.
        limits=[() for _ in wanted],
    )


def _header_rest(head: bytes) -> int:
    """Bytes of the header after its first 256 (0 when the field is unreadable)."""
    try:
        return max(0, int(head[184:192].decode("ascii").strip()) - 256)
    except (UnicodeDecodeError, ValueError):
        return 0


def edf_session(path: str | Path) -> str:
    """The start date of an EDF/BDF file from its header alone (``""`` when unknown)."""
    path = Path(path)
    what = "BDF" if file_format(path) == "bdf" else "EDF"
    try:
        with open(path, "rb") as f:
            head = f.read(256)
            head += f.read(_header_rest(head))
        layout = _edf_layout(path, head, what)
        return _edf_session(_open_edf(head, what, path, layout.header_bytes))
    except (OSError, RecordError):
        return ""


# CSV ----------------------------------------------------------------------------------------
#: Time-column names (lower case, units stripped): in seconds, and in milliseconds.
TIME_S_NAMES = frozenset({"time", "t", "seconds", "second", "sec", "secs", "s", "time_s", "times"})
TIME_MS_NAMES = frozenset({"ms", "time_ms", "msec", "milliseconds", "t_ms"})
#: A time step further than this from the median step (as a fraction of it) is irregular
#: sampling (a gap, a repeat or jitter). Times printed with few decimals jitter by one unit of
#: the last decimal: 360 Hz at 3 decimals steps 2 or 3 ms, 33 % off the median; still accepted.
MAX_STEP_DEVIATION = 0.5
_NA_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none", "-"})
_HEAD_BYTES = 65536
_UNIT_RE = re.compile(r"^(.*?)\s*[\[(]\s*([^\])]*?)\s*[\])]\s*$")


@dataclass
class _CsvLayout:
    encoding: str
    comments: list[str]
    skip: int  # lines before the header row
    sep: str
    decimal: str
    columns: list[str]
    first_row: list[str]


def _split_unit(column: str) -> tuple[str, str]:
    """``"I [uV]"`` -> ``("I", "uV")``; ``"I"`` -> ``("I", "")``."""
    match = _UNIT_RE.match(column.strip())
    return (match.group(1).strip(), match.group(2).strip()) if match else (column.strip(), "")


def _is_number(text: str, decimal: str = ".") -> bool:
    text = text.strip().strip('"').strip("'")
    if decimal == ",":
        text = text.replace(",", ".")
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sniff(lines: list[str]) -> str:
    """The delimiter that splits every sampled line into the same number (> 1) of fields."""
    best, best_count = ",", 0
    for sep in (",", ";", "\t"):
        counts = {len(next(csv.reader([ln], delimiter=sep))) for ln in lines}
        if len(counts) == 1 and (count := counts.pop()) > 1 and count > best_count:
            best, best_count = sep, count
    if best_count:
        return best
    # fields may be ragged (a trailing delimiter): the most frequent candidate in the header
    header = lines[0]
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    sep = max(counts, key=lambda s: counts[s])
    return sep if counts[sep] else ","


def _csv_layout(path: Path, head: bytes) -> _CsvLayout:
    if b"\x00" in head:
        raise RecordError("is not a CSV text file (it holds binary data)", path)
    full = len(head) == _HEAD_BYTES  # the file goes on past what was read
    if full and b"\n" in head:
        head = head[: head.rindex(b"\n")]
    try:
        text, encoding = head.decode("utf-8-sig"), "utf-8-sig"
    except UnicodeDecodeError:
        text, encoding = head.decode("latin-1"), "latin-1"
    lines = text.splitlines()
    comments, skip = [], 0
    while skip < len(lines) and (not lines[skip].strip() or lines[skip].lstrip().startswith("#")):
        if lines[skip].strip():
            comments.append(lines[skip].lstrip().lstrip("#").strip())
        skip += 1
    if skip >= len(lines):
        if full:
            raise RecordError(
                f"CSV's first {_HEAD_BYTES // 1024} KiB hold only comments and blank lines: the "
                "header row must come sooner",
                path,
            )
        raise RecordError("CSV file is empty (no header row, no samples)", path)
    data = [ln for ln in lines[skip + 1 : skip + 21] if ln.strip()]
    sep = _sniff([lines[skip], *data])
    columns = [c.strip() for c in next(csv.reader([lines[skip]], delimiter=sep))]
    first = [c.strip() for c in next(csv.reader([data[0]], delimiter=sep))] if data else []
    decimal = "."
    if sep != "," and any(
        re.fullmatch(r"[+-]?\d+,\d+([eE][+-]?\d+)?", c.strip())
        for ln in data
        for c in next(csv.reader([ln], delimiter=sep))
    ):
        decimal = ","
    if columns and all(_is_number(c, decimal) for c in columns if c) and any(columns):
        raise RecordError(
            "CSV has no header row: its first line holds numbers; the first line must name the "
            "columns (the leads, e.g. I,II,V1, and optionally a time column: time,I,II)",
            path,
        )
    if not data:
        if full:
            raise RecordError(
                f"CSV's header row or first sample row is longer than {_HEAD_BYTES // 1024} KiB: "
                "more columns than any ECG has, or no line breaks",
                path,
            )
        raise RecordError("CSV holds a header row but no samples", path)
    return _CsvLayout(encoding, comments, skip, sep, decimal, columns, first)


def is_signal_csv(path: str | Path) -> bool:
    """Whether a CSV file looks like a signal table (a header row, then a first data row of
    numbers), not a metadata table such as a persons CSV or PTB-XL's ``ptbxl_database.csv``."""
    try:
        with open(path, "rb") as f:
            layout = _csv_layout(Path(path), f.read(_HEAD_BYTES))
    except (OSError, RecordError):
        return False
    cells = [c for c in layout.first_row if c.strip()]
    return bool(cells) and all(_is_number(c, layout.decimal) for c in cells)


def csv_session(path: str | Path) -> str:
    """The session date from a CSV's leading ``#`` comments (``# date: 2024-05-01``)."""
    try:
        with open(path, "rb") as f:
            layout = _csv_layout(Path(path), f.read(_HEAD_BYTES))
    except (OSError, RecordError):
        return ""
    return session_date(SimpleNamespace(base_date=None, comments=layout.comments))


def _time_column(columns: list[str]) -> tuple[int, float] | None:
    """Index of the time column and the factor to seconds, or None."""
    for i, column in enumerate(columns):
        name, unit = _split_unit(column)
        key, unit = name.lower(), unit.lower()
        if key in TIME_MS_NAMES or (key in TIME_S_NAMES and unit in {"ms", "msec"}):
            return i, 1e-3
        if key in TIME_S_NAMES and unit in {"", "s", "sec", "secs", "seconds"}:
            return i, 1.0
    return None


def _read_columns(
    path: Path, layout: _CsvLayout, usecols: list[int], nrows: int | None
) -> dict[int, np.ndarray]:
    """The columns ``usecols`` as float64 (NaN where empty), refusing text cells by position."""
    import pandas as pd

    options = {
        "sep": layout.sep,
        "decimal": layout.decimal,
        "skiprows": layout.skip,
        "header": 0,
        "usecols": usecols,
        "nrows": nrows,
        "encoding": layout.encoding,
        "skipinitialspace": True,
        "skip_blank_lines": True,
        "engine": "c",
        "na_values": sorted(_NA_TEXT - {""}),
        "comment": None,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = pd.read_csv(path, dtype=np.float64, **options)
    except ValueError as exc:
        parse = ("could not convert", "Unable to parse", "cannot safely convert")
        if not any(text in str(exc) for text in parse):
            raise RecordError(f"unreadable CSV ({_describe(exc)})", path) from exc
        table = pd.read_csv(path, dtype=str, keep_default_na=False, **options)
        for column in table.columns:
            cells = table[column].astype(str).str.strip()
            numbers = pd.to_numeric(
                cells.str.replace(",", ".") if layout.decimal == "," else cells, errors="coerce"
            )
            bad = numbers.isna() & ~cells.str.lower().isin(_NA_TEXT)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                what = (
                    "is beyond the range of a number (+-1.8e308)"
                    if _overflows(cells.iloc[row], layout.decimal)
                    else "is not a number (every cell of a lead or time column must be one; "
                    "leave a missing sample empty)"
                )
                raise RecordError(
                    f"CSV column {str(column)!r}, data row {row + 1}: "
                    f"{shorten(cells.iloc[row], 40)!r} {what}",
                    path,
                ) from None
        raise RecordError(f"unreadable CSV ({_describe(exc)})", path) from exc
    except Exception as exc:  # pandas' ParserError (ragged rows), EmptyDataError ...
        raise RecordError(f"unreadable CSV ({_describe(exc)})", path) from exc
    # pandas keeps the used columns in file order
    return {c: table.iloc[:, k].to_numpy(np.float64) for k, c in enumerate(sorted(usecols))}


def _overflows(cell: str, decimal: str) -> bool:
    """Whether ``cell`` is a number written beyond a float's range (``1e400``), which pandas
    reads as no number at all."""
    try:
        return math.isinf(float(cell.replace(",", ".") if decimal == "," else cell))
    except ValueError:
        return False


def _rate_from_time(t: np.ndarray, column: str, path: Path) -> float:
    """The sampling rate of a time column (seconds): its samples over its span, once the steps
    are checked to be regular."""
    if t.size < 2:
        raise RecordError(
            "CSV holds fewer than 2 samples: no rate can be taken from its time column", path
        )
    if np.isnan(t).any():
        row = int(np.flatnonzero(np.isnan(t))[0]) + 1
        raise RecordError(f"CSV time column {column!r} is empty at data row {row}", path)
    steps = np.diff(t)
    if (steps <= 0).any():
        row = int(np.flatnonzero(steps <= 0)[0]) + 2
        raise RecordError(
            f"CSV time column {column!r} does not increase at data row {row} ({t[row - 2]:g} "
            f"then {t[row - 1]:g} s): samples out of order, repeated, or times printed with too "
            f"few decimals",
            path,
        )
    median = float(np.median(steps))
    off = np.abs(steps - median) > MAX_STEP_DEVIATION * median
    if off.any():
        row = int(np.flatnonzero(off)[0]) + 2
        raise RecordError(
            f"CSV time column {column!r} is irregular: the step before data row {row} is "
            f"{steps[row - 2]:.6g} s, the median step {median:.6g} s ({int(off.sum()):,} step(s) "
            f"off by > {100 * MAX_STEP_DEVIATION:g}%: gaps, dropped or jittered samples); "
            f"resample the recording to a fixed rate first",
            path,
        )
    fs = (t.size - 1) / float(t[-1] - t[0])  # robust to times rounded to a few decimals
    return float(round(fs)) if abs(fs - round(fs)) <= 1e-4 * fs else fs


def _refuse_repeated_leads(columns: list[str], path: Path) -> None:
    """Refuse a CSV naming one lead in two columns (``I,I``; ``I,i``; ``I,ECG I [uV]``).

    Why: leads are matched by name regardless of case, an ``ECG`` prefix or a unit, so only the
    first such column would ever be read and the other silently ignored; which of the two holds
    the lead is for the file's author to say.
    """
    seen: dict[str, str] = {}
    for column in columns:
        key = normalize_lead_name(_split_unit(column)[0])
        if key in seen:
            raise RecordError(
                f"CSV columns {seen[key]!r} and {column!r} name the same lead: give each lead "
                "one column",
                path,
            )
        seen[key] = column


def read_csv(
    path: str | Path,
    leads: tuple[str, ...],
    max_duration_s: float | None = None,
    fs: float | None = None,
) -> RawRecord:
    """Read the ``leads`` of a CSV table (one column per lead, a header row of lead names).

    Args:
        path: the ``.csv`` file.
        leads: lead names (matched as in WFDB headers: ``ECG I`` is ``I``), or ``("all",)``: every
            column but the time column.
        max_duration_s: read at most the first this many seconds (only those rows are parsed).
        fs: sampling rate in Hz for a CSV without a time column (ignored, with a note when it
            disagrees, where the time column gives the rate).
    """
    path = Path(path)
    check_file(path, "CSV")
    try:
        with open(path, "rb") as f:
            layout = _csv_layout(path, f.read(_HEAD_BYTES))
    except OSError as exc:
        raise RecordError(f"cannot be read ({exc.strerror or exc})", path) from None
    time = _time_column(layout.columns)
    names = [_split_unit(c)[0] for c in layout.columns]
    candidates = [i for i in range(len(names)) if time is None or i != time[0]]
    _refuse_repeated_leads([layout.columns[i] for i in candidates if names[i]], path)
    if tuple(w.lower() for w in leads) == (ALL_LEADS,):
        # a trailing delimiter leaves an unnamed column: not a lead
        wanted = [i for i in candidates if names[i]]
    else:
        shown = tuple(names[i] for i in candidates)
        wanted = [candidates[k] for k in select_leads(shown, leads, path)]
    if not wanted:
        raise RecordError("CSV has no lead columns (only a time column)", path)
    factors = []
    for i in wanted:
        unit = _split_unit(layout.columns[i])[1]
        factor = unit_to_mv(unit)
        if factor is None:
            raise RecordError(
                f"CSV column {layout.columns[i]!r}: unit {unit!r} is not a voltage (give mV, uV "
                f"or V, as 'I [uV]')",
                path,
            )
        factors.append(factor)

    notes: list[str] = []
    given = None
    if fs is not None:
        given = check_rate(float(fs), path, "given")
    if time is None and given is None:
        raise RecordError(
            "CSV has no time column and no sampling rate was given: add a time column (time, "
            "in seconds, or time_ms) or give the rate (--fs 500, or fs=500)",
            path,
        )
    usecols = sorted({*wanted, *([time[0]] if time else [])})
    nrows = None
    if max_duration_s is not None:
        rate = given
        if time is not None:  # a first look at the time column sizes the read
            t = _read_columns(path, layout, [time[0]], 4096)[time[0]] * time[1]
            rate = _rate_from_time(t, layout.columns[time[0]], path) if t.size > 1 else None
        if rate:
            nrows = max(1, int(max_duration_s * rate)) + 1  # one more: is there more?
    by_index = _read_columns(path, layout, usecols, nrows)
    if time is not None:
        t = by_index[time[0]] * time[1]
        rate = _rate_from_time(t, layout.columns[time[0]], path)
        rate = check_rate(rate, path, f"from time column {layout.columns[time[0]]!r}")
        if given is not None and abs(given - rate) > 0.01 * rate:
            notes.append(f"rate {rate:g} Hz from the time column (the given {given:g} Hz ignored)")
    else:
        rate = float(given)  # type: ignore[arg-type]
    rows = []
    for i, factor in zip(wanted, factors, strict=True):
        x = by_index[i]
        if x.size and np.isnan(x).all():
            raise RecordError(f"CSV column {layout.columns[i]!r} holds no numbers (empty)", path)
        rows.append(x * factor)
    signal = np.stack(rows)
    if signal.shape[1] == 0:
        raise RecordError("CSV holds a header row but no samples", path)
    if max_duration_s is not None and signal.shape[1] > int(max_duration_s * rate):
        keep = max(1, int(max_duration_s * rate))
        notes.append(f"read the first {_duration(keep / rate)} (the file holds more)")
        signal = signal[:, :keep]
    return RawRecord(
        path=path,
        signal=signal,
        fs=rate,
        leads=tuple(names[i] for i in wanted),
        session=session_date(SimpleNamespace(base_date=None, comments=layout.comments)),
        comments=tuple(layout.comments),
        notes=tuple(notes),
        scales=[f"units {_split_unit(layout.columns[i])[1] or 'mV'}" for i in wanted],
        limits=[() for _ in wanted],
    )


__all__ = [
    "SUFFIXES",
    "RawRecord",
    "csv_session",
    "edf_session",
    "file_format",
    "is_signal_csv",
    "read_csv",
    "read_edf",
    "read_raw",
]
