"""ecgbio: recognise people by their electrocardiogram.

The public API, one import away; the flow runs one way: records -> beats -> store -> ...
"""

from ecgbio.beats import Beats, beats_from_file, detect_rpeaks, extract_beats
from ecgbio.config import BeatConfig
from ecgbio.errors import EcgbioError
from ecgbio.gallery import Gallery, GalleryError
from ecgbio.records import Recording, read_record

__version__ = "0.1.0"

__all__ = [
    "BeatConfig",
    "Beats",
    "EcgbioError",
    "Gallery",
    "GalleryError",
    "Recording",
    "__version__",
    "beats_from_file",
    "detect_rpeaks",
    "extract_beats",
    "read_record",
]
