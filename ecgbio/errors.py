"""One exception family for everything ecgbio refuses.

Every message names the file (or object) and the problem on one line, so that the CLI can print
``error: <message>`` and exit non-zero without a traceback, and scripts can catch ``EcgbioError``.
"""

from __future__ import annotations

from pathlib import Path


class EcgbioError(Exception):
    """Base class: a one-line, user-facing problem with a file or an argument."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        text = " ".join(str(message).split())  # always one line
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
