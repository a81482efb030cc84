"""Embedding backends: beats (n, leads, samples) -> (n, d) float32 unit vectors.

Two ways to run a run's embedding network, behind one small interface
(:class:`EmbeddingBackend`: ``embed(waves)``, ``dim``, ``name``):

* ``onnx``: ONNX Runtime on the run's ``model.onnx`` (``ecgbio export --onnx``). It never imports
  torch, whose import alone costs a cold ``ecgbio identify`` one to two seconds;
* ``torch``: the run's backbone, built from ``model.safetensors`` (training, evaluation, and any
  run that has no ``model.onnx``).

``auto`` takes ONNX when the run directory holds ``model.onnx`` and onnxruntime imports, else
torch. Before ``model.onnx`` is used its bytes must match the sha256 the export wrote beside it
(``model.onnx.sha256``), and its metadata must name the sha256 of the run's ``model.safetensors``
and the model config it was exported with: a stale file (re-trained run), a damaged or an edited
one is refused with a one-line :class:`~ecgbio.rundir.RunError` saying how to
re-export, never silently replaced by torch, whose embeddings would then differ from the ONNX
file's without anyone knowing which one a gallery was enrolled with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgbio.errors import ConfigError, option
from ecgbio.rundir import ONNX_FILE, RunConfig, RunError, RunInfo

if TYPE_CHECKING:
    from torch import nn

    from ecgbio.runs import Run

BACKENDS = ("auto", "torch", "onnx")
#: beats per call into the network: bounds memory on a long record, costs nothing in speed
BATCH_SIZE = 1024
#: ``metadata_props`` keys of an exported ``model.onnx`` (written by :mod:`ecgbio.export`)
META_WEIGHTS = "ecgbio.weights_sha256"
META_MODEL = "ecgbio.model"
META_VERSION = "ecgbio.version"
META_EXPORTER = "ecgbio.exporter"
META_OPSET = "ecgbio.opset"
META_OUTPUT = "ecgbio.output"
INPUT_NAME = "beats"
OUTPUT_NAME = "embedding"


#: set once an :class:`OnnxBackend` was made in a process that had not imported torch
_TORCH_FREE = False


def torch_free() -> bool:
    """True when this process embeds with ONNX Runtime and has not imported torch: FAISS then
    need not load after torch (:func:`ecgbio.gallery.index.faiss_module`)."""
    return _TORCH_FREE and "torch" not in sys.modules


class EmbeddingBackend:
    """Beats -> unit embeddings; ``name`` says which backend (``"onnx"`` or ``"torch"``)."""

    name = ""
    dim = 0

    def embed(self, waves: np.ndarray) -> np.ndarray:
        """(n, leads, samples) beats -> (n, dim) L2-normalised float32 embeddings."""
        raise NotImplementedError


class TorchBackend(EmbeddingBackend):
    """A torch backbone (eval mode, on whatever device it lives)."""

    name = "torch"

    def __init__(self, backbone: nn.Module, dim: int, threads: int = 0) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.backbone = backbone
        self.dim = int(dim)

    def embed(self, waves: np.ndarray) -> np.ndarray:
        from ecgbio.embed import embed_waves

        return embed_waves(self.backbone, waves, BATCH_SIZE)


class OnnxBackend(EmbeddingBackend):
    """ONNX Runtime on an exported ``model.onnx`` (CPU provider), checked against its run.

    The session is made once; ``threads`` (0: ONNX Runtime's default, one per core) sets its
    intra-op threads. ``expected`` is what the file's metadata must say: the weights' sha256 and
    the model config (:func:`export_binding`); anything else is a :class:`RunError` naming the
    file and saying how to re-export it.
    """

    name = "onnx"

    def __init__(
        self,
        path: Path,
        expected: dict[str, Any],
        dim: int,
        threads: int = 0,
        run_dir: str = "",
        data: bytes | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.dim = int(dim)
        again = reexport_hint(run_dir or str(self.path.parent))
        if data is None:  # (given: a model not yet written, which ecgbio.export checks first)
            try:
                data = self.path.read_bytes()
            except OSError as exc:
                raise RunError(f"cannot read the ONNX model ({exc.strerror or exc})", path) from exc
            check_digest(self.path, data, again)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(threads), 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
        try:
            self.session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
            meta = dict(self.session.get_modelmeta().custom_metadata_map)
        except Exception as exc:  # ORT raises its own types (InvalidProtobuf, Fail, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"not a readable ONNX model ({first}); {again}", path) from exc
        check_metadata(meta, expected, self.path, again)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise RunError(
                f"expected one input and one output, got {len(inputs)} and {len(outputs)}; {again}",
                path,
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = list(inputs[0].shape)
        global _TORCH_FREE
        _TORCH_FREE = _TORCH_FREE or "torch" not in sys.modules

    def embed(self, waves: np.ndarray) -> np.ndarray:
        waves = np.asarray(waves)
        if len(waves) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for start in range(0, len(waves), BATCH_SIZE):
            x = np.ascontiguousarray(waves[start : start + BATCH_SIZE], dtype=np.float32)
            out.append(self.session.run([self.output_name], {self.input_name: x})[0])
        return l2_normalise(np.concatenate(out))


def digest_path(model: Path) -> Path:
    """Where the sha256 of an exported ONNX file is kept: ``model.onnx.sha256`` beside it."""
    return model.with_name(model.name + ".sha256")


def check_digest(model: Path, data: bytes, again: str) -> None:
    """Refuse ``model``'s bytes unless they are the ones the export wrote.

    Why beside the metadata check: the metadata says which weights the file was exported from,
    but an edit of the file's own weights (or a damaged copy) leaves it as it was. The export
    writes the file's sha256 beside it (:func:`digest_path`), in ``sha256sum`` format; hashing
    the bytes already read costs milliseconds, where parsing the graph to hash it would cost
    an import of ``onnx``. Like every file of a run directory, it detects damage and edits of
    the model file, not a writer who rewrites both files: a gallery's binding to the weights'
    sha256 is what it can trust.
    """
    import hashlib

    digest = digest_path(model)
    try:
        recorded = digest.read_text().split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise RunError(f"no readable {digest.name} beside it; {again}", model) from exc
    actual = hashlib.sha256(data).hexdigest()
    if recorded != actual:
        raise RunError(
            f"changed since it was exported (sha256 {actual[:12]}, {digest.name} says "
            f"{recorded[:12]}): damaged or edited; {again}",
            model,
        )


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows to unit length in float32, as ``torch.nn.functional.normalize`` (eps 1e-12)."""
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


def export_binding(info: RunInfo) -> dict[str, Any]:
    """What an exported ``model.onnx`` must match besides the weights: what builds the network
    (``in_leads`` and the model config: ``input_norm`` changes the graph without touching a
    weight), in canonical JSON. Not the beat config: the file takes beats of any length, as the
    torch backbone does, and a gallery is bound to the beat config on its own
    (:func:`ecgbio.embed.model_binding`)."""
    from ecgbio.config import to_dict

    return {"in_leads": info.in_leads, "model": to_dict(info.model_config)}


def expected_metadata(info: RunInfo) -> dict[str, Any]:
    """The metadata a ``model.onnx`` of run ``info`` must carry (see :func:`check_metadata`)."""
    return {META_WEIGHTS: info.fingerprint, META_MODEL: export_binding(info)}


def check_metadata(meta: dict[str, str], expected: dict[str, Any], path: Path, again: str) -> None:
    """Refuse a ``model.onnx`` whose metadata does not name the run's weights and model."""
    weights = meta.get(META_WEIGHTS)
    if not weights:
        raise RunError(
            f"ONNX model without ecgbio's weights fingerprint (not made by ecgbio export); {again}",
            path,
        )
    if weights != expected[META_WEIGHTS]:
        raise RunError(
            f"exported from other weights (sha256 {weights[:12]}, model.safetensors is "
            f"{expected[META_WEIGHTS][:12]}): stale or tampered; {again}",
            path,
        )
    try:
        stored = _canonical_binding(json.loads(meta.get(META_MODEL, "")))
    except (ValueError, TypeError, KeyError) as exc:
        raise RunError(f"unreadable {META_MODEL} metadata; {again}", path) from exc
    if stored != expected[META_MODEL]:
        differs = sorted(
            k for k in expected[META_MODEL] if stored.get(k) != expected[META_MODEL][k]
        )
        raise RunError(
            f"exported for another model config ({', '.join(differs) or 'keys'} differ from "
            f"config.json); {again}",
            path,
        )


def _canonical_binding(stored: Any) -> dict[str, Any]:
    """A stored export binding with its model config read as this ecgbio reads it (fields added
    since filled in by their defaults), so a new config field does not orphan every export."""
    from ecgbio.config import ModelConfig, from_dict, to_dict

    if not isinstance(stored, dict):
        raise TypeError("not a JSON object")
    try:
        model = to_dict(from_dict(ModelConfig, stored["model"]))
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc
    return {**stored, "model": model}


def reexport_hint(run_dir: str) -> str:
    return f"re-export it: ecgbio export --onnx --model {run_dir} --force"


def onnx_available() -> bool:
    """Whether onnxruntime imports (it is a dependency, but a slim install may lack it)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(root: Path, backend: str) -> str:
    """``"onnx"`` or ``"torch"``: what ``backend`` (auto, torch or onnx) means for run ``root``.

    ``onnx`` on a run without ``model.onnx`` is refused, saying how to export it.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    has_onnx = (root / ONNX_FILE).is_file()
    if backend == "auto":
        return "onnx" if has_onnx and onnx_available() else "torch"
    if backend == "onnx":
        if not has_onnx:
            asked = option("--backend onnx", "backend='onnx'")
            raise RunError(
                f"no {ONNX_FILE} for {asked}: export it with `ecgbio export --onnx --model {root}`",
                root,
            )
        if not onnx_available():
            raise ConfigError("--backend onnx needs onnxruntime: pip install onnxruntime")
    return backend


def open_backend(
    info: RunInfo, parsed: RunConfig, weights: bytes, backend: str = "auto", threads: int = 0
) -> tuple[EmbeddingBackend, RunInfo | Run]:
    """The backend ``backend`` asks for, on a run read by :func:`ecgbio.rundir.read_run`.

    Returns it with the run it embeds for: ``info`` itself for ONNX (torch is never imported),
    the loaded :class:`~ecgbio.runs.Run` (model included) for torch.
    """
    chosen = choose_backend(info.root, backend)
    dim = info.model_config.embedding_dim
    if chosen == "onnx":
        encoder = OnnxBackend(
            info.root / ONNX_FILE, expected_metadata(info), dim, threads, str(info.root)
        )
        return encoder, info
    from ecgbio.runs import run_from

    run = run_from(info, parsed, weights)
    return TorchBackend(run.backbone, dim, threads), run
