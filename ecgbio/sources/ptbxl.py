"""PTB-XL: download PhysioNet's published files, read ``ptbxl_database.csv``, list the records.

PTB-XL (Wagner et al. 2020, PhysioNet doi:10.13026/kfzx-aw45) is the project's main database:
21,799 ten-second 12-lead ECGs of 18,869 patients, at 500 Hz (``records500/``) and 100 Hz
(``records100/``).

Why the download is written by hand rather than with ``wfdb.dl_database``: a full copy is ~43,000
files, so it must resume after an interruption without fetching everything again, verify every file
against PhysioNet's own ``SHA256SUMS.txt`` (a truncated ``.dat`` reads as a valid but wrong signal),
and say clearly when the network is the problem. Only the standard library's ``urllib`` is used.

Why the metadata reader normalises columns: the CSV stores ``patient_id`` as a float
(``15709.0``), and the identity label must be a stable string; the recording date is the natural
session label.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pandas as pd
from tqdm import tqdm

from ecgbio.errors import ConfigError, DownloadError, RecordError
from ecgbio.io import atomic_write_text
from ecgbio.sources import RecordSpec

PTBXL_URL = "https://physionet.org/files/ptb-xl/1.0.3/"
CHECKSUMS_FILE = "SHA256SUMS.txt"
METADATA_CSV = "ptbxl_database.csv"
#: Dataset-level files fetched with any rate (``LICENSE.txt`` only if the checksum list has it).
METADATA_FILES = (METADATA_CSV, "scp_statements.csv", "RECORDS", "LICENSE.txt")
RATES = (100, 500)
#: Columns :func:`read_ptbxl_metadata` needs; every other column of the CSV is kept as it is.
REQUIRED_COLUMNS = (
    "ecg_id",
    "patient_id",
    "recording_date",
    "strat_fold",
    "filename_lr",
    "filename_hr",
)

_ATTEMPTS = 2  # one retry, both for a dropped connection and for a checksum mismatch
_CHUNK = 1 << 16
_USER_AGENT = "ecgbio-ptbxl-download"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
#: Everything urllib/http.client raise for an unreachable, dropped or timed-out connection.
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadSummary:
    """What :func:`download_ptbxl` did.

    Attributes:
        total: files selected for the requested rate(s), metadata included.
        downloaded: files fetched (fully or by resuming a ``.part``) and verified in this run.
        skipped: files already present with the right sha256, left untouched.
        bytes: bytes received over the network in this run.
    """

    total: int
    downloaded: int
    skipped: int
    bytes: int


def download_ptbxl(
    root: str | os.PathLike[str],
    rate: int | None = 100,
    base_url: str = PTBXL_URL,
    workers: int = 4,
    progress: bool = True,
    timeout: float = 60.0,
) -> DownloadSummary:
    """Download (or complete) a verified copy of PTB-XL into ``root``.

    Safe to run again at any time: files whose sha256 already matches ``SHA256SUMS.txt`` are
    skipped, and interrupted files resume from their ``<file>.part`` with an HTTP ``Range`` request.
    A file only takes its final name after its checksum matched, so a file under its real name is
    always complete (a crash can at worst leave a ``.part``).

    Args:
        root: destination folder (created if needed); becomes a PTB-XL root.
        rate: 500 (``records500/``), 100 (``records100/``) or None for both.
        base_url: dataset root URL; tests point it at a local server.
        workers: parallel downloads (PhysioNet serves many small files; latency dominates).
        progress: show a tqdm bar over files.
        timeout: seconds to wait on a silent connection before giving up on it.

    Raises:
        DownloadError: the server cannot be reached, a file is missing on the server, or a file
            fails verification twice.
        ConfigError: invalid ``rate`` or ``workers``.
    """
    _check_download_args(rate, workers)
    root = Path(root)
    base_url = base_url.rstrip("/") + "/"
    checksums = _fetch_checksums(base_url, root, timeout)
    files = select_files(checksums, rate, base_url)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / CHECKSUMS_FILE, _format_checksums(checksums))
    return _download_all(files, checksums, root, base_url, workers, progress, timeout)


def _check_download_args(rate: int | None, workers: int) -> None:
    if rate is not None and rate not in RATES:
        raise ConfigError(f"rate must be 100, 500 or None (both), not {rate!r}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers!r}")


def parse_checksums(text: str, source: str = CHECKSUMS_FILE) -> dict[str, str]:
    """Parse ``sha256sum`` output (``<hex>  <path>`` or ``<hex> *<path>``) into ``{path: hex}``.

    Paths that are absolute or climb out of the root (``..``) are refused: the list decides where
    files are written, so it must not be able to write outside ``root``.
    """
    checksums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if not _SHA256.fullmatch(digest) or not name:
            raise DownloadError(
                f"line {number} is not '<sha256> <path>': {line.strip()[:80]!r}", source
            )
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise DownloadError(f"line {number} names a path outside the dataset: {name!r}", source)
        checksums[str(rel)] = digest.lower()
    return checksums


def _format_checksums(checksums: dict[str, str]) -> str:
    return "".join(f"{digest} {name}\n" for name, digest in checksums.items())


def select_files(
    checksums: dict[str, str], rate: int | None, base_url: str = PTBXL_URL
) -> list[str]:
    """The relative paths to fetch: dataset metadata plus the WFDB files of the chosen rate(s).

    Raises DownloadError when the list lacks ``ptbxl_database.csv`` or any record at that rate,
    which means ``base_url`` is not a PTB-XL root (or not the expected version).
    """
    source = base_url + CHECKSUMS_FILE
    if METADATA_CSV not in checksums:
        raise DownloadError(f"lists no {METADATA_CSV}: is {base_url} a PTB-XL root?", source)
    folders = [f"records{r}" for r in (RATES if rate is None else (rate,))]
    metadata = [name for name in METADATA_FILES if name in checksums]
    records = sorted(
        name
        for name in checksums
        if name.split("/", 1)[0] in folders and name.endswith((".hea", ".dat"))
    )
    if not records:
        raise DownloadError(f"lists no {' or '.join(folders)} files: is {base_url} PTB-XL?", source)
    return metadata + records


def _fetch_checksums(base_url: str, root: Path, timeout: float) -> dict[str, str]:
    """Fetch and parse ``SHA256SUMS.txt``; the first request, so it is where 'offline' shows."""
    url = base_url + CHECKSUMS_FILE
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"HTTP {exc.code} {exc.reason}: is {base_url} a PTB-XL 1.0.3 root?", url
        ) from exc
    except _NETWORK_ERRORS as exc:
        raise DownloadError(
            f"cannot reach {url}: {_reason(exc)}; check your connection or download PTB-XL "
            f"manually into {root}"
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DownloadError("is not a text checksum list (not UTF-8)", url) from exc
    return parse_checksums(text, url)


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for a network failure (URLError wraps the socket error)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    text = str(reason) or type(reason).__name__
    return " ".join(text.split())


def _download_all(
    files: list[str],
    checksums: dict[str, str],
    root: Path,
    base_url: str,
    workers: int,
    progress: bool,
    timeout: float,
) -> DownloadSummary:
    """Run :func:`_ensure_file` over a thread pool; stop scheduling at the first failure."""
    downloaded = skipped = received = 0
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(files), unit="file", desc="PTB-XL", disable=not progress) as bar,
    ):
        futures = [
            pool.submit(
                _ensure_file,
                base_url + urllib.parse.quote(name),
                root / name,
                checksums[name],
                timeout,
            )
            for name in files
        ]
        try:
            for future in as_completed(futures):
                fetched, nbytes = future.result()
                downloaded += fetched
                skipped += not fetched
                received += nbytes
                bar.update(1)
                bar.set_postfix_str(f"{received / 1e6:.1f} MB", refresh=False)
        except BaseException:
            # Let in-flight files finish (each leaves a resumable .part at worst), drop the rest.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return DownloadSummary(len(files), downloaded, skipped, received)


def _ensure_file(url: str, dest: Path, expected: str, timeout: float) -> tuple[bool, int]:
    """Make ``dest`` a verified copy of ``url``; return (fetched?, bytes received).

    A mismatching download is deleted and fetched once more from scratch, since a corrupt ``.part``
    (or a glitch on the way) would otherwise poison every later resume.
    """
    if dest.is_file() and _sha256(dest) == expected:
        return False, 0
    part = dest.with_name(dest.name + ".part")
    if part.is_file() and _sha256(part) == expected:  # finished just before an interruption
        os.replace(part, dest)
        return True, 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    received = 0
    digest = ""
    for _ in range(_ATTEMPTS):
        received += _fetch_with_retry(url, part, timeout)
        digest = _sha256(part)
        if digest == expected:
            os.replace(part, dest)  # no fsync: a torn file fails the sha check on the next run
            return True, received
        part.unlink(missing_ok=True)
    raise DownloadError(
        f"checksum mismatch after {_ATTEMPTS} downloads (expected sha256 {expected[:16]}..., got "
        f"{digest[:16]}...): the server's copy or the connection is corrupt",
        url,
    )


def _fetch_with_retry(url: str, part: Path, timeout: float) -> int:
    """:func:`_fetch`, resumed once after a dropped connection; HTTP errors are not retried."""
    for attempt in range(_ATTEMPTS):
        try:
            return _fetch(url, part, timeout)
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"HTTP {exc.code} {exc.reason}", url) from exc
        except _NETWORK_ERRORS as exc:
            if attempt + 1 == _ATTEMPTS:
                raise DownloadError(
                    f"cannot reach {url}: {_reason(exc)}; check your connection and run the "
                    f"download again to resume"
                ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _fetch(url: str, part: Path, timeout: float) -> int:
    """Write ``url`` into ``part``, continuing an existing ``part`` with a ``Range`` request.

    The server may ignore ``Range`` (answer 200 with the whole file) or answer a range that does
    not start where we asked; then the file is rewritten from the start. A 416 (the ``.part`` is
    already as long as the file, yet did not verify) also restarts from scratch.
    """
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        exc.close()
        part.unlink()
        return _fetch(url, part, timeout)
    with response:
        resumed = offset > 0 and response.status == 206 and _range_start(response) == offset
        with open(part, "ab" if resumed else "wb") as handle:
            return _copy(response, handle)


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """First byte of a 206 answer, from ``Content-Range: bytes START-END/SIZE``."""
    match = re.match(r"\s*bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _copy(response: http.client.HTTPResponse, handle: BinaryIO) -> int:
    """Copy the body; a body cut short of its Content-Length raises IncompleteRead.

    ``http.client`` returns a short body silently on chunked reads; raising here lets the caller
    resume with ``Range`` instead of discarding the bytes as a checksum mismatch.
    """
    total = 0
    while chunk := response.read(_CHUNK):
        handle.write(chunk)
        total += len(chunk)
    if response.length:  # bytes announced but never received
        handle.flush()
        raise http.client.IncompleteRead(b"", response.length)
    return total


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Metadata and records
# --------------------------------------------------------------------------------------------


def read_ptbxl_metadata(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``root/ptbxl_database.csv`` with typed, normalised identity columns.

    Returns one row per ECG, sorted by ``ecg_id``, with every column of the file plus ``session``:

    - ``ecg_id``: int; ``strat_fold``: int (PTB-XL's recommended 10-fold split);
    - ``patient_id``: str without the CSV's float suffix (``"15709.0"`` -> ``"15709"``), so that it
      is a stable identity label;
    - ``recording_date``: the original text (``"1984-11-09 09:17:34"``), ``""`` when missing;
    - ``session``: ``YYYY-MM-DD`` taken from ``recording_date`` (``""`` when it has no date);
    - ``filename_lr`` / ``filename_hr``: record paths relative to ``root`` (100 / 500 Hz), as str.

    Works on the full file (28 columns) and on reduced copies that keep the required columns.

    Raises:
        RecordError: the file is missing or unreadable, lacks a required column, or has an
            unusable ``ecg_id``/``patient_id``/``strat_fold`` value (the message names the row).
    """
    path = Path(root) / METADATA_CSV
    frame = _read_csv(path)
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise RecordError(
            f"missing column {', '.join(repr(c) for c in missing)} (PTB-XL's {METADATA_CSV} has "
            f"{', '.join(REQUIRED_COLUMNS)})",
            path,
        )
    frame["ecg_id"] = _integer_column(frame["ecg_id"], "ecg_id", path)
    frame["strat_fold"] = _integer_column(frame["strat_fold"], "strat_fold", path)
    frame["patient_id"] = _patient_ids(frame, path)
    frame["recording_date"] = frame["recording_date"].fillna("").astype(str).str.strip()
    frame["session"] = (
        frame["recording_date"].str.extract(r"^(\d{4}-\d{2}-\d{2})", expand=False).fillna("")
    )
    for column in ("filename_lr", "filename_hr"):
        frame[column] = frame[column].fillna("").astype(str).str.strip()
    duplicated = frame["ecg_id"][frame["ecg_id"].duplicated()]
    if len(duplicated):
        raise RecordError(f"ecg_id {int(duplicated.iloc[0])} appears more than once", path)
    return frame.sort_values("ecg_id", kind="stable").reset_index(drop=True)


