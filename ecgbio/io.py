"""Atomic file writes: a crash or Ctrl-C never leaves a half-written store, gallery or config.

Biometric outputs (beat stores, evaluations, reports, galleries) are private: files 0600 and the
directories made for them 0700, whatever the umask (``private=True``, :func:`private_dir`).
Repository and documentation outputs (experiment results, benchmark figures, model runs that may
ship) keep the umask's permissions.

A writer killed between ``mkstemp`` and the rename leaves its temporary file, ``.NAME.XXXXXXXX.tmp``,
beside ``NAME``; :func:`remove_stale_temps` removes such leftovers once the caller knows that no
live writer can own them (it holds the directory's writer lock).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@contextmanager
def atomic_open(path: Path, mode: str = "w", private: bool = False) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    ``private`` keeps the file readable by its owner only (0600, for biometric data), and a missing
    parent directory is made 0700 (see :func:`private_dir`); otherwise the file gets the
    permissions a plain ``open`` would (0666 less the umask).
    """
    path = Path(path)
    if private:
        private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600 if private else 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, private: bool = False) -> None:
    with atomic_open(path, "w", private=private) as handle:
        handle.write(text)


def private_dir(path: Path) -> Path:
    """Make directory ``path`` (and missing parents) if needed; the directory itself, when made
    here, is 0700 whatever the umask. An existing directory keeps its permissions (it is the
    caller's), and missing parents get the umask's (they only hold the directory's name)."""
    from ecgbio.errors import ConfigError

    path = Path(path)
    if not path.is_dir():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by someone else (theirs), or a file
            if not path.is_dir():
                raise ConfigError(
                    "is a file, not a directory: choose another output", path
                ) from None
        except NotADirectoryError:
            raise ConfigError("cannot create a directory here: a parent is a file", path) from None
        except PermissionError:
            raise ConfigError("cannot create a directory here: permission denied", path) from None
        else:
            os.chmod(path, 0o700)  # mkdir's mode passes through the umask: 0700 even with 0o077
    return path


#: ``tempfile.mkstemp``'s random part: 8 of ``[a-z0-9_]`` (matched a little more loosely).
_TEMP = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]{6,}\.tmp")


def temp_target(name: str) -> str | None:
    """The file an :func:`atomic_open` temporary file named ``name`` was to become, else None."""
    match = _TEMP.fullmatch(name)
    return match.group("name") if match else None


def remove_stale_temps(directory: Path, names: set[str] | None = None) -> list[Path]:
    """Remove :func:`atomic_open`'s leftover temporary files in ``directory`` (not recursive).

    Only call this while holding the writer lock that every writer of ``directory`` takes: then no
    live writer owns any of them, and each is the remains of a writer that was killed. ``names``
    limits the removal to temporaries of those target file names (None: of any name). Returns the
    paths removed.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        target = temp_target(entry.name)
        if target is None or (names is not None and target not in names):
            continue
        if entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        fsync_dir(Path(directory))
    return removed


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Plain numeric and string arrays as ``.npz``, atomically and private (0600: they hold person
    ids and scores); loads with ``allow_pickle=False``, so a received file cannot run code."""
    import numpy as np

    if any(np.asarray(v).dtype == object for v in arrays.values()):
        raise ValueError(f"{path}: arrays must not hold Python objects")
    with atomic_open(path, "wb", private=True) as handle:
        np.savez(handle, **arrays)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def as_text(name: str) -> str:
    """``name`` as valid UTF-8 text: the form a record id, person or path takes in a store.

    Why: a file or folder name that is not UTF-8 (``P\\xff``) reaches Python as a string holding
    lone surrogates (PEP 383), which a UTF-8 CSV, JSON and a strict stdout refuse with a
    ``UnicodeEncodeError``. Its undecodable bytes are written as ``\\xff`` escapes instead, so the
    record stays recognisable (and a persons CSV can name it that way); valid text is returned
    as it is. Stores and galleries both use it, so a record has one name in each.
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a surrogate not from a file name (made in Python): escaped as such
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
