"""Galleries of enrolled persons: enrol, identify (open set), verify, remove, calibrate.

``Gallery`` is the API (the ``ecgbio enroll / identify / verify / gallery`` commands are a thin
layer over it); storage is one SQLite file per gallery, search a FAISS index derived from it.
Importing this package loads neither torch nor FAISS.
"""

from ecgbio.gallery.errors import GalleryError
from ecgbio.gallery.gallery import ENROL_MODES, TEMPLATE_MODES, Gallery, embed_for_enrolment
from ecgbio.gallery.quality import QualityGate
from ecgbio.gallery.results import Candidate, EnrolResult, Identification, Verification
from ecgbio.gallery.thresholds import OperatingPoint

__all__ = [
    "ENROL_MODES",
    "TEMPLATE_MODES",
    "Candidate",
    "EnrolResult",
    "Gallery",
    "GalleryError",
    "Identification",
    "OperatingPoint",
    "QualityGate",
    "Verification",
    "embed_for_enrolment",
]
