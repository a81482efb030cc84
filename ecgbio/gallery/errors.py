"""The gallery's one exception type, inside ecgbio's single exception family."""

from __future__ import annotations

from ecgbio.errors import EcgbioError


class GalleryError(EcgbioError):
    """A gallery is missing, corrupt, busy, bound to another model, or refuses an operation.

    Like every :class:`~ecgbio.errors.EcgbioError` the message is one line naming the gallery (or
    record) and the problem, so the CLI prints ``error: ...`` and exits with code 2.
    """
