"""Read any WFDB record into a validated :class:`Recording` (millivolts, leads x samples).

Everything that can be wrong with a record on disk is caught here and turned into a one-line
:class:`~ecgbio.errors.RecordError` naming the file: missing or truncated signal files, headers wfdb
cannot parse, unknown leads, NaN, infinite or flat signals, records that are too short, absurd
sampling rates, headers that are directories or symbolic-link loops, non-ASCII names the WFDB reader
would mangle. Known recording defects are repaired and reported rather than silently kept: ECG-ID, for
example, ships records whose first 1024-2048 frames are a constant block of -1 samples; such runs are
cropped at the edges (``Recording.notes`` says so) and masked inside the record. Saturation (a lead
sitting on a flat rail at its extreme value: the recorder's range was exceeded) is found here, at the
record's own rate, and marked in ``Recording.rail``; :func:`ecgbio.beats.extract_beats` drops the
beats that touch it and refuses a record where too many do.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

from ecgbio import filters
from ecgbio.config import ALL_LEADS
from ecgbio.errors import LeadError, RecordError

#: Sampling rates accepted (Hz). Real ECG recorders span about 100-10,000 Hz (PTB-XL's 100 Hz
#: records, MIT-BIH 360, ECG-ID 500, PTB 1000, research amplifiers 2-10 kHz); below 50 Hz a QRS
#: complex (about 100 ms) is a handful of samples, above 20 kHz the value is almost surely a typo.
#: The header's text is checked too: wfdb reads an unparsable rate (``-500``, ``nan``) as 250 Hz.
MIN_RATE_HZ = 50.0
MAX_RATE_HZ = 20_000.0
#: Samples beyond this (mV) are refused at once: the header's gain or units are absurd (a gain of
#: 1e-40 per mV), and float32 overflows near 3.4e38, which breaks every filter downstream. Merely
#: implausible amplitudes (a unit 1000x off) are refused on the beats (:data:`AMPLITUDE_MV`):
#: a WFDB format may legitimately hold 1e7 mV (32-bit samples at a gain of 200 per mV, wfdb's own
#: test records).
MAX_ABS_MV = 1e30
#: The most sample values one read may decode (all signals, every sample of a frame): about
#: 1 GiB as float64. A 24-hour two-lead Holter record at 360 Hz is a sixth of it; a compressed
#: (FLAC) signal file claiming 8 signals at 20 kHz with 4 samples a frame decodes, from a few
#: hundred kilobytes, to gigabytes of memory before any check on the signal could run.
MAX_DECODED_VALUES = 1 << 27
#: A lead whose standard deviation is below this (mV) carries no ECG.
FLAT_STD_MV = 1e-3
#: Runs of exactly repeated samples at least this long are recording defects, not ECG.
CONSTANT_RUN_S = 0.5
#: Share of NaN samples above which a lead is refused rather than interpolated.
MAX_NAN_FRACTION = 0.2
#: Median-beat peak-to-peak amplitude (mV, cleaned signal, at 100 Hz) a body can produce at the
#: skin: checked on the beats (:func:`ecgbio.beats.check_amplitude`), quoted by the flat-lead
#: message here. The bounds sit about a factor of 2 beyond the real databases' extremes, so no
#: real record is refused, while a unit or gain 1000x off (V or uV for mV) lands far outside them;
#: measured by experiments/record_bounds.py (results/record-bounds.json).
AMPLITUDE_MV = (0.01, 20.0)
#: Saturation. A lead's maximum (or minimum) value is a rail - the recorder clipped there - when
#: the lead sits on it in at least ``RAIL_MIN_RUNS`` runs of >= 2 identical samples, or in one
#: run of at least ``RAIL_LONG_RUN_S``, or, when the value is the converter's limit (the header's
#: adc_res/adc_zero, or the format's range), in any run of >= 2 samples. The thresholds sit above
#: what a clean record's extreme value does by chance (a few short runs) and below a clipped lead's
#: many or long ones; measured by experiments/record_bounds.py (results/record-bounds.json).
RAIL_MIN_RUNS = 4
RAIL_LONG_RUN_S = 0.1
#: Sample range of each WFDB storage format (the lowest code of 16-bit and 212 formats is WFDB's
#: "missing sample", read as NaN, so the lowest real value is one above it).
_FORMAT_RANGE = {
    "8": (-128, 127),
    "80": (-128, 127),
    "16": (-32767, 32767),
    "61": (-32767, 32767),
    "160": (-32767, 32767),
    "212": (-2047, 2047),
    "310": (-511, 511),
    "311": (-511, 511),
    "24": (-(2**23) + 1, 2**23 - 1),
    "32": (-(2**31) + 1, 2**31 - 1),
}

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}


@dataclass
class Recording:
    """A record in memory.

    Attributes:
        path: record path without extension (an EDF, BDF or CSV file: the file itself).
        signal: float32 array (leads, samples) in millivolts.
        fs: sampling rate in Hz.
        leads: lead names as in the header, one per row of ``signal``.
        session: recording date ``YYYY-MM-DD`` from the header, or ``""``.
        comments: header comment lines.
        mask: boolean (samples,) - False where the signal is a repaired defect (masked constant run or
            interpolated NaN gap); beats overlapping it are not used.
        notes: what was repaired, for the prepare summary.
        rail: boolean (samples,) - True where a lead sits on a saturation rail (see
            :func:`find_rails`), or None when no lead is clipped; beats touching it are rejected.
        rails: one description per rail found (``"ECG I at +0.150 mV (8.4% of samples)"``).
    """

    path: Path
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    session: str = ""
    comments: tuple[str, ...] = ()
    mask: np.ndarray | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    rail: np.ndarray | None = None
    rails: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.signal.shape[1] / self.fs

    @property
    def valid(self) -> np.ndarray:
        return np.ones(self.signal.shape[1], bool) if self.mask is None else self.mask


@dataclass(frozen=True, eq=False)
class Signal:
    """An ECG already in memory, accepted wherever a record path is (:func:`read_record`,
    :meth:`ecgbio.Embedder.embed_record`, :class:`ecgbio.Gallery`'s ``enroll``, ``identify`` and
    ``verify``), through the same checks as a record read from a file.

    Attributes:
        samples: millivolts, ``(samples, leads)`` as WFDB's ``p_signal`` and a CSV table hold
            them; a 1-d array is one lead. A ``(leads, samples)`` array (as
            :attr:`Recording.signal`) is recognised by its shape: the axis as long as ``leads``
            is the leads' (a square array is read as ``(samples, leads)``).
        fs: sampling rate in Hz.
        leads: lead names, one per lead (``("I",)``, or ``"I,II"``).
        name: what messages, results and gallery templates call it (``<name>``).
        session: recording date ``YYYY-MM-DD``, or ``""``.
    """

    samples: np.ndarray
    fs: float
    leads: tuple[str, ...] | str = ("I",)
    name: str = "signal"
    session: str = ""

    @property
    def label(self) -> str:
        """``<name>``: how errors and results name it (never mistaken for a file)."""
        return f"<{self.name}>"


def is_signal_label(text: str) -> bool:
    """Whether ``text`` is a :attr:`Signal.label` rather than a file path."""
    return text.startswith("<") and text.endswith(">")


def read_signal(
    signal: Signal,
    leads: tuple[str, ...] | str = ("I",),
    rate: float | None = None,
    min_duration_s: float = 2.0,
    max_duration_s: float | None = None,
) -> Recording:
    """A :class:`Signal` as a :class:`Recording`: its ``leads`` kept (or repeated: a stand-in),
    then the checks every record goes through (:func:`check_magnitude`, :func:`_checked`)."""
    label = Path(signal.label)
    names = tuple(
        s.strip()
        for s in (signal.leads.split(",") if isinstance(signal.leads, str) else signal.leads)
    )
    if isinstance(leads, str):
        leads = tuple(s.strip() for s in leads.split(",") if s.strip())
    try:
        x = np.array(signal.samples, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"samples are not numbers ({_describe(exc)})", label) from exc
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or not x.size:
        raise RecordError(
            f"expected a (samples, leads) array of millivolts, got shape {x.shape}", label
        )
    if not names or any(not n for n in names):
        raise RecordError("name every lead of the signal (leads=('I',) ...)", label)
    if x.shape[1] != len(names):
        if x.shape[0] != len(names):
            raise RecordError(
                f"{len(names)} lead name(s) ({', '.join(names)}) for an array of shape "
                f"{x.shape}: expected (samples, {len(names)})",
                label,
            )
        x = x.T
    try:
        fs = float(signal.fs)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"sampling rate {signal.fs!r} is not a number", label) from exc
    if not math.isfinite(fs) or not MIN_RATE_HZ <= fs <= MAX_RATE_HZ:
        raise RecordError(
            f"sampling rate {fs:g} Hz is outside {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz", label
        )
    keep = select_leads(names, leads, label)
    data = x.T[keep]  # (leads, samples), a copy
    notes = []
    if max_duration_s is not None and data.shape[1] > max(1, int(max_duration_s * fs)):
        limit = max(1, int(max_duration_s * fs))
        notes.append(f"read the first {_duration(limit / fs)} of {_duration(data.shape[1] / fs)}")
        data = data[:, :limit]
    kept = tuple(names[i] for i in keep)
    scales = ["units mV"] * len(kept)
    check_magnitude(data, kept, scales, label)
    recording = Recording(
        path=label, signal=data, fs=fs, leads=kept, session=signal.session, notes=tuple(notes)
    )
    return _checked(recording, label, scales, lambda: [None] * len(kept), rate, min_duration_s)


def stand_in_warnings(read: Sequence[str], model: Sequence[str], where: str = "") -> list[str]:
    """One warning per lead that was read in place of the model's own (a stand-in, or a store
    prepared from another lead): ``lead ECG1 stands in for the model's lead I: ...``."""
    out = []
    for got, wanted in zip(read, model, strict=False):
        if wanted.lower() == ALL_LEADS or normalize_lead_name(got) == normalize_lead_name(wanted):
            continue
        text = (
            f"lead {got} stands in for the model's lead {wanted}{where}: the model was trained on "
            f"lead {wanted}, so scores on another lead are less reliable"
        )
        if text not in out:
            out.append(text)
    return out


