"""A gallery on disk: one SQLite file, the single source of truth for persons and templates.

Layout::

    GALLERY/               0700
      gallery.sqlite       0600  meta, persons, templates (one float32 vector per enrolled record)
      .lock                0600  file lock: one writer at a time
      index.faiss          0600  cache of an approximate index only (derived, safe to delete)

Why SQLite rather than ``.npy`` + JSON files: every write (an enrolment of several records, a
replacement, a removal) is one transaction, so a crash or SIGKILL at any instant leaves either the
old gallery or the new one, never a half of each, and readers never see a half-written person. The
rollback journal with ``synchronous=FULL`` keeps the gallery a single file at rest (no ``-wal`` or
``-shm`` side files) and works on any local file system; ``secure_delete`` overwrites the pages of
removed templates with zeros, so removing a person does not leave their biometric template in the
file's free pages. Vectors are plain little-endian float32 BLOBs and metadata is JSON text: nothing
is ever unpickled.

Template and person ids come from ``AUTOINCREMENT`` keys, which SQLite never reuses: a FAISS index
built at an older generation can never map a removed person's id to someone enrolled later.

Every write also bumps ``meta.generation``, which tags derived indexes (in memory or cached on
disk) so that a stale one is never searched.

Every meta value is checked whenever it is read (:func:`check_meta`: type, range, allowed values),
so a damaged or hand-edited gallery is refused with one line naming the file and the key, and
nothing is written while refusing. ``meta.fingerprint`` binds the gallery to its model: see
:data:`FINGERPRINT_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ecgbio.gallery.errors import GalleryBusyError, GalleryError
from ecgbio.gallery.index import KINDS as INDEX_KINDS
from ecgbio.gallery.thresholds import check_table
from ecgbio.io import fsync_dir

FORMAT = "ecgbio-gallery"
SCHEMA_VERSION = 1
DB_FILE = "gallery.sqlite"
LOCK_FILE = ".lock"
#: how long a writer waits for another writer before giving up with "gallery is busy"
LOCK_TIMEOUT_S = 120.0
#: how long a reader waits while a writer commits (SQLite's own lock, held for milliseconds)
BUSY_TIMEOUT_MS = 60_000
_FETCH = 4096

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE persons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
    record TEXT NOT NULL,
    created TEXT NOT NULL,
    beats INTEGER NOT NULL,
    consistency REAL NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX templates_by_person ON templates(person);
"""

#: meta keys every gallery has (values are JSON)
REQUIRED_META = (
    "format",
    "schema_version",
    "uuid",
    "created",
    "fingerprint",
    "dim",
    "beat_config",
    "index_kind",
    "template_mode",
    "generation",
)
TEMPLATE_MODES = ("each", "mean")
#: what ``meta.fingerprint`` covers. 1 (galleries made before issue #16, which have no
#: ``fingerprint_version``): the sha256 of ``model.safetensors`` alone. 2: the sha256 of the
#: canonical JSON of ``meta.model_binding`` (weights sha256, beat and model config, input leads,
#: the operating points of thresholds.json; see :func:`ecgbio.embed.model_binding`). A version 1
#: gallery is checked against the weights and its recorded beat config, with a warning, and bound
#: to the whole model (version 2) at its next write made with the model (``Gallery._write``).
FINGERPRINT_VERSION = 2
MAX_DIM = 1 << 16
#: how far a stored template's length may be from 1: every template is stored unit-length
#: (``Gallery._store``), so only float32 round-off (about 1e-7) is expected. A longer or
#: shorter one was edited, and would inflate (or deflate) every score computed with it.
UNIT_TOLERANCE = 1e-4
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class PersonRow:
    """One enrolled person as listed by ``gallery list``."""

    name: str
    templates: int
    beats: int
    created: str
    updated: str


@dataclass(frozen=True)
class TemplateRow:
    """One stored template (one enrolled record), without its vector."""

    id: int
    person: str
    record: str
    created: str
    beats: int
    consistency: float


@dataclass
class Vectors:
    """Every template vector of a gallery at one generation, read in one consistent snapshot.

    ``ids[i]`` is the template id of ``vectors[i]`` and ``owners[i]`` its person's id;
    ``names`` maps person ids to names.
    """

    generation: int
    ids: np.ndarray
    owners: np.ndarray
    vectors: np.ndarray
    names: dict[int, str]


