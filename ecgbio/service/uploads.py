"""Records from a request: JSON samples, or uploaded files staged where the readers can open them.

A request carries its records one of two ways:

* ``application/json``: samples in the body (:class:`~ecgbio.service.schemas.Samples`), turned
  into :class:`~ecgbio.records.Signal` objects in memory: no file is ever written;
* ``multipart/form-data``: files in the field ``record`` (a WFDB ``.hea`` with the signal files it
  names, or one ``.edf``, ``.bdf`` or ``.csv`` file per record), the options as form fields.

Why files are staged at all: the WFDB and EDF readers open files by name. Why the staging is this
careful (the client controls every byte and every name): a client's file name is never used as a
path. Each name is checked (a plain name: letters, digits, ``_ - + .``; no folder, no ``..``) and
only then used as a label; the files are written into a fresh private folder (``mkdtemp``: 0700,
files 0600, created exclusively, never following links) under names chosen here (``u<tag>r0.hea``,
``u<tag>r0s0.dat``, ``u<tag>r1.edf``, the tag random per request), a header's record line and
signal-file names are rewritten to those names, and the folder is deleted when the request ends,
whatever happened. A header must name the record it was uploaded as (``rec_1.hea`` says
``rec_1``), and every signal file it names must have been uploaded with it: anything else (a
garbage header, a missing ``.dat``, a file nobody names, a multi-segment record) is refused with
400 before a reader sees it.

Why a header must be printable ASCII (tabs and line breaks allowed, nothing else): three readers
see it, and they split lines differently on anything else. This check reads it as bytes, the
library as UTF-8 (where ``\xc2\x85`` is a line break), wfdb as ASCII dropping what is not; and
Python splits lines at ``\x0b``, ``\x0c``, ``\x1c``-``\x1e`` too. A header whose lines differ
between them could show this check one record and the reader another. For the same reason only
comment lines may follow the signal lines.

Messages from the readers name the staged files; :meth:`Staged.rename` puts the uploaded names
back in one pass, so the client reads ``rec_1.hea: signal file is truncated ...`` as the CLI would
print it. Why the random tag: a message can quote the client's own text (a label, a lead name, a
CSV column), which could otherwise hold a staged name (``r1.csv``) and be renamed into another
file's name.

Why JSON is parsed in a worker thread into plain lists (``pydantic_core.from_json``) then numpy,
rather than by pydantic models of nested float lists: the parse takes seconds for a large body and
must not run on the event loop (every other request would wait while it runs), and pydantic's
models of a list of lists of floats held about 150 times the body's size; plain lists then one
numpy array hold about a quarter of that. The options are still validated by the
same pydantic models (the samples stand aside meanwhile), and a body may carry at most
:data:`MAX_JSON_VALUES` numbers in all (413 beyond, counted before it is parsed).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio.to_thread
import numpy as np
import pydantic_core
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from ecgbio.errors import EcgbioError
from ecgbio.records import Signal
from ecgbio.service.problems import ServiceError, validation_line
from ecgbio.service.schemas import MAX_RECORDS, UNITS_TO_MV, Options

#: the form field that carries record files
RECORD_FIELD = "record"
#: a name an uploaded file may have: a plain file name, never a path
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
SINGLE_FILE = (".edf", ".bdf", ".csv")
MAX_HEADER_BYTES = 256 * 1024
_FIRST_TOKEN = re.compile(r"^(\s*)(\S+)")
#: a byte a WFDB header may not hold: anything but printable ASCII, tab, CR and LF
_NOT_HEADER_TEXT = re.compile(rb"[^\t\n\r\x20-\x7e]")
#: numbers a JSON request may carry in all, its records together (413 beyond). Why 10 million:
#: a 12-lead record at 1,000 Hz read to the default 10-minute limit is 7.2 M values, so no
#: record a JSON client sends (a watch, a patch, a short 12-lead) comes near it; and while it is
#: parsed a value costs about 50-100 bytes (a float, and its list for rows of one value), so
#: this bounds one request's parse at about 1 GB even where --max-upload-mb is raised (the
#: default 20 MB body holds fewer values anyway). Longer records are sent as files.
MAX_JSON_VALUES = 10_000_000


class UploadError(EcgbioError):
    """An upload that is not a usable set of record files (answered 400, nothing read)."""


@dataclass
class Part:
    """An uploaded file: its checked name and its content (Starlette's spooled file)."""

    name: str
    data: IO[bytes]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix.lower()


@dataclass
class Upload:
    """A request's options and records: ``signals`` (JSON) or ``parts`` (files), never both."""

    options: Any
    signals: list[Signal] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)