def _read_csv(path: Path) -> pd.DataFrame:
    """Read the CSV as text where it matters, so ``patient_id`` keeps its digits exactly."""
    if not path.is_file():
        raise RecordError(
            f"{METADATA_CSV} not found: is {path.parent} a PTB-XL root? (download it first)", path
        )
    text_columns = ("patient_id", "recording_date", "filename_lr", "filename_hr")
    try:
        return pd.read_csv(path, dtype={column: str for column in text_columns})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise RecordError(f"cannot read {METADATA_CSV}: {exc}", path) from exc


def _integer_column(values: pd.Series, name: str, path: Path) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers != numbers.round())
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise RecordError(
            f"{name} is not an integer on data row {row + 1}: {values.iloc[row]!r}", path
        )
    return numbers.astype("int64")


def _patient_ids(frame: pd.DataFrame, path: Path) -> pd.Series:
    """``"15709.0"`` -> ``"15709"``; other text is kept (stripped), empty values are refused."""
    ids = frame["patient_id"].fillna("").astype(str).str.strip()
    ids = ids.str.replace(r"^(\d+)\.0*$", r"\1", regex=True)
    empty = ids == ""
    if empty.any():
        ecg_id = int(frame["ecg_id"][empty].iloc[0])
        raise RecordError(f"patient_id is empty for ecg_id {ecg_id}", path)
    return ids


