"""One exception family for everything ecgbio refuses.

Every message names the file (or object) and the problem on one line, so that the CLI can print
``error: <message>`` and exit non-zero without a traceback, and scripts can catch ``EcgbioError``.
"""

from __future__ import annotations

from pathlib import Path

#: The longest message an error carries: a user's 10,000-character id or path is shortened in the
#: middle rather than echoed whole into a line nobody can read.
MAX_MESSAGE = 400


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, cut in the middle to at most about ``limit`` characters, saying how
    long it was (so a long value is still recognisable by its start and end)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 20)
    head, tail = text[: keep * 2 // 3], text[-(keep // 3) :]
    return f"{head} [... {len(text) - len(head) - len(tail):,} characters cut ...] {tail}"


def option(flag: str, argument: str) -> str:
    """How to ask for something in both interfaces: ``--overwrite (overwrite=True in Python)``,
    so that an error raised by the library reads right from the CLI and from a script."""
    return f"{flag} ({argument} in Python)"


class EcgbioError(Exception):
    """Base class: a one-line, user-facing problem with a file or an argument."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else shorten(str(path), 200)
        text = shorten(message)  # always one line, and a readable one
        super().__init__(f"{self.path}: {text}" if self.path else text)


class RecordError(EcgbioError):
    """A record cannot be read or is unusable (missing/truncated file, bad header, NaN, flat...)."""


class LeadError(RecordError):
    """The requested lead is not in the record."""


class BeatError(RecordError):
    """A record was read but yields too few usable beats."""


class StoreError(EcgbioError):
    """A beat store is missing, incomplete, corrupt, or would be overwritten."""


class ConfigError(EcgbioError):
    """An invalid configuration value or option."""


class DownloadError(EcgbioError):
    """A dataset could not be downloaded or failed verification."""
