"""Atomic file writes: a crash or Ctrl-C never leaves a half-written store, gallery or config."""

from __future__ import annotations

import os
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

    ``private`` keeps the file readable by its owner only (0600, for biometric templates); otherwise
    it gets the permissions a plain ``open`` would (0666 less the umask).
    """
    path = Path(path)
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


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


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