@contextmanager
def sql_errors(path: Path) -> Iterator[None]:
    """SQLite errors -> one-line :class:`GalleryError` naming the file (never a traceback)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise GalleryBusyError(
                "gallery is busy (another process holds it); try again", path
            ) from exc
        if "no such table" in text or "no such column" in text:
            raise GalleryError(f"not an ecgbio gallery, or a damaged one ({text})", path) from exc
        if "unable to open" in text:
            raise GalleryError(f"cannot open the gallery file ({text})", path) from exc
        if "readonly" in text:
            raise GalleryError(f"gallery is read-only here ({text})", path) from exc
        raise GalleryError(f"gallery file is corrupt or unreadable ({text})", path) from exc
    except sqlite3.DatabaseError as exc:  # "file is not a database", "disk image is malformed"
        raise GalleryError(f"gallery file is corrupt ({exc})", path) from exc


def _connect(path: Path, create: bool = False) -> sqlite3.Connection:
    """Open ``path`` (never creating it unless ``create``), in autocommit mode with safe pragmas."""
    uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _check_length(path: Path) -> None:
    """Refuse a file shorter than the database size its header records (a truncated copy).

    SQLite itself only notices a truncation when a query touches a missing page, possibly long
    after opening. The header's page count is authoritative when its "version-valid-for" field
    matches the change counter (SQLite >= 3.7.0 writes both on every commit). Call it only after
    a first query, which rolls back a hot journal left by a crash.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise GalleryError("gallery file is corrupt (bad SQLite header)", path)
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change, pages = struct.unpack(">II", header[24:32])
    valid_for = struct.unpack(">I", header[92:96])[0]
    if valid_for == change and pages * page_size > size:
        raise GalleryError(
            f"gallery file is truncated ({size} bytes, its header says {pages * page_size})", path
        )