@dataclass
class Probe:
    """A record ready for the library: a staged path or a Signal, and what to call it."""

    record: str | Signal
    label: str


@dataclass
class Staged:
    """Staged records and how to translate messages about them back to the uploaded names."""

    probes: list[Probe]
    aliases: dict[str, str] = field(default_factory=dict)

    def rename(self, text: str) -> str:
        """``text`` with every staged path and file name replaced by the uploaded one, in one
        pass (a replacement is never replaced again), the longest staged name first."""
        if not self.aliases:
            return text
        staged = sorted(self.aliases, key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, staged)))
        return pattern.sub(lambda m: self.aliases[m[0]], text)


@asynccontextmanager
async def read_upload(
    request: Request, options: type[Options], json_model: type[BaseModel], many: bool
) -> AsyncIterator[Upload]:
    """The request's options and records, by its content type (415 for any other).

    ``many``: several records allowed (enrolment); otherwise exactly one. The spooled files of
    a multipart request are closed when the block ends. A JSON body is parsed in a worker
    thread, under the limiter of the work (``request.app.state.limiter``, ``--threads``).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        body = await request.body()
        limiter = getattr(request.app.state, "limiter", None)
        yield await anyio.to_thread.run_sync(_from_json, body, json_model, many, limiter=limiter)
    elif kind == "multipart/form-data":
        async with request.form(
            max_files=2 * MAX_RECORDS + 4, max_fields=32, max_part_size=64 * 1024
        ) as form:
            yield _from_form(form.multi_items(), options, many)
    else:
        raise ServiceError(
            415,
            f"content type {kind or 'none'!r} is not accepted: send application/json (samples) "
            "or multipart/form-data (record files)",
        )


def _from_json(body: bytes, model: type[BaseModel], many: bool) -> Upload:
    """A JSON request's options and records (blocking: run it in a worker thread).

    The samples are set aside while pydantic validates the rest (so a bad field costs no
    conversion), then each record's lists become one numpy array and are let go.
    """
    # counted before anything is parsed: in JSON every value but the first follows a comma, so
    # a body of fewer commas than the limit holds no more numbers than the limit
    commas = body.count(b",")
    if commas >= MAX_JSON_VALUES:
        raise ServiceError(
            413,
            f"the JSON body holds about {commas + 1:,} numbers; at most {MAX_JSON_VALUES:,} per "
            "request: send a longer record as a file (WFDB, EDF), or fewer records at once",
        )
    try:
        data = pydantic_core.from_json(body)  # NaN and Infinity read, as a client may send them
    except ValueError as exc:  # not JSON, not UTF-8, nested too deeply, a number out of range
        raise ServiceError(422, f"body: invalid JSON ({exc})") from None
    entries: Any = data.get("records" if many else "record") if isinstance(data, dict) else None
    entries = (entries if isinstance(entries, list) else []) if many else [entries]
    samples: list[Any] = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("samples"), list):
            samples.append(entry["samples"])
            entry["samples"] = []  # validated as a list of numbers; converted below
        else:
            samples.append(None)  # pydantic says what is wrong with it
    # validated as JSON (the request without its samples, a few hundred bytes written back):
    # JSON's rules and words ("a valid array"), exactly as a whole body would be
    skeleton = pydantic_core.to_json(data, inf_nan_mode="constants")
    del data
    try:
        parsed = model.model_validate_json(skeleton)
    except ValidationError as exc:
        raise ServiceError(422, validation_line(exc)) from None
    records = parsed.records if many else [parsed.record]  # type: ignore[attr-defined]
    signals: list[Signal] = []
    for i, record in enumerate(records):
        name = record.name or ("samples" if len(records) == 1 else f"samples-{i + 1}")
        x = _samples(samples[i], f"record <{name}>")
        samples[i] = None  # the lists go as soon as their array exists
        factor = UNITS_TO_MV[record.units.strip().lower()]
        if factor != 1.0:
            with np.errstate(over="ignore", invalid="ignore"):
                x *= factor
        signals.append(Signal(x, record.fs, tuple(record.leads), name=name))
    return Upload(parsed, signals=signals)


def _samples(values: list[Any], where: str) -> np.ndarray:
    """A record's samples (rows of one value per lead, or one list for one lead) as floats;
    ``null`` is a missing sample (NaN), as NaN is.

    ``np.fromiter`` over the values rather than ``np.array`` of the lists: half the time for
    rows of one value, with the rows' lengths checked first.
    """
    try:
        if values and isinstance(values[0], list):
            width = len(values[0])
            if set(map(len, values)) != {width}:
                raise ValueError("ragged")
            flat = itertools.chain.from_iterable(values)
            x = np.fromiter(flat, np.float64, len(values) * width)
            return x.reshape(len(values), width)
        return np.fromiter(values, np.float64, len(values))
    except OverflowError:  # an integer beyond float64 (JSON integers have no bound)
        raise ServiceError(
            422, f"{where}: a sample is too large to be a number (beyond +-1.8e308)"
        ) from None
    except (TypeError, ValueError):
        raise ServiceError(
            422,
            f"{where}: samples must be numbers, in rows of equal length (one value per lead) "
            "or in one list for one lead",
        ) from None


def _from_form(items: list[tuple[str, Any]], options: type[Options], many: bool) -> Upload:
    fields: dict[str, str] = {}
    parts: list[Part] = []
    for key, value in items:
        if isinstance(value, UploadFile):
            if key != RECORD_FIELD:
                raise UploadError(f"file field {key[:40]!r}: send record files as {RECORD_FIELD!r}")
            parts.append(Part(check_name(value.filename), value.file))
        elif key == RECORD_FIELD:
            raise UploadError(f"{RECORD_FIELD!r} must be a file upload, not a text field")
        elif key in fields:
            raise UploadError(f"form field {key[:40]!r} given twice")
        else:
            fields[key] = value
    try:
        parsed = options.model_validate(fields)
    except ValidationError as exc:
        raise ServiceError(422, validation_line(exc)) from None
    if not parts:
        raise UploadError(
            f"no record: upload its files in the form field {RECORD_FIELD!r} (a .hea with its "
            ".dat, or an .edf, .bdf or .csv file)"
        )
    names = [p.name for p in parts]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UploadError(f"{twice[0]}: uploaded twice")
    starts = [p for p in parts if p.suffix in (".hea", *SINGLE_FILE)]
    if not starts:
        raise UploadError(
            f"no record among the uploaded files ({', '.join(names)[:200]}): a WFDB record needs "
            "its .hea header; other records are .edf, .bdf or .csv files"
        )
    if not many and len(starts) > 1:
        raise UploadError(
            f"one record per request here, got {len(starts)}: "
            + ", ".join(p.name for p in starts)[:200]
        )
    if len(starts) > MAX_RECORDS:
        raise UploadError(f"at most {MAX_RECORDS} records per request, got {len(starts)}")
    return Upload(parsed, parts=parts)


def check_name(name: str | None) -> str:
    """An uploaded file's name if it is a plain name; refused (400) if it could be a path."""
    if not name:
        raise UploadError("an uploaded file has no file name: give each file its name")
    shown = repr(name[:80])
    if not _NAME.fullmatch(name) or ".." in name or not _SUFFIX.fullmatch(Path(name).suffix):
        raise UploadError(
            f"file name {shown} is refused: a plain name with a suffix (letters, digits, _ - + "
            "and single dots; no folders), such as rec_1.hea"
        )
    return name


