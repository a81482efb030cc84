"""ecgbio: recognise people by their electrocardiogram.

The public API, one import away; the flow runs one way: records -> beats -> store -> model ->
embeddings -> gallery / metrics. Heavy names (``Embedder``: ONNX Runtime or torch, see
docs/onnx.md; ``load_run``, ``train``, ``evaluate_run``: torch; ``make_report``) load on first
use, so ``import ecgbio`` stays light.

    gallery = ecgbio.Gallery.create("people", ecgbio.Embedder("default"))
    gallery.identify(ecgbio.Signal(samples, 500, ("I",), name="watch"))  # an array in memory
"""

from importlib import import_module
from typing import Any

from ecgbio.beats import Beats, beats_from_file, detect_rpeaks, extract_beats
from ecgbio.config import BeatConfig
from ecgbio.errors import EcgbioError
from ecgbio.gallery import Gallery, GalleryError
from ecgbio.records import Recording, Signal, read_record

__version__ = "0.1.0"

#: name -> module, imported when the name is first used
_LAZY = {
    "Embedder": "ecgbio.embed",
    "load_run": "ecgbio.runs",
    "train": "ecgbio.training",
    "evaluate_run": "ecgbio.evaluate",
    "make_report": "ecgbio.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ecgbio' has no attribute {name!r}")


__all__ = [
    "BeatConfig",
    "Beats",
    "EcgbioError",
    "Embedder",
    "Gallery",
    "GalleryError",
    "Recording",
    "Signal",
    "__version__",
    "beats_from_file",
    "detect_rpeaks",
    "evaluate_run",
    "extract_beats",
    "load_run",
    "make_report",
    "read_record",
    "train",
]
