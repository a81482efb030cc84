"""Any folder of records as a source: person from the folder layout or from a CSV.

ECG-ID's layout (``Person_01/rec_1.hea`` ...) works as it is: the folder holding a record names its
person. Flat folders (MIT-BIH: ``100.hea``, ``101.hea`` ...) make every record its own person unless a
CSV maps records to persons (MIT-BIH 201 and 202, for instance, are one person).

A folder may mix formats: WFDB records (``.hea``) and EDF, BDF and CSV files
(:mod:`ecgbio.formats`) are all records. Such a file's record id keeps its suffix
(``Person_01/rec_1.edf``) so that it never collides with a WFDB record of the same name; a persons
CSV may name it with or without the suffix. A CSV is a record only when it looks like a signal
table (a header row, then numbers): metadata tables (a persons CSV, PTB-XL's
``ptbxl_database.csv``, CinC's ``REFERENCE.csv``) in the folder are not records.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import pandas as pd

from ecgbio.errors import EcgbioError, shorten
from ecgbio.io import as_text
from ecgbio.records import OTHER_FORMATS, record_file_format, session_date
from ecgbio.sources import RecordSpec


def find_records(root: Path) -> list[Path]:
    """Record paths (no extension) under ``root``; segments of multi-segment records are left out."""
    headers = sorted(root.rglob("*.hea"))
    segments: set[Path] = set()
    for header in headers:
        segments.update(_segment_headers(header))
    return [h.with_suffix("") for h in headers if h not in segments]


def find_all_records(root: Path) -> list[Path]:
    """:func:`find_records`' WFDB records, then the EDF, BDF and signal-table CSV files under
    ``root`` (with their suffix)."""
    from ecgbio.formats import is_signal_csv

    others = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in OTHER_FORMATS
        and p.is_file()
        and (record_file_format(p) != "csv" or is_signal_csv(p))
    ]
    return find_records(root) + sorted(others)


def folder_records(
    root: str | Path, persons_csv: str | Path | None = None, fs: float | None = None
) -> list[RecordSpec]:
    """One :class:`RecordSpec` per record under ``root``.

    Args:
        root: folder searched recursively for ``.hea``, ``.edf``, ``.bdf`` and ``.csv`` files.
        persons_csv: optional CSV with columns ``record`` (path relative to ``root``, no extension)
            and ``person``, and optionally ``session``; records it does not list are skipped.
        fs: sampling rate (Hz) of the CSV records without a time column (without it, such a
            record is refused when prepared, with the reason).

    The session is the recording date from the header (``base_date`` or a ``# ... date: ...``
    comment), else the CSV's ``session``, else empty; ``order`` ranks a person's records by session
    and then by natural name order (``rec_2`` before ``rec_10``).
    """
    root = Path(root)
    if not root.is_dir():
        raise EcgbioError("records folder not found", root)
    paths = find_all_records(root)
    if not paths:
        raise EcgbioError("no WFDB records (.hea files) nor EDF, BDF or CSV files found", root)
    mapping = _read_persons_csv(Path(persons_csv)) if persons_csv else None
    rows = []
    for path in paths:
        rel = as_text(path.relative_to(root).as_posix())  # a non-UTF-8 name: \xff escapes
        kind = record_file_format(path)
        if mapping is not None:
            key = rel if rel in mapping.index or kind == "wfdb" else rel[: -len(path.suffix)]
            if key not in mapping.index:
                continue
            person, session = str(mapping.at[key, "person"]), str(mapping.at[key, "session"])
        else:
            parent = as_text(path.parent.relative_to(root).as_posix())
            person, session = (rel if parent == "." else parent), ""
        session = _file_session(path, kind) or session
        rows.append({"path": path, "person": person, "record": rel, "session": session})
    if not rows:
        raise EcgbioError("the persons CSV matches none of the records found", persons_csv)
    table = pd.DataFrame(rows)
    table["natural"] = table["record"].map(_natural_key)
    table = table.sort_values(["person", "session", "natural"], kind="stable")
    table["order"] = table.groupby("person").cumcount()
    table = table.sort_values("natural", kind="stable")
    return [
        RecordSpec(
            path=r.path,
            person=r.person,
            record=r.record,
            session=r.session,
            order=int(r.order),
            fs=fs if record_file_format(r.path) == "csv" else None,
        )
        for r in table.itertuples()
    ]


def _file_session(path: Path, kind: str) -> str:
    """The recording date a record's file gives (``""`` when none or unreadable: an unreadable
    record is reported by `prepare`, with its reason)."""
    if kind in ("edf", "bdf"):
        from ecgbio.formats import edf_session

        return edf_session(path)
    if kind == "csv":
        from ecgbio.formats import csv_session

        return csv_session(path)
    import wfdb

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return session_date(wfdb.rdheader(str(path)))
    except Exception:
        return ""


def _read_persons_csv(path: Path) -> pd.DataFrame:
    """The persons CSV as a table indexed by record id (``person``, ``session``).

    Refused in one line naming the file when it is not UTF-8 text, lacks a column, leaves a
    record or a person empty, or gives one record two different persons or sessions: an empty
    person would pool records of unknown people into one identity, and a silently dropped row
    would put a record under whichever person came first. Rows repeated word for word are fine.
    """
    if not path.is_file():
        raise EcgbioError("persons CSV not found", path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EcgbioError(f"cannot read the persons CSV ({exc.strerror or exc})", path) from None
    try:
        text = data.decode("utf-8-sig")  # (a byte-order mark, as spreadsheets write, is fine)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EcgbioError(
            f"persons CSV is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            "save it as UTF-8",
            path,
        ) from None
    try:
        with warnings.catch_warnings():
            # a row with more values than the header names: its columns are shifted, never read
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(
                io.StringIO(text), dtype=str, keep_default_na=False, index_col=False
            )
    except pd.errors.ParserWarning:
        raise EcgbioError(
            "persons CSV has rows with more values than its header names (record,person"
            "[,session]): its columns would be read shifted",
            path,
        ) from None
    except pd.errors.EmptyDataError:
        raise EcgbioError(
            "persons CSV is empty: it needs a header (record,person[,session]) and rows", path
        ) from None
    except (ValueError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EcgbioError(f"unreadable persons CSV ({first})", path) from None
    missing = {"record", "person"} - set(table.columns)
    if missing:
        raise EcgbioError(f"persons CSV lacks column(s) {', '.join(sorted(missing))}", path)
    if "session" not in table.columns:
        table["session"] = ""
    table["record"] = table["record"].str.replace(r"\.hea$", "", regex=True)
    _check_persons_rows(table[["record", "person", "session"]], path)
    return table.drop_duplicates("record").set_index("record")


def _check_persons_rows(table: pd.DataFrame, path: Path) -> None:
    """Refuse an empty record or person cell and a record given two persons or sessions, naming
    the data row (1 = the first row under the header) and the record."""
    for column in ("record", "person"):
        empty = table.index[table[column].str.strip() == ""]
        if len(empty):
            row = int(empty[0])
            record = table.at[row, "record"]
            which = f" (record {shorten(record, 80)})" if record.strip() else ""
            raise EcgbioError(
                f"data row {row + 1} of the persons CSV{which} has an empty {column}; "
                f"every row needs a record and its person ({len(empty)} such row(s))",
                path,
            )
    distinct = table.drop_duplicates()
    clashes = distinct["record"][distinct["record"].duplicated()]
    if len(clashes):
        record = clashes.iloc[0]
        rows = table.index[table["record"] == record]
        given = table.loc[rows]
        what = "persons" if given["person"].nunique() > 1 else "sessions"
        values = given["person" if what == "persons" else "session"].drop_duplicates()
        raise EcgbioError(
            f"persons CSV gives record {shorten(record, 80)} {len(values)} different {what} "
            f"({', '.join(shorten(v, 40) for v in values.head(3))}) in data rows "
            f"{', '.join(str(int(r) + 1) for r in rows[:5])}; give each record one",
            path,
        )


def _segment_headers(header: Path) -> list[Path]:
    """Headers named as segments by a multi-segment header (``name/n_segments`` record line)."""
    try:
        lines = [ln.strip() for ln in header.read_text(errors="replace").splitlines()]
    except OSError:
        return []
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines or "/" not in lines[0].split()[0]:
        return []
    return [header.parent / f"{ln.split()[0]}.hea" for ln in lines[1:] if ln.split()[0] != "~"]


def _natural_key(text: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text))
