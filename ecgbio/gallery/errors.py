"""The gallery's exceptions, inside ecgbio's single exception family.

The subclasses say what kind of refusal it was, so that a caller can react without reading the
message: the CLI prints every one the same way (``error: ...``, exit code 2), the HTTP service
(:mod:`ecgbio.service`) answers 404, 409, 422 or 503 by the class.
"""

from __future__ import annotations

from ecgbio.errors import EcgbioError


class GalleryError(EcgbioError):
    """A gallery is missing, corrupt, busy, bound to another model, or refuses an operation.

    Like every :class:`~ecgbio.errors.EcgbioError` the message is one line naming the gallery (or
    record) and the problem, so the CLI prints ``error: ...`` and exits with code 2.
    """


class NotEnrolledError(GalleryError):
    """The person named (a claim, a removal) is not enrolled."""


class AlreadyEnrolledError(GalleryError):
    """A new enrolment names a person who is enrolled (re-enrolment needs replace or append)."""


class EmptyGalleryError(GalleryError):
    """The gallery has nobody to compare a probe with."""


class GalleryBusyError(GalleryError):
    """Another writer held the gallery for too long; the same call later may succeed."""


class EnrolmentRefusedError(GalleryError):
    """A record failed the enrolment quality gate (too few usable beats, beats that disagree);
    nothing was stored."""