@dataclass(frozen=True)
class PtbxlScan:
    """The records of a PTB-XL root at one rate, and those listed but absent.

    Attributes:
        rate: 100 or 500.
        specs: one :class:`RecordSpec` per record whose ``.hea`` exists, sorted by ``ecg_id``.
        missing: ``ecg_id`` of records listed in ``ptbxl_database.csv`` whose ``.hea`` is absent
            at this rate (a partial download or a subset), so the caller can report
            "N records listed but absent".
    """

    rate: int
    specs: list[RecordSpec]
    missing: list[int]


def ptbxl_records(root: str | os.PathLike[str], rate: int = 100) -> list[RecordSpec]:
    """The records present under ``root`` at ``rate`` (see :func:`scan_ptbxl`, which also says
    how many listed records are absent)."""
    return scan_ptbxl(root, rate).specs


def scan_ptbxl(root: str | os.PathLike[str], rate: int = 100) -> PtbxlScan:
    """List the PTB-XL records whose files exist at ``rate``, with identity and session labels.

    Each spec has ``person`` = patient_id, ``record`` = ecg_id, ``session`` = recording day, and
    ``order`` = rank among the patient's *present* records by (recording_date, ecg_id), so order 0
    always exists; ``extra`` keeps ``strat_fold``, ``recording_date`` and ``ecg_id`` as text.

    Raises:
        RecordError: bad metadata (see :func:`read_ptbxl_metadata`), or no record at all exists at
            this rate; the message names the folder looked for and suggests the other rate when
            that one is present (the offline subset only has ``records100``).
        ConfigError: ``rate`` is not 100 or 500.
    """
    if rate not in RATES:
        raise ConfigError(f"PTB-XL rate must be 100 or 500, not {rate!r}")
    root = Path(root)
    frame = read_ptbxl_metadata(root)
    column = "filename_hr" if rate == 500 else "filename_lr"
    present = frame[column].map(lambda name: bool(name) and (root / f"{name}.hea").is_file())
    if not present.any():
        raise RecordError(_no_records_message(root, rate))
    specs = _specs(frame[present.to_numpy()], root, column)
    missing = [int(ecg_id) for ecg_id in frame.loc[~present.to_numpy(), "ecg_id"]]
    return PtbxlScan(rate=rate, specs=specs, missing=missing)