@contextmanager
def stage(upload: Upload) -> Iterator[Staged]:
    """The upload's records, ready for the readers; the private folder goes when the block ends.

    Blocking file work: call it from a worker thread, not the event loop.
    """
    if upload.signals:
        yield Staged([Probe(s, s.label) for s in upload.signals])
        return
    folder = Path(tempfile.mkdtemp(prefix="ecgbio-upload-"))  # 0700, ours alone
    try:
        yield _stage_files(upload.parts, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stage_files(parts: list[Part], folder: Path) -> Staged:
    by_name = {p.name: p for p in parts}
    named: set[str] = set()
    probes: list[Probe] = []
    aliases: dict[str, str] = {str(folder): "upload"}
    tag = f"u{secrets.token_hex(6)}"  # no client text can hold a staged name (see the module)
    for part in parts:
        record = f"{tag}r{len(probes)}"
        if part.suffix in SINGLE_FILE:
            path = folder / f"{record}{part.suffix}"
            _write(path, part.data)
            aliases[str(path)] = aliases[path.name] = part.name
            probes.append(Probe(str(path), f"<{part.name}>"))
        elif part.suffix == ".hea":
            text, files = _header(part)
            staged_files = {
                name: f"{record}s{j}{Path(name).suffix}" for j, name in enumerate(files)
            }
            for name, staged in staged_files.items():
                if name not in by_name:
                    raise UploadError(
                        f"{part.name}: names the signal file {name}, which was not uploaded "
                        "(upload it in the same request)"
                    )
                if by_name[name].suffix in (".hea", *SINGLE_FILE):
                    raise UploadError(f"{part.name}: names {name} as a signal file")
                named.add(name)
                _write(folder / staged, by_name[name].data)
                aliases[str(folder / staged)] = aliases[staged] = name
            header = folder / f"{record}.hea"
            _write_text(header, _rewrite(text, record, staged_files))
            aliases[str(header)] = aliases[header.name] = part.name
            aliases[str(folder / record)] = aliases[record] = Path(part.name).stem
            probes.append(Probe(str(header), f"<{part.name}>"))
    stray = [
        p.name for p in parts if p.suffix not in (".hea", *SINGLE_FILE) and p.name not in named
    ]
    if stray:
        raise UploadError(f"{stray[0]}: no uploaded .hea header names this file")
    return Staged(probes, aliases)


def _header(part: Part) -> tuple[str, list[str]]:
    """A WFDB header's text and the signal files it names (in order, once each); refused
    unless it names the record it was uploaded as, in one segment."""
    part.data.seek(0)
    raw = part.data.read(MAX_HEADER_BYTES + 1)
    if len(raw) > MAX_HEADER_BYTES:
        raise UploadError(f"{part.name}: not a WFDB header (over {MAX_HEADER_BYTES // 1024} KB)")
    if b"\0" in raw:
        raise UploadError(f"{part.name}: not a WFDB header (binary data)")
    odd = _NOT_HEADER_TEXT.search(raw)
    if odd:
        raise UploadError(
            f"{part.name}: not a WFDB header (byte 0x{odd[0][0]:02x} at offset {odd.start()}: a "
            "header is printable ASCII text, tabs and line breaks)"
        )
    text = raw.decode("ascii")
    specs = [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]
    stem = Path(part.name).stem
    if not specs:
        raise UploadError(f"{part.name}: not a WFDB header (no record line)")
    tokens = specs[0].split()
    if "/" in tokens[0]:
        raise UploadError(
            f"{part.name}: a multi-segment record cannot be uploaded (its segments are other "
            "records); upload a single-segment record"
        )
    if tokens[0] != stem:
        raise UploadError(
            f"{part.name}: its record line names record {tokens[0][:60]!r}, not {stem!r} "
            "(a header must be uploaded under its record's name)"
        )
    try:
        n_signals = int(tokens[1]) if len(tokens) > 1 else 0
    except ValueError:
        raise UploadError(
            f"{part.name}: not a WFDB header (the record line's signal count "
            f"{tokens[1][:20]!r} is not a number)"
        ) from None
    if not 0 <= n_signals <= 256 or len(specs) - 1 != n_signals:
        more = "; only comment lines may follow them" if 0 <= n_signals < len(specs) - 1 else ""
        raise UploadError(
            f"{part.name}: not a WFDB header (it declares {n_signals} signals and has "
            f"{len(specs) - 1} signal lines{more})"
        )
    files: list[str] = []
    for spec in specs[1 : 1 + n_signals]:
        name = spec.split()[0]
        if not _NAME.fullmatch(name) or ".." in name:
            raise UploadError(
                f"{part.name}: names the signal file {name[:60]!r}, which is not a plain file "
                "name in the same folder"
            )
        if name not in files:
            files.append(name)
    return text, files


def _rewrite(text: str, record: str, files: dict[str, str]) -> str:
    """The header with the record line and the signal lines naming the staged files."""
    out: list[str] = []
    signals_left: int | None = None  # None: the record line is still to come
    for line in text.splitlines(keepends=True):
        spec = line.strip()
        if not spec or spec.startswith("#") or signals_left == 0:
            out.append(line)
        elif signals_left is None:
            parts = spec.split()
            signals_left = int(parts[1]) if len(parts) > 1 else 0
            out.append(_FIRST_TOKEN.sub(lambda m: m.group(1) + record, line, count=1))
        else:
            signals_left -= 1
            out.append(_FIRST_TOKEN.sub(lambda m: m.group(1) + files[m.group(2)], line, count=1))
    return "".join(out)


def _write(path: Path, source: IO[bytes]) -> None:
    """Copy ``source`` into a new private file at ``path`` (never an existing file or a link)."""
    source.seek(0)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        shutil.copyfileobj(source, handle, 1 << 20)


def _write_text(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(text.encode("ascii"))