def record_path(path: str | Path) -> Path:
    """Accept ``rec``, ``rec.hea`` or ``rec.dat`` and return the record path without extension."""
    p = Path(path)
    return p.with_suffix("") if p.suffix.lower() in {".hea", ".dat", ".mat", ".atr"} else p


#: Files read by :mod:`ecgbio.formats` (by suffix, any case); every other path is WFDB.
OTHER_FORMATS = {".edf": "edf", ".bdf": "bdf", ".csv": "csv"}


def record_file_format(path: str | Path) -> str:
    """``"edf"``, ``"bdf"``, ``"csv"`` by the file's suffix, else ``"wfdb"``."""
    return OTHER_FORMATS.get(Path(path).suffix.lower(), "wfdb")


def record_file(path: str | Path) -> str:
    """The file that messages about a record name: an EDF, BDF or CSV file itself, or a WFDB
    record's ``.hea``."""
    if isinstance(path, Signal):
        return path.label
    text = os.fspath(path)
    if record_file_format(text) != "wfdb" or text.endswith(".hea") or is_signal_label(text):
        return text
    return text + ".hea"


#: Bytes a sample takes on disk in each WFDB storage format (formats not listed are not checked).
BYTES_PER_SAMPLE = {
    "8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0,
    "212": 1.5, "310": 4 / 3, "311": 4 / 3,
}  # fmt: skip


