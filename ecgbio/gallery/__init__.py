"""Galleries of enrolled persons: enrol, identify (open set), verify, remove, calibrate.

``Gallery`` is the API (the ``ecgbio enroll / identify / verify / gallery`` commands are a thin
layer over it); storage is one SQLite file per gallery, search a FAISS index derived from it.
Importing this package loads neither torch nor FAISS.
"""

from ecgbio.gallery.errors import (
    AlreadyEnrolledError,
    EmptyGalleryError,
    EnrolmentRefusedError,
    GalleryBusyError,
    GalleryError,
    NotEnrolledError,
)
from ecgbio.gallery.gallery import ENROL_MODES, TEMPLATE_MODES, Gallery, embed_for_enrolment
from ecgbio.gallery.quality import QualityGate
from ecgbio.gallery.results import (
    Candidate,
    EnrolResult,
    Identification,
    PersonList,
    Removal,
    Verification,
)
from ecgbio.gallery.thresholds import OperatingPoint

__all__ = [
    "ENROL_MODES",
    "TEMPLATE_MODES",
    "AlreadyEnrolledError",
    "Candidate",
    "EmptyGalleryError",
    "EnrolResult",
    "EnrolmentRefusedError",
    "Gallery",
    "GalleryBusyError",
    "GalleryError",
    "Identification",
    "NotEnrolledError",
    "OperatingPoint",
    "PersonList",
    "QualityGate",
    "Removal",
    "Verification",
    "embed_for_enrolment",
]