class GalleryStore:
    """The SQLite side of a gallery: meta, persons and template vectors; no FAISS, no model."""

    def __init__(self, root: Path, conn: sqlite3.Connection) -> None:
        self.root = root
        self.path = root / DB_FILE
        self.conn = conn
        self._lock = _file_lock(root)
        self._checked_for_write = False
        with sql_errors(self.path):
            self.meta = self.read_meta()  # a first query: SQLite rolls back a hot journal
            _check_length(self.path)
        self._drop_stale_journal()

    def _drop_stale_journal(self) -> None:
        """Remove a rollback journal that outlived a killed writer and that SQLite did not judge
        hot (nothing to roll back), so it would linger until the next write.

        Only while holding the writer lock (no ecgbio writer can be mid-transaction) and after
        the first query above (a hot journal has been rolled back and deleted by then); a gallery
        another process is writing keeps its journal.
        """
        journal = self.root / f"{DB_FILE}-journal"
        if not journal.is_file() or self.conn.in_transaction:
            return
        with self.locked(blocking=False) as held:
            if not held:
                return
            # SQLite's own write lock too: a writer that is not ecgbio (an sqlite3 shell) ignores
            # the file lock, and its live journal must stay
            self.conn.execute("PRAGMA busy_timeout = 0")
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return
            finally:
                self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            try:
                journal.unlink(missing_ok=True)
            finally:
                self.conn.execute("ROLLBACK")

    # ------------------------------------------------------------------ open / create / close

    @staticmethod
    def exists(root: Path) -> bool:
        return (Path(root) / DB_FILE).is_file()

    @classmethod
    def open(cls, root: str | Path) -> GalleryStore:
        """Open an existing gallery; a missing, foreign, corrupt or truncated one is refused."""
        root = Path(root)
        path = root / DB_FILE
        if not root.is_dir():
            raise GalleryError("no gallery here (enrol a person to create one)", root)
        if not path.is_file():
            raise GalleryError(f"no gallery here ({DB_FILE} is missing)", root)
        with sql_errors(path):
            conn = _connect(path)
        try:
            return cls(root, conn)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def create(cls, root: str | Path, meta: dict[str, Any]) -> GalleryStore:
        """Create a gallery atomically: ``gallery.sqlite`` appears complete or not at all.

        The empty gallery is built in a private temporary file and renamed into place under the
        writer lock, so a crash during creation leaves no half-initialised file behind, and two
        processes creating the same gallery at once end up sharing one.
        """
        root = Path(root)
        try:
            return cls._create(root, meta)
        except GalleryError:
            raise
        except OSError as exc:
            raise GalleryError(
                f"cannot create gallery here: {_os_reason(exc, root)}", root
            ) from exc

    @classmethod
    def _create(cls, root: Path, meta: dict[str, Any]) -> GalleryStore:
        if root.exists() and not root.is_dir():
            raise GalleryError("not a directory", root)
        if root.is_dir() and not cls.exists(root) and _foreign_content(root):
            raise GalleryError(
                "directory is not empty and holds no gallery; choose another --gallery", root
            )
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not cls.exists(root) and not os.access(root, os.W_OK | os.X_OK):
            raise GalleryError("cannot create gallery here: permission denied", root)
        path = root / DB_FILE
        with _locked(_file_lock(root), root):
            if not cls.exists(root):
                tmp = root / f".{DB_FILE}.{os.getpid()}.{secrets.token_hex(4)}.new"
                try:
                    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                    with sql_errors(tmp):
                        conn = _connect(tmp, create=True)
                        try:
                            conn.executescript(SCHEMA)
                            full = {
                                "format": FORMAT,
                                "schema_version": SCHEMA_VERSION,
                                "uuid": secrets.token_hex(16),
                                "created": now(),
                                "generation": 0,
                                **meta,
                            }
                            conn.execute("BEGIN IMMEDIATE")
                            conn.executemany(
                                "INSERT INTO meta (key, value) VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in full.items()],
                            )
                            conn.execute("COMMIT")
                        finally:
                            conn.close()
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.replace(tmp, path)
                    fsync_dir(root)
                finally:
                    tmp.unlink(missing_ok=True)
        return cls.open(root)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------------ transactions

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the writer lock; commits with ``generation + 1``.

        ``BEGIN IMMEDIATE`` takes SQLite's write lock up front, so checks made inside the block
        (does this person exist?) still hold when it commits. Any exception rolls everything back.
        """
        with _locked(self._lock, self.root), sql_errors(self.path):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_before_write()
                yield self.conn
                self.conn.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                )
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.meta = self.read_meta()

    def _check_before_write(self) -> None:
        """Refuse to write into a damaged file (SQLite's ``quick_check``); inside :meth:`write`.

        Why: SQLite only notices damage on the pages a statement touches, so an enrolment or a
        removal could otherwise commit into a file whose other pages are broken, mixing new data
        into a gallery that should be restored from a backup instead. The check reads the whole
        file, as long again as a write itself on a large gallery: too much for every write of a
        long-lived gallery (the HTTP service), so it runs once per opened store, before its first
        write.
        """
        if self._checked_for_write:
            return
        rows = self.conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise GalleryError(
                f"gallery file is corrupt (quick_check: {_problems(rows)}); nothing was written, "
                "restore it from a backup",
                self.path,
            )
        self._checked_for_write = True

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read snapshot: everything read inside sees one generation."""
        with sql_errors(self.path):
            if self.conn.in_transaction:  # nested in write(): already consistent
                yield self.conn
                return
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")

    @contextmanager
    def locked(self, blocking: bool = True) -> Iterator[bool]:
        """Hold the writer lock without a transaction (index cache upkeep); yields whether held."""
        if blocking:
            with _locked(self._lock, self.root):
                yield True
            return
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            self._lock.release()

    # -------------------------------------------------------------------------------- meta

    def read_meta(self) -> dict[str, Any]:
        """Every meta value, checked (type, range, allowed values): see :func:`check_meta`."""
        rows = self.conn.execute("SELECT key, value FROM meta").fetchall()
        meta = {}
        for key, value in rows:
            try:
                meta[key] = json.loads(value)
            except (json.JSONDecodeError, TypeError) as exc:
                raise GalleryError(
                    f"gallery file is corrupt (meta {key!r} is not JSON: {exc})", self.path
                ) from exc
        check_meta(meta, self.path)
        return meta

    def generation(self) -> int:
        """The current generation, read from disk (another process may have written)."""
        with sql_errors(self.path):
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return _generation(row, self.path)

    def set_meta(self, key: str, value: Any) -> None:
        """Set one meta value; only inside :meth:`write`."""
        self._in_write()
        if value is None:
            self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    # ------------------------------------------------------------------------------ reads

    def person_id(self, name: str) -> int | None:
        with sql_errors(self.path):
            row = self.conn.execute("SELECT id FROM persons WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def persons(self) -> list[PersonRow]:
        with sql_errors(self.path):
            rows = self.conn.execute(
                "SELECT p.name, COUNT(t.id), COALESCE(SUM(t.beats), 0), p.created, p.updated "
                "FROM persons p LEFT JOIN templates t ON t.person = p.id "
                "GROUP BY p.id ORDER BY p.name"
            ).fetchall()
        return [PersonRow(str(n), int(c), int(b), str(cr), str(up)) for n, c, b, cr, up in rows]

    def templates(self, name: str | None = None) -> list[TemplateRow]:
        query = (
            "SELECT t.id, p.name, t.record, t.created, t.beats, t.consistency "
            "FROM templates t JOIN persons p ON p.id = t.person"
        )
        args: tuple[Any, ...] = ()
        if name is not None:
            query += " WHERE p.name = ?"
            args = (name,)
        with sql_errors(self.path):
            rows = self.conn.execute(query + " ORDER BY t.id", args).fetchall()
        return [
            TemplateRow(int(i), str(p), str(r), str(c), int(b), float(q))
            for i, p, r, c, b, q in rows
        ]

    def counts(self) -> tuple[int, int, int]:
        """(persons, templates, most templates of one person)."""
        with sql_errors(self.path):
            persons = self.conn.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
            templates, most = self.conn.execute(
                "SELECT COALESCE(SUM(n), 0), COALESCE(MAX(n), 0) FROM "
                "(SELECT COUNT(*) AS n FROM templates GROUP BY person)"
            ).fetchone()
        return int(persons), int(templates), int(most)

    def vectors(self, name: str | None = None, with_vectors: bool = True) -> Vectors:
        """Every template vector (or one person's), with ids, in one snapshot; validated.

        ``with_vectors=False`` reads ids and owners only (``vectors`` is then empty), which is
        all a cached index needs.
        """
        dim = int(self.meta["dim"])
        where, args = ("WHERE p.name = ?", (name,)) if name is not None else ("", ())
        with self.read() as conn:
            generation = _generation(
                conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone(), self.path
            )
            # created and updated are read (and dropped) too: SQLite decodes a row only up to
            # the columns asked for, so damage in a person's row would otherwise go unnoticed
            # here while ``gallery list`` refuses the same file
            names = {
                int(i): str(n)
                for i, n, _, _ in conn.execute(
                    f"SELECT p.id, p.name, p.created, p.updated FROM persons p {where}", args
                )
            }
            n = conn.execute(
                f"SELECT COUNT(*) FROM templates t JOIN persons p ON p.id = t.person {where}", args
            ).fetchone()[0]
            ids = np.empty(n, np.int64)
            owners = np.empty(n, np.int64)
            out = np.empty((n if with_vectors else 0, dim), np.float32)
            column = "t.vector" if with_vectors else "NULL"
            cursor = conn.execute(
                f"SELECT t.id, t.person, {column} FROM templates t JOIN persons p "
                f"ON p.id = t.person {where} ORDER BY t.id",
                args,
            )
            i = 0
            while rows := cursor.fetchmany(_FETCH):
                for tid, pid, blob in rows:
                    if i >= n:
                        raise GalleryError("gallery changed during a read snapshot", self.path)
                    ids[i], owners[i] = tid, pid
                    i += 1
                    if not with_vectors:
                        continue
                    if not isinstance(blob, bytes) or len(blob) != 4 * dim:
                        raise GalleryError(
                            f"gallery file is corrupt (template {tid} is not {dim} float32 values)",
                            self.path,
                        )
                    out[i - 1] = np.frombuffer(blob, "<f4")
        if i != n:
            raise GalleryError("gallery file is corrupt (template vectors unreadable)", self.path)
        if with_vectors:
            _check_unit(out, ids, owners, names, self.path)
        return Vectors(generation, ids, owners, out, names)

    def integrity(self) -> str:
        """SQLite's ``integrity_check``: "ok" or the first problems found (reads the whole file).

        ``integrity_check`` rather than ``quick_check``: it also compares the indexes with the
        tables, which catches a damaged person name (the unique index on names disagrees) that
        ``quick_check`` passes. It reads the whole file, so it runs on request only.
        """
        with sql_errors(self.path):
            rows = self.conn.execute("PRAGMA integrity_check").fetchall()
        return "ok" if rows == [("ok",)] else _problems(rows)

    # ----------------------------------------------------------------------------- writes

    def _in_write(self) -> None:
        if not self.conn.in_transaction:
            raise RuntimeError("gallery writes must happen inside GalleryStore.write()")

    def add_person(self, name: str) -> int:
        self._in_write()
        stamp = now()
        cursor = self.conn.execute(
            "INSERT INTO persons (name, created, updated) VALUES (?, ?, ?)", (name, stamp, stamp)
        )
        return int(cursor.lastrowid or 0)

    def touch_person(self, person: int) -> None:
        self._in_write()
        self.conn.execute("UPDATE persons SET updated = ? WHERE id = ?", (now(), person))

    def add_template(
        self, person: int, record: str, vector: np.ndarray, beats: int, consistency: float
    ) -> int:
        self._in_write()
        blob = np.ascontiguousarray(vector, dtype="<f4").tobytes()
        if len(blob) != 4 * int(self.meta["dim"]):
            raise GalleryError(
                f"template has {len(blob) // 4} values, the gallery holds {self.meta['dim']}",
                self.root,
            )
        cursor = self.conn.execute(
            "INSERT INTO templates (person, record, created, beats, consistency, vector) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (person, record, now(), int(beats), float(consistency), blob),
        )
        return int(cursor.lastrowid or 0)

    def template_ids(self, person: int) -> list[int]:
        rows = self.conn.execute("SELECT id FROM templates WHERE person = ? ORDER BY id", (person,))
        return [int(r[0]) for r in rows]

    def delete_templates(self, person: int) -> list[int]:
        """Delete a person's templates; returns their ids."""
        self._in_write()
        ids = self.template_ids(person)
        self.conn.execute("DELETE FROM templates WHERE person = ?", (person,))
        return ids

    def delete_person(self, person: int) -> list[int]:
        """Delete a person and their templates; returns the template ids removed."""
        ids = self.delete_templates(person)
        self.conn.execute("DELETE FROM persons WHERE id = ?", (person,))
        return ids


def _file_lock(root: Path):  # -> filelock.FileLock (imported lazily: a small import, but optional)
    from filelock import FileLock

    return FileLock(str(root / LOCK_FILE), timeout=LOCK_TIMEOUT_S, mode=0o600)


@contextmanager
def _locked(lock: Any, root: Path) -> Iterator[None]:
    from filelock import Timeout

    try:
        lock.acquire()
    except Timeout:
        raise GalleryBusyError(
            f"gallery is busy: another process has been writing for {LOCK_TIMEOUT_S:.0f} s; "
            "try again",
            root,
        ) from None
    except OSError as exc:
        raise GalleryError(f"cannot lock the gallery ({exc.strerror or exc})", root) from exc
    try:
        yield
    finally:
        lock.release()


def _foreign_content(root: Path) -> bool:
    """Whether ``root`` holds files that are not a gallery's (never enrol into someone's folder)."""
    ours = {LOCK_FILE, DB_FILE, f"{DB_FILE}-journal", "index.faiss"}
    return any(p.name not in ours and not p.name.startswith(f".{DB_FILE}.") for p in root.iterdir())


def _os_reason(exc: OSError, root: Path) -> str:
    """An OS error as a few words: ``permission denied``, ``/x/y is a file, not a directory``."""
    if isinstance(exc, NotADirectoryError) or exc.errno == 20:
        for parent in (root, *root.parents):
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a directory"
    return (exc.strerror or str(exc)).lower()


def _problems(rows: list[Any]) -> str:
    """The first problems of an ``integrity_check`` or ``quick_check`` answer, on one line."""
    return "; ".join(" ".join(str(r[0]).split()) for r in rows[:3])


def _check_unit(
    vectors: np.ndarray, ids: np.ndarray, owners: np.ndarray, names: dict[int, str], path: Path
) -> None:
    """Refuse a template that is not unit-length (or not finite): it was edited.

    Every template is stored unit-length, and scores are dot products that are cosines only
    for unit vectors: a template multiplied by 20 would accept strangers, one with a component
    set to 50 would give "cosines" above 1. One vectorised float32 pass, small beside reading
    the vectors, so it runs whenever vectors are read; suspects are measured again in float64,
    so float32 summation error never refuses a good template.
    """

    def off(squares: np.ndarray) -> np.ndarray:  # NaN counts as off
        return ~(np.abs(np.sqrt(squares) - 1.0) <= UNIT_TOLERANCE)

    rows = np.flatnonzero(off(np.einsum("ij,ij->i", vectors, vectors)))
    if not len(rows):
        return
    squares = np.einsum("ij,ij->i", vectors[rows], vectors[rows], dtype=np.float64)
    edited = off(squares)
    rows, norms = rows[edited], np.sqrt(squares[edited])
    if not len(rows):
        return
    k, norm = int(rows[0]), float(norms[0])
    person = names.get(int(owners[k]), f"#{int(owners[k])}")
    what = (
        "holds non-finite values"
        if not math.isfinite(norm)
        else f"has length {norm:.6g}, not 1 (templates are stored unit-length)"
    )
    more = f"; {len(rows) - 1} more template(s) too" if len(rows) > 1 else ""
    raise GalleryError(
        f"gallery file is corrupt or was edited: template {int(ids[k])} of person {person!r} "
        f"{what}{more}",
        path,
    )


def _generation(row: Any, path: Path) -> int:
    if row is None:
        raise GalleryError("gallery file is corrupt (meta lacks generation)", path)
    try:
        value = json.loads(row[0])
    except (json.JSONDecodeError, TypeError):
        value = row[0]
    if not _count(value):
        raise GalleryError(
            f"gallery file is corrupt or was edited: meta 'generation' is {value!r:.60}, "
            "expected a count >= 0",
            path,
        )
    return int(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def binding_fingerprint(binding: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a model binding (fingerprint version 2)."""
    text = json.dumps(binding, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_beat_config(data: Any) -> dict[str, Any]:
    """A stored beat config as the model's :class:`~ecgbio.config.BeatConfig` writes it (defaults
    filled in), so that two configs compare equal exactly when they cut the same beats."""
    from ecgbio.config import BeatConfig, from_dict, to_dict

    return to_dict(from_dict(BeatConfig, data))


def check_meta(meta: dict[str, Any], path: Path) -> None:
    """Refuse a gallery whose meta data is missing, of the wrong type, out of range or not one of
    the allowed values; the message names the gallery file and the key. Nothing is written."""
    if meta.get("format") != FORMAT:
        raise GalleryError("not an ecgbio gallery (no gallery meta data)", path)
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise GalleryError(f"gallery file is corrupt (meta lacks {', '.join(missing)})", path)

    def bad(key: str, expected: str) -> GalleryError:
        return GalleryError(
            f"gallery file is corrupt or was edited: meta {key!r} is {meta[key]!r:.80}, "
            f"expected {expected}",
            path,
        )

    version = meta["schema_version"]
    if not _count(version) or version < 1:
        raise bad("schema_version", "a schema version >= 1")
    if version > SCHEMA_VERSION:
        raise GalleryError(
            f"gallery schema {version} is newer than this ecgbio understands "
            f"({SCHEMA_VERSION}); upgrade ecgbio",
            path,
        )
    if not isinstance(meta["uuid"], str) or not _HEX32.fullmatch(meta["uuid"]):
        raise bad("uuid", "32 hexadecimal digits")
    if not isinstance(meta["created"], str):
        raise bad("created", "a date")
    if not isinstance(meta["fingerprint"], str) or not _HEX64.fullmatch(meta["fingerprint"]):
        raise bad("fingerprint", "a sha256 (64 hexadecimal digits)")
    if not _count(meta["dim"]) or not 1 <= meta["dim"] <= MAX_DIM:
        raise bad("dim", f"a template size between 1 and {MAX_DIM}")
    if meta["index_kind"] not in INDEX_KINDS:
        raise bad("index_kind", f"one of {', '.join(INDEX_KINDS)}")
    if meta["template_mode"] not in TEMPLATE_MODES:
        raise bad("template_mode", f"one of {', '.join(TEMPLATE_MODES)}")
    if not _count(meta["generation"]):
        raise bad("generation", "a count >= 0")
    if meta.get("model_run") is not None and not isinstance(meta["model_run"], str):
        raise bad("model_run", "a run directory")
    if not isinstance(meta["beat_config"], dict):
        raise bad("beat_config", "a beat configuration (JSON object)")
    try:
        beat = canonical_beat_config(meta["beat_config"])
    except Exception as exc:  # ConfigError, or whatever a hand-edited value provokes
        raise GalleryError(
            f"gallery file is corrupt or was edited: meta 'beat_config' is invalid ({exc})", path
        ) from exc
    _check_binding(meta, beat, path, bad)
    _check_calibration(meta, path, bad)


def _check_binding(meta: dict[str, Any], beat: dict[str, Any], path: Path, bad: Any) -> None:
    fp_version = meta.get("fingerprint_version", 1)
    if not _count(fp_version) or fp_version < 1:
        raise bad("fingerprint_version", f"1 to {FINGERPRINT_VERSION}")
    if fp_version > FINGERPRINT_VERSION:
        raise GalleryError(
            f"gallery fingerprint version {fp_version} is newer than this ecgbio understands "
            f"({FINGERPRINT_VERSION}); upgrade ecgbio",
            path,
        )
    if fp_version == 1:
        if "model_binding" in meta:
            raise bad("fingerprint_version", "2 (the gallery has a model_binding)")
        return
    binding = meta.get("model_binding")
    if binding is None:
        raise GalleryError("gallery file is corrupt (meta lacks model_binding)", path)
    keys = {"weights_sha256", "in_leads", "beat", "model", "thresholds"}
    if not isinstance(binding, dict) or set(binding) != keys:
        raise bad("model_binding", f"an object with {', '.join(sorted(keys))}")
    try:
        fingerprint = binding_fingerprint(binding)
    except ValueError as exc:  # NaN or infinity
        raise bad("model_binding", "finite values") from exc
    if fingerprint != meta["fingerprint"]:
        raise GalleryError(
            "gallery file is corrupt or was edited: meta 'model_binding' does not match meta "
            "'fingerprint'",
            path,
        )
    try:
        same = canonical_beat_config(binding["beat"]) == beat  # ``beat`` is canonical already
    except Exception:  # a hand-edited value: reported as the mismatch below
        same = False
    if not same:
        raise GalleryError(
            "gallery file is corrupt or was edited: meta 'beat_config' differs from the beat "
            "config in meta 'model_binding'",
            path,
        )


def _check_calibration(meta: dict[str, Any], path: Path, bad: Any) -> None:
    calibration = meta.get("calibration")
    if calibration is None:
        return
    if not isinstance(calibration, dict):
        raise bad("calibration", "a calibration (JSON object)")
    try:
        check_table(calibration.get("points"), None)
    except GalleryError as exc:
        raise GalleryError(
            f"gallery file is corrupt or was edited: meta 'calibration' points: {exc}", path
        ) from exc
    problems = [
        k for k in ("genuine", "impostor", "generation") if not _count(calibration.get(k))
    ] + [k for k in ("persons", "persons_multi") if k in calibration and not _count(calibration[k])]
    if not (_number(calibration.get("eer")) and 0 <= calibration["eer"] <= 1):
        problems.append("eer")
    if calibration.get("template_mode") not in (None, meta["template_mode"]):
        problems.append("template_mode")
    skipped = calibration.get("skipped_fars", [])
    if not isinstance(skipped, list) or not all(_number(f) for f in skipped):
        problems.append("skipped_fars")
    if calibration.get("created") is not None and not isinstance(calibration["created"], str):
        problems.append("created")
    if problems:
        raise GalleryError(
            "gallery file is corrupt or was edited: meta 'calibration' has an invalid "
            f"{', '.join(problems)}",
            path,
        )