#: Frames a signal file may hold beyond (or short of) the header's sample count: formats 212, 310
#: and 311 pack samples in groups, so the last group's padding can add or drop a sample.
FRAME_SLACK = 2


@dataclass(frozen=True)
class SignalFile:
    """One signal file of a header, sized from the header's formats and from the disk.

    Attributes:
        name: the file's name as the header gives it.
        size: bytes on disk.
        offset: the header's byte offset (bytes before the samples).
        frame_bytes: bytes one frame takes (every signal in the file, each sample of a frame).
        signals: how many of the header's signals the file holds.
        formats: the storage formats of those signals, as written (``"16"``, ``"212"``).
    """

    name: str
    size: int
    offset: float
    frame_bytes: float
    signals: int
    formats: tuple[str, ...]

    @property
    def frames(self) -> int:
        """Whole frames the file holds after its offset."""
        return int(max(0.0, self.size - self.offset) // self.frame_bytes)


def signal_files(head: object, header: Path) -> list[SignalFile] | None:
    """The header's signal files, sized; ``None`` for formats whose size says nothing
    (compressed, MATLAB, unknown) or when a file is missing (the reader says so in its own
    words)."""
    formats = getattr(head, "fmt", None) or []
    files = getattr(head, "file_name", None) or []
    offsets = getattr(head, "byte_offset", None) or [None] * len(files)
    per_frame = getattr(head, "samps_per_frame", None) or [1] * len(files)
    per_file: dict[str, list] = {}  # name -> [byte offset, frame bytes, signals, formats]
    for name, fmt, offset, spf in zip(files, formats, offsets, per_frame, strict=False):
        width = BYTES_PER_SAMPLE.get(str(fmt))
        if width is None or not name or str(name).endswith(".mat"):
            return None
        entry = per_file.setdefault(name, [float(offset or 0), 0.0, 0, []])
        entry[1] += width * max(1, int(spf or 1))  # "212x4": 4 samples of it in every frame
        entry[2] += 1
        entry[3].append(str(fmt))
    out = []
    for name, (offset, frame, count, fmts) in per_file.items():
        path = header.parent / name
        if not path.is_file():
            return None
        size = path.stat().st_size
        out.append(SignalFile(name, size, offset, frame, count, tuple(dict.fromkeys(fmts))))
    return out or None


def signal_file_length(head: object, header: Path) -> int | None:
    """How many samples a signal the header's signal files hold, from their sizes (the fewest
    over the files); ``None`` when :func:`signal_files` cannot size them."""
    files = signal_files(head, header)
    return min(f.frames for f in files) if files else None


def check_signal_file_sizes(
    files: list[SignalFile] | None, claimed: int, wanted: int, n_sig: int, fs: float, header: Path
) -> None:
    """Refuse signal files whose size does not fit the header's sample count, formats and signal
    count (``claimed`` samples a signal, 0 where the header gives none; ``wanted``: the samples
    to be read, fewer when only the first minutes are).

    A file too short to give ``wanted`` is truncated, or the header declares more signals than
    the file holds; :data:`FRAME_SLACK` frames are tolerated (a trailing partial frame, a packed
    format's last group). A file *longer* than the header says is read as WFDB defines it (the
    header's samples, from the start): a header may describe part of its file, and recorders pad
    files to their block size, so that cannot be told from an edited format.
    """
    if not files or not wanted:
        return
    for f in files:
        if f.frames + FRAME_SLACK >= wanted:
            continue
        # a file that is exactly the header's samples of fewer signals: the signal count is wrong
        data = max(0.0, f.size - f.offset)
        width = f.frame_bytes / f.signals
        fewer = round(data / (width * claimed)) if claimed else 0
        if 1 <= fewer < f.signals and abs(data - fewer * width * claimed) < width * fewer:
            raise RecordError(
                f"the header declares {n_sig} signals ({f.signals} in signal file {f.name}), "
                f"but the file holds {fewer}: its {f.size:,} bytes are {claimed:,} samples of "
                f"{fewer} signal(s) in format {'/'.join(f.formats)}",
                header,
            )
        raise RecordError(
            f"signal file {f.name} is truncated or the header's length is wrong: the header "
            f"claims {claimed:,} samples a signal ({_duration(claimed / fs)}), and the file "
            f"holds {f.frames:,}",
            header,
        )


@contextmanager
def _cuttable(
    rec_path: Path, header: Path, text: str, claimed: int, sampto: int | None
) -> Iterator[Path]:
    """The record path wfdb can read the first ``sampto`` samples of. wfdb cuts only records whose
    header states a length (optional in the format); for one that does not, a copy of the header
    with the length the signal files hold is written beside links to those files in a private
    temporary folder, so a long record is still read in part rather than whole."""
    if sampto is None or claimed:
        yield rec_path
        return
    import tempfile

    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    fields = lines[first].split()
    if len(fields) != 3:  # a length is there after all, or the line is not what we expect
        yield rec_path
        return
    with tempfile.TemporaryDirectory(prefix="ecgbio-") as tmp:
        lines[first] = " ".join([*fields, str(sampto)])  # the copy is as long as what is read
        for line in lines[first + 1 :]:
            parts = line.split()
            if parts and not line.startswith("#"):
                target = Path(tmp) / parts[0]
                if not target.exists() and (header.parent / parts[0]).exists():
                    target.symlink_to((header.parent / parts[0]).resolve())
        copy = Path(tmp) / header.name
        copy.write_text("\n".join(lines) + "\n")
        yield Path(tmp) / rec_path.name


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _lead_names(names: list[str | None] | None) -> tuple[str, ...]:
    """The header's signal descriptions; one left out (the WFDB format allows it) is ``""``, a
    lead no name can ask for."""
    return tuple(str(n) if n is not None else "" for n in names or ())


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
    path: str | Path | Signal,
    leads: tuple[str, ...] | str = ("I",),
    rate: float | None = None,
    min_duration_s: float = 2.0,
    max_duration_s: float | None = None,
    fs: float | None = None,
) -> Recording:
    """Read a record, keep ``leads``, resample to ``rate``: a WFDB record (single or
    multi-segment), or by its suffix an EDF/EDF+/BDF file (``.edf``, ``.bdf``) or a CSV table
    (``.csv``; see :mod:`ecgbio.formats`). Every format then goes through the same checks.

    Args:
        path: record path, with or without ``.hea``; or an ``.edf``, ``.bdf`` or ``.csv`` file;
            or a :class:`Signal` (an array in memory, :func:`read_signal`).
        leads: lead names (``("I",)``, ``"I,II"``) or ``"all"``; a name repeated reads that lead
            in place of several (a stand-in: ``("ECG1",)`` for a model of lead I).
        rate: target sampling rate in Hz; ``None`` keeps the record's own.
        min_duration_s: refuse records shorter than this (after cropping defects).
        max_duration_s: read at most the first this many seconds (``None``: all). Only those
            samples are read from disk, so a 24-hour Holter record costs what its first minutes
            cost; the recording's notes say what was left unread.
        fs: sampling rate in Hz of a CSV table without a time column (ignored otherwise).

    Raises:
        RecordError: with a one-line message naming the file and the problem.
    """
    if isinstance(path, Signal):
        return read_signal(path, leads, rate, min_duration_s, max_duration_s)
    if isinstance(leads, str):
        leads = tuple(s.strip() for s in leads.split(",") if s.strip())
    if record_file_format(path) != "wfdb":
        from ecgbio.formats import read_raw

        raw = read_raw(path, leads, max_duration_s, fs)
        check_magnitude(raw.signal, raw.leads, raw.scales, raw.path)
        recording = Recording(
            path=raw.path,
            signal=raw.signal,
            fs=raw.fs,
            leads=raw.leads,
            session=raw.session,
            comments=raw.comments,
            notes=raw.notes,
        )
        return _checked(recording, raw.path, raw.scales, lambda: raw.limits, rate, min_duration_s)
    import wfdb  # local: keeps `import ecgbio` light

    rec_path = record_path(path)
    header = Path(str(rec_path) + ".hea")
    text = read_header_text(header, given=Path(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = wfdb.rdheader(str(rec_path))
    except Exception as exc:  # wfdb raises many types for bad headers
        raise RecordError(f"unreadable WFDB header ({_describe(exc)})", header) from exc

    fs, rate_note = header_rate(text, float(getattr(head, "fs", 0) or 0), header)
    multi_segment = getattr(head, "seg_name", None) is not None
    names = _lead_names(head.sig_name) if not multi_segment else ()
    everything = tuple(w.lower() for w in leads) == (ALL_LEADS,)
    wanted = None
    if not multi_segment:
        wanted = select_leads(names, leads, header)
        units = list(head.units or [])
        # "all" reads only the leads in volts: a blood pressure's gain is none of its business
        read = [i for i in wanted if not everything or unit_to_mv(_unit_of(units, i)) is not None]
        check_header_fields(text, head, read, header)
        wanted = voltage_leads(names, units, wanted, everything, header)
    # wfdb reads each channel once; a lead asked twice (a stand-in for two leads) is copied after
    channels = None if wanted is None else list(dict.fromkeys(wanted))
    if not multi_segment and not names:
        raise RecordError("header declares no signals", header)
    claimed = int(getattr(head, "sig_len", 0) or 0)  # optional in a WFDB header
    files = None if multi_segment else signal_files(head, header)
    held = min(f.frames for f in files) if files else None
    total = claimed or held or 0
    limit = None if max_duration_s is None else max(1, int(max_duration_s * fs))
    wanted_n = total if limit is None or (total and total <= limit) else limit
    check_signal_file_sizes(files, claimed, wanted_n, int(head.n_sig or 0), fs, header)
    sampto = None
    if limit is not None and (not total or total > limit):
        sampto = limit if not held else min(limit, held)
        rate_note = "; ".join(
            n
            for n in (
                rate_note,
                f"read the first {_duration(sampto / fs)}"
                + (f" of {_duration(total / fs)}" if total else ""),
            )
            if n
        )

    if not multi_segment:
        check_decoded_size(head, sampto or total, header)
    try:
        with warnings.catch_warnings(), _cuttable(rec_path, header, text, claimed, sampto) as path:
            warnings.simplefilter("ignore")
            rec = wfdb.rdrecord(
                str(path), channels=channels, physical=True, m2s=True, sampto=sampto
            )
    except FileNotFoundError as exc:
        missing = Path(exc.filename).name if getattr(exc, "filename", None) else "signal file"
        raise RecordError(f"signal file {missing} is missing", header) from exc
    except OSError as exc:
        raise RecordError(_signal_file_problem(exc), header) from exc
    except Exception as exc:
        raise RecordError(
            f"signal file is truncated or corrupt ({_describe(exc)})", header
        ) from exc
    if multi_segment and rec.p_signal is not None:  # leads are known only once segments are read
        read = _lead_names(rec.sig_name)
        keep = select_leads(read, leads, header)
        _keep_channels(rec, voltage_leads(read, list(rec.units or []), keep, everything, header))
    elif wanted is not None and channels != wanted and rec.p_signal is not None:
        _keep_channels(rec, [channels.index(c) for c in wanted])
    if rec.p_signal is None or rec.p_signal.size == 0:
        raise RecordError("record holds no samples", header)

    signal = np.asarray(rec.p_signal, dtype=np.float64).T  # (leads, samples)
    kept = _lead_names(rec.sig_name)
    units = list(rec.units or ["mV"] * len(kept))
    factors = [unit_to_mv(unit) or 1.0 for unit in units]  # voltages: checked before reading
    with np.errstate(over="ignore", invalid="ignore"):
        for i, factor in enumerate(factors):
            signal[i] *= factor
    scales = [
        _scale_hint(head, idx, units[k]) for k, idx in enumerate(wanted or [None] * len(kept))
    ]
    check_magnitude(signal, kept, scales, header)

    recording = Recording(
        path=rec_path,
        signal=signal,
        fs=fs,
        leads=kept,
        session=session_date(head),
        comments=tuple(head.comments or ()),
        notes=(rate_note,) if rate_note else (),
    )

    def limits() -> list[tuple[float, ...] | None]:
        if wanted is None:
            return [None] * len(kept)
        return [_converter_limits(head, i, f) for i, f in zip(wanted, factors, strict=True)]

    return _checked(recording, header, scales, limits, rate, min_duration_s)


def _checked(
    recording: Recording,
    header: Path,
    scales: list[str],
    limits: Callable[[], list[tuple[float, ...] | None]],
    rate: float | None,
    min_duration_s: float,
) -> Recording:
    """What every format goes through once read: defects repaired (or refused), the length
    checked, rails found at the native rate (``limits``: per lead, the converter's limits in
    mV), then resampling to ``rate`` and float32."""
    recording = repair_defects(recording, header, scales)
    if recording.duration_s < min_duration_s:
        raise RecordError(
            f"record is {recording.duration_s:.2f} s long after cropping; need >= {min_duration_s:g} s",
            header,
        )
    recording = find_rails(recording, limits())
    if rate is not None and abs(rate - recording.fs) > 1e-9:
        recording = resample(recording, float(rate))
    recording.signal = recording.signal.astype(np.float32)
    return recording


def read_header_text(header: Path, given: Path | None = None) -> str:
    """The header's text, or a :class:`RecordError` saying exactly why there is none.

    Also refuses non-ASCII characters in the names wfdb opens files by (record, segment and
    signal file names) and in the units: wfdb reads headers as ASCII and silently drops every other
    character, so ``récord_ü.dat`` would be looked for as ``rcord_.dat`` and ``µV`` read as ``V``.
    (Non-ASCII paths are fine: only the header's text is read as ASCII.)
    """
    try:
        info = os.stat(header)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RecordError(
                "symbolic link loop: the header path never reaches a file", header
            ) from None
        if os.path.islink(header):
            raise RecordError(
                f"is a symbolic link to {os.readlink(header)}, which does not exist", header
            ) from None
        if exc.errno == errno.ENOENT:
            if given is not None and given.is_dir():
                raise RecordError(
                    "is a directory, not a WFDB record (give a record's .hea file)", given
                ) from None
            raise RecordError("header file not found (expected a WFDB .hea file)", header) from None
        raise RecordError(f"header cannot be opened ({exc.strerror or exc})", header) from None
    if stat.S_ISDIR(info.st_mode):
        raise RecordError("is a directory, not a header file", header)
    if not stat.S_ISREG(info.st_mode):
        raise RecordError("is not a regular file (a header must be a plain text file)", header)
    try:
        raw = header.read_bytes()
    except OSError as exc:
        raise RecordError(f"header cannot be read ({exc.strerror or exc})", header) from None
    text = raw.decode("utf-8", errors="replace")
    specs = [
        (n, line.split()) for n, line in enumerate(text.splitlines(), 1) if _is_spec_line(line)
    ]
    for k, (number, words) in enumerate(specs):
        # the names wfdb opens files by: the record (or segment) name, each signal file name
        if words and not words[0].isascii():
            kept = "".join(c for c in words[0] if c.isascii())
            raise RecordError(
                f"non-ASCII record names are not supported by the WFDB reader: it drops the "
                f"non-ASCII characters of header line {number}, so {words[0]!r} would be read as "
                f"{kept!r}; rename the record and its signal files with ASCII names and edit "
                f"the header to match",
                header,
            )
        if k > 0 and len(words) > 2 and not words[2].isascii():  # gain(baseline)/units
            raise RecordError(
                f"header line {number}: the gain/units field {words[2]!r} has non-ASCII "
                f"characters, which the WFDB reader drops (so 'µV' becomes 'V', 1,000,000x off); "
                f"write the units in ASCII ('uV')",
                header,
            )
    return text


def _is_spec_line(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _record_line(text: str) -> list[str]:
    """The fields of the header's record line (the first line that is not a comment)."""
    return next((line.split() for line in text.splitlines() if _is_spec_line(line)), [])


def _positive_number(text: str) -> float | None:
    """``text`` as a finite number > 0, or ``None``."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def check_header_fields(text: str, head: object, channels: list[int], header: Path) -> None:
    """Refuse what wfdb parses from a single-segment header without a word, and wrongly.

    - a sample count that is not a whole number (``-10``): wfdb ignores it and reads the whole
      signal file;
    - a record line declaring more (or fewer) signals than the header has signal lines: wfdb
      fails later with "list index out of range", which reads as a truncated signal file;
    - an ADC gain of the ``channels`` to be read that is not a finite number > 0: wfdb reads
      ``nan`` as a unit (and uses gain 200), 0 as 200 (WFDB's "uncalibrated"), and a negative
      gain turns the signal upside down.
    """
    fields = _record_line(text)
    if len(fields) >= 4 and not re.fullmatch(r"\d+", fields[3]):
        raise RecordError(
            f"sample count {fields[3]!r} on the header's record line is not a whole number "
            f"(the WFDB reader would ignore it and read the whole signal file); give the samples "
            f"a signal, e.g. 5000",
            header,
        )
    declared = int(getattr(head, "n_sig", 0) or 0)
    lines = [line.split() for line in text.splitlines() if _is_spec_line(line)][1:]
    if declared != len(lines):
        raise RecordError(
            f"the header declares {declared} signal(s) on its record line but holds "
            f"{len(lines)} signal line(s): the record line's signal count or the signal lines "
            f"are wrong",
            header,
        )
    names = _lead_names(getattr(head, "sig_name", None))
    for i in channels:
        words = lines[i] if i < len(lines) else []
        if len(words) < 3:  # no gain field: WFDB's default, 200 per mV
            continue
        gain = re.split(r"[/(]", words[2], maxsplit=1)[0]
        if _positive_number(gain) is None:
            raise RecordError(
                f"lead {names[i] or i + 1}: ADC gain {gain!r} in the header is not a positive "
                f"number (steps per physical unit, e.g. 200; 0 marks an uncalibrated signal, "
                f"whose millivolts are unknown)",
                header,
            )


def unit_to_mv(unit: str | None) -> float | None:
    """The factor from ``unit`` to millivolts (mV, uV, V, nV, any case; empty or missing:
    mV, WFDB's default), or ``None`` for a unit that is not a voltage (``mmHg``, ``furlong``)."""
    return _UNIT_TO_MV.get(str(unit or "").strip().lower() or "mv")


def check_decoded_size(head: object, frames: int, header: Path) -> None:
    """Refuse a read that would decode more than :data:`MAX_DECODED_VALUES` sample values: the
    header's frames times every signal's samples a frame (``212x4``: 4), whatever the signal
    file's size (compressed formats), before any of it is decoded."""
    per_frame = [max(1, int(n or 1)) for n in (getattr(head, "samps_per_frame", None) or [])]
    values = frames * (sum(per_frame) or int(getattr(head, "n_sig", 0) or 0))
    if values > MAX_DECODED_VALUES:
        raise RecordError(
            f"the header asks to decode {values:,} sample values ({frames:,} frames of "
            f"{len(per_frame)} signal(s), {sum(per_frame)} samples a frame), more than "
            f"{MAX_DECODED_VALUES:,}; read less of the record (--max-minutes)",
            header,
        )


def _unit_of(units: list[str | None], i: int) -> str:
    """Lead ``i``'s unit as the header gives it ("" when it gives none: WFDB's mV)."""
    return str(units[i] or "") if i < len(units) else ""


def voltage_leads(
    names: tuple[str, ...],
    units: list[str | None],
    wanted: list[int],
    everything: bool,
    path: Path,
) -> list[int]:
    """``wanted`` (indices into ``names``) checked to be measured in volts, as the CSV and EDF
    readers check theirs: an unknown unit read as millivolts gives amplitudes off by any
    factor. Asked for ``"all"`` (``everything``), the leads that are not in volts (a blood
    pressure in mmHg) are left out, as the EDF reader leaves them; a lead asked for by name
    whose unit is not a voltage is refused."""

    def unit(i: int) -> str:
        return _unit_of(units, i)

    if everything:
        kept = [i for i in wanted if unit_to_mv(unit(i)) is not None]
        if not kept:
            shown = ", ".join(f"{names[i]} ({unit(i)})" for i in wanted) or "none"
            raise RecordError(f"no lead measured in volts (mV, uV or V) among: {shown}", path)
        return kept
    for i in wanted:
        if unit_to_mv(unit(i)) is None:
            raise RecordError(
                f"lead {names[i]}: unit {unit(i)!r} in the header is not a voltage (give mV, uV "
                f"or V, as 200/mV)",
                path,
            )
    return wanted


def header_rate(text: str, parsed: float, header: Path) -> tuple[float, str]:
    """The sampling rate from the header's record line, checked as text and as a number.

    wfdb parses the field with a regular expression and silently uses 250 Hz when it does not
    match (``-500``, ``nan``, ``1e3``), so the text itself is checked. Returns the rate and a note
    when the header gives none (WFDB's default 250 Hz is used, as the standard says).
    """
    fields = _record_line(text)
    note = ""
    if len(fields) >= 3:
        given = re.split(r"[/(]", fields[2], maxsplit=1)[0]
        if not re.fullmatch(r"(\d+\.?\d*|\.\d+)", given):
            value = _positive_number(given)
            if value is not None and not MIN_RATE_HZ <= value <= MAX_RATE_HZ:
                raise RecordError(
                    f"sampling rate {given!r} ({value:g} Hz) in the header is outside "
                    f"{MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz, the accepted range",
                    header,
                )
            if value is not None:
                raise RecordError(
                    f"sampling rate {given!r} in the header is not written as a plain decimal "
                    f"number, which the WFDB reader needs (it would silently use {parsed:g} Hz); "
                    f"write it as {value:g}",
                    header,
                )
            raise RecordError(
                f"sampling rate {given!r} in the header is not a positive number (the WFDB reader "
                f"would silently use {parsed:g} Hz); give the rate in Hz, e.g. 500",
                header,
            )
        fs = float(given)
    else:
        fs = parsed
        note = f"header gives no sampling rate: WFDB's default {parsed:g} Hz used"
    if not math.isfinite(fs) or not MIN_RATE_HZ <= fs <= MAX_RATE_HZ:
        raise RecordError(
            f"sampling rate {fs:g} Hz is outside {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz", header
        )
    return fs, note


def check_magnitude(
    signal: np.ndarray, leads: tuple[str, ...], scales: list[str], header: Path
) -> None:
    """Refuse infinite samples or samples beyond :data:`MAX_ABS_MV` (a wrong gain or unit)."""
    for i, lead in enumerate(leads):
        x = signal[i][~np.isnan(signal[i])]
        if x.size == 0:
            continue
        peak = float(np.max(np.abs(x)))
        if not math.isfinite(peak):
            raise RecordError(
                f"lead {lead} holds infinite values: the header's gain or units are wrong "
                f"({scales[i]})",
                header,
            )
        if peak > MAX_ABS_MV:
            raise RecordError(
                f"lead {lead} reaches {peak:.3g} mV, beyond anything a recorder measures "
                f"(> {MAX_ABS_MV:g} mV): the header's gain or units are wrong ({scales[i]})",
                header,
            )


def _scale_hint(head: object, index: int | None, unit: str) -> str:
    """``"units mV, gain 200 per mV"`` for messages about amplitudes."""
    gains = getattr(head, "adc_gain", None)
    if index is None or not gains or index >= len(gains):
        return f"units {unit or 'mV'}"
    return f"units {unit or 'mV'}, gain {gains[index]:g} per {unit or 'mV'}"


def _converter_limits(head: object, index: int, factor: float) -> tuple[float, ...]:
    """Physical values (mV) of the converter's limits for channel ``index`` of the header."""

    def field(name: str) -> object:
        values = getattr(head, name, None)
        return values[index] if values and index < len(values) else None

    gain, baseline = field("adc_gain"), field("baseline")
    if not gain or baseline is None:
        return ()
    codes = set(_FORMAT_RANGE.get(str(field("fmt")), ()))
    res, zero = field("adc_res"), field("adc_zero") or 0
    if res:
        codes |= {int(zero) - 2 ** (int(res) - 1), int(zero) + 2 ** (int(res) - 1) - 1}
    return tuple(sorted((c - float(baseline)) / float(gain) * factor for c in codes))


def _signal_file_problem(exc: OSError) -> str:
    name = Path(exc.filename).name if getattr(exc, "filename", None) else "signal file"
    if exc.errno == errno.ELOOP:
        return f"signal file {name}: symbolic link loop"
    if exc.errno == errno.EISDIR:
        return f"signal file {name} is a directory, not a signal file"
    if exc.errno == errno.EACCES:
        return f"signal file {name} cannot be read (permission denied)"
    return f"signal file {name} cannot be read ({_describe(exc)})"


def find_rails(rec: Recording, limits: list[tuple[float, ...] | None]) -> Recording:
    """Mark the samples where a lead sits on a saturation rail (see :data:`RAIL_MIN_RUNS`).

    Args:
        rec: the record at its own rate (a rail is flat only before resampling).
        limits: per lead, the converter's limits in mV (from the header), or None when unknown.
    """
    rail = np.zeros(rec.signal.shape[1], bool)
    found = []
    long_run = max(2, int(round(RAIL_LONG_RUN_S * rec.fs)))
    for i, lead in enumerate(rec.leads):
        x = rec.signal[i]
        lead_limits = limits[i] if i < len(limits) else None
        for value in (float(x.max()), float(x.min())):
            at = x == value
            lengths = _run_lengths(at)
            tol = 1e-9 * max(1.0, abs(value))
            on_limit = bool(lead_limits) and any(abs(value - c) <= tol for c in lead_limits)
            longest = int(lengths.max()) if lengths.size else 0
            if (
                int((lengths >= 2).sum()) >= RAIL_MIN_RUNS
                or longest >= long_run
                or (on_limit and longest >= 2)
            ):
                rail |= at
                where = ", the converter's limit" if on_limit else ""
                found.append(
                    f"{lead} at {value:+.3f} mV ({100 * at.mean():.1f}% of samples{where})"
                )
    if not found:
        return rec
    notes = (*rec.notes, f"clipped (saturated): {', '.join(found)}")
    return replace(rec, rail=rail, rails=tuple(found), notes=notes)


def _run_lengths(flags: np.ndarray) -> np.ndarray:
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def repair_defects(rec: Recording, header: Path, scales: list[str] | None = None) -> Recording:
    """Crop constant runs at the edges, mask inner ones, interpolate short NaN gaps; refuse the rest.

    ``scales`` (per lead, the header's units and gain) go into the message about a flat lead: a
    lead 1000x too small (a wrong gain or unit) looks flat.
    """
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
        std = float(np.std(signal[i][mask]))
        if std < FLAT_STD_MV:
            span = float(np.ptp(signal[i][mask]))
            scale = f" ({scales[i]})" if scales and i < len(scales) else ""
            raise RecordError(
                f"lead {lead} is flat (std {std:.2g} mV < {FLAT_STD_MV:g} mV, range {span:.2g} mV):"
                f" no ECG on it, or the header's units or gain are wrong{scale}; a body gives "
                f"beats of {AMPLITUDE_MV[0]:g}-{AMPLITUDE_MV[1]:g} mV peak to peak",
                header,
            )
    notes = list(rec.notes) + notes
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


def resample_poly(x: np.ndarray, up: int, down: int, axis: int, padtype: str) -> np.ndarray:
    """:func:`ecgbio.filters.resample_poly`, or scipy's inside
    :func:`ecgbio.filters.reference_implementations` (the equivalence tests' reference)."""
    if filters.using_reference():
        from scipy.signal import resample_poly as reference

        return reference(x, up, down, axis=axis, padtype=padtype)
    return filters.resample_poly(x, up, down, axis=axis, padtype=padtype)


def resample(rec: Recording, rate: float) -> Recording:
    """Polyphase resampling to ``rate`` (anti-aliased); the mask follows by nearest sample.

    ``scipy.signal.resample_poly`` as :mod:`ecgbio.filters` ports it (the same samples, without
    scipy.signal's import)."""
    ratio = Fraction(rate / rec.fs).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    signal = resample_poly(rec.signal, up, down, axis=1, padtype="line")
    mask = rec.mask
    if mask is not None:
        src = np.minimum(
            (np.arange(signal.shape[1]) * down / up).round().astype(int), mask.size - 1
        )
        mask = mask[src]
    rail = rec.rail
    if rail is not None:  # a new sample is on the rail if any source sample near it is
        n_out = signal.shape[1]
        count = np.concatenate(([0], np.cumsum(rail)))
        j = np.arange(n_out)
        lo = np.clip(np.floor((j - 1) * down / up).astype(int), 0, rail.size)
        hi = np.clip(np.ceil((j + 1) * down / up).astype(int) + 1, 0, rail.size)
        rail = (count[hi] - count[lo]) > 0
    return replace(rec, signal=signal, fs=float(rate), mask=mask, rail=rail)


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