def _no_records_message(root: Path, rate: int) -> str:
    other = 100 if rate == 500 else 500
    message = f"no records{rate} files under {root}"
    if _has_headers(root / f"records{other}"):
        return f"{message}; this copy has records{other}: use --rate {other}"
    return f"{message} (nor records{other}); download PTB-XL into it first"


def _has_headers(folder: Path) -> bool:
    return folder.is_dir() and next(iter(folder.rglob("*.hea")), None) is not None


def _specs(rows: pd.DataFrame, root: Path, column: str) -> list[RecordSpec]:
    """Build specs; ``order`` ranks each patient's records, undated ones last."""
    rows = rows.assign(_undated=rows["recording_date"] == "")
    rows = rows.sort_values(["_undated", "recording_date", "ecg_id"], kind="stable")
    rows = rows.assign(_order=rows.groupby("patient_id", sort=False).cumcount())
    rows = rows.sort_values("ecg_id", kind="stable")
    columns = ["ecg_id", "patient_id", "session", "recording_date", "strat_fold", "_order", column]
    return [_spec(row, root, column) for row in rows[columns].to_dict("records")]


def _spec(row: dict, root: Path, column: str) -> RecordSpec:
    ecg_id = str(int(row["ecg_id"]))
    return RecordSpec(
        path=root / row[column],
        person=row["patient_id"],
        record=ecg_id,
        session=row["session"],
        order=int(row["_order"]),
        extra={
            "strat_fold": str(int(row["strat_fold"])),
            "recording_date": row["recording_date"],
            "ecg_id": ecg_id,
        },
    )
