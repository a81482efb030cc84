"""``ecgbio export --onnx``: a run's embedding network as an ONNX file, for torch-free inference.

The file holds the backbone alone (beats ``(batch, leads, samples)`` float32 -> embeddings
``(batch, d)`` before L2 normalisation, which :class:`~ecgbio.backends.OnnxBackend` applies), with
dynamic batch and sample axes (the backbone pools over time: any window, as in torch). Its
``metadata_props`` tie it to the run: the sha256 of the ``model.safetensors`` it was exported from
(the run's fingerprint) and the model config, checked every time the file is opened, plus the
exporter, opset and ecgbio version for the record.

Nothing is written unless ONNX Runtime, running the file exactly as inference will, agrees with
torch on every beat of a check batch (cosine >= :data:`MIN_COSINE`): an export that changes the
embeddings would silently change every score of every gallery. The write is atomic and an
existing file is replaced only with ``force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgbio.backends import (
    INPUT_NAME,
    META_EXPORTER,
    META_MODEL,
    META_OPSET,
    META_OUTPUT,
    META_VERSION,
    META_WEIGHTS,
    OUTPUT_NAME,
    OnnxBackend,
    digest_path,
    expected_metadata,
)
from ecgbio.config import DEFAULT_MODEL
from ecgbio.errors import EcgbioError, option
from ecgbio.rundir import ONNX_FILE, model_dir

#: the least cosine between torch's and ONNX Runtime's embedding of any check beat
MIN_COSINE = 0.9999
#: beats of the agreement check (synthetic, seeded: the check needs no data set)
CHECK_BEATS = 256


class ExportError(EcgbioError):
    """An export was refused: the file exists, or ONNX Runtime disagrees with torch."""


@dataclass
class ExportResult:
    """What ``export_onnx`` wrote and how well ONNX Runtime agreed with torch."""

    path: str
    model: str
    bytes: int
    weights_sha256: str
    opset: int
    exporter: str
    ecgbio_version: str
    beats_checked: int
    min_cosine: float
    seconds: float

    def lines(self) -> list[str]:
        return [
            f"wrote {self.path} ({self.bytes / 1e6:.1f} MB, ONNX opset {self.opset}) for weights "
            f"sha256 {self.weights_sha256[:12]} of {self.model}",
            f"ONNX Runtime agrees with torch on {self.beats_checked} beats (lowest cosine "
            f"{self.min_cosine:.7f}); `--backend auto` (the default) now uses it",
        ]


def export_onnx(
    model: str | Path | None = DEFAULT_MODEL,
    out: str | Path | None = None,
    force: bool = False,
    waves: np.ndarray | None = None,
) -> ExportResult:
    """Export run ``model``'s embedding network to ``out`` (default: ``RUN_DIR/model.onnx``).

    ``waves``: the beats ``(n, leads, samples)`` of the agreement check (default: a seeded
    synthetic batch). Refused, with nothing written, when ``out`` exists (unless ``force``) or
    when ONNX Runtime and torch disagree on any beat.
    """
    started = time.perf_counter()
    root = model_dir(model)
    path = Path(out) if out is not None else root / ONNX_FILE
    _check_out(path, force)
    from ecgbio.runs import load_run

    run = load_run(root)
    in_leads, samples = int(run.info["in_leads"]), run.beat.window_samples
    data, opset, exporter = _to_onnx(run, in_leads, samples)
    if waves is None:
        waves = check_beats(CHECK_BEATS, in_leads, samples)
    min_cosine = _agreement(run, data, path, np.asarray(waves, np.float32))
    _check_out(path, force)  # (again: the export took seconds)
    _write(path, data)
    from ecgbio import __version__

    return ExportResult(
        path=str(path),
        model=str(root),
        bytes=len(data),
        weights_sha256=run.fingerprint,
        opset=opset,
        exporter=exporter,
        ecgbio_version=__version__,
        beats_checked=len(waves),
        min_cosine=min_cosine,
        seconds=round(time.perf_counter() - started, 2),
    )


def _check_out(path: Path, force: bool) -> None:
    """Refuse an ``out`` that cannot be written, before the export's seconds are spent: a
    directory, an existing file (unless ``force``), or a path under a file."""
    if path.is_dir():
        raise ExportError("is a directory: name the .onnx file to write", path)
    if path.exists() and not force:
        raise ExportError(f"already exists; {option('--force', 'force=True')} replaces it", path)
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ExportError(f"cannot write here: {parent} is a file, not a folder", path)


def _write(path: Path, data: bytes) -> None:
    """Write the model, then its digest (see OnnxBackend), atomically; a folder that cannot be
    made or written (read-only, a pseudo file system such as /proc) is one line naming ``path``.
    A model whose digest could not be written is removed: it would be refused when opened."""
    from ecgbio.io import atomic_open

    wrote = False
    try:
        with atomic_open(path, "wb") as handle:
            handle.write(data)
        wrote = True
        with atomic_open(digest_path(path), "w") as handle:
            handle.write(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    except OSError as exc:
        if wrote:
            path.unlink(missing_ok=True)
        raise ExportError(
            f"cannot write the ONNX file here ({exc.strerror or exc}); choose another --out",
            path,
        ) from None


def _to_onnx(run: Any, in_leads: int, samples: int) -> tuple[bytes, int, str]:
    """(serialised model with ecgbio's metadata, opset, exporter) of ``run``'s backbone.

    torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, the default since torch 2.9; the
    TorchScript one is deprecated) with ``dynamic_shapes`` for the batch and sample axes; its
    progress messages and warnings are kept off the command's output.
    """
    import json

    import onnx
    import onnxscript
    import torch

    from ecgbio import __version__
    from ecgbio.backends import export_binding

    backbone = run.backbone.eval()
    example = torch.from_numpy(check_beats(4, in_leads, samples))
    chatter = io.StringIO()
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(chatter),
            contextlib.redirect_stderr(chatter),
            _quiet_logger("torch.onnx"),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                backbone,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=(
                    {0: torch.export.Dim("batch"), 2: torch.export.Dim("samples", min=4)},
                ),
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; any of them is a refusal
        raise ExportError(
            f"torch's ONNX exporter failed ({type(exc).__name__}: {exc}); nothing written",
            run.root,
        ) from exc
    proto = program.model_proto
    conv1d_as_conv2d(proto)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    exporter = (
        f"torch.onnx.export(dynamo=True), torch {torch.__version__}, "
        f"onnxscript {onnxscript.__version__}"
    )
    onnx.helper.set_model_props(
        proto,
        {
            META_WEIGHTS: run.fingerprint,
            META_MODEL: json.dumps(export_binding(run), sort_keys=True),
            META_VERSION: __version__,
            META_EXPORTER: exporter,
            META_OPSET: str(opset),
            META_OUTPUT: "embedding before L2 normalisation (ecgbio normalises)",
        },
    )
    proto.doc_string = f"ecgbio embedding network of {run.root.name} (ecgbio {__version__})"
    return proto.SerializeToString(), int(opset), exporter


def conv1d_as_conv2d(proto: Any) -> int:
    """Rewrite every 1-D ``Conv`` of ``proto`` (in place) as a 2-D one over a height of 1:
    ``Squeeze(Conv2d(Unsqueeze(x, 2)), 2)``, its weights ``(out, in, k)`` -> ``(out, in, 1, k)``.

    Why: ONNX Runtime's CPU provider runs 2-D convolutions on its tuned NCHW kernels and 1-D ones
    on a generic path that is more than twice as slow on these small beats (the figures are in
    ``benchmarks/results/onnx_conv.json``); the arithmetic is the same, so the embeddings agree
    with torch as closely (the export's agreement check still runs on the rewritten file). The
    graph around each convolution is untouched. Returns the number of convolutions rewritten.
    """
    from onnx import helper, numpy_helper

    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:  # Unsqueeze / Squeeze take their axes as an input from opset 13 on
        return 0
    graph = proto.graph
    weights = {w.name: w for w in graph.initializer}
    axis = "ecgbio_height_axis"
    as_2d: dict[str, str] = {}  # 1-D weight -> its 2-D copy (one copy however many convs share it)
    nodes, rewritten = [], 0
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "Conv" else None
        if weight is None or len(weight.dims) != 3:
            nodes.append(node)
            continue
        if weight.name not in as_2d:
            as_2d[weight.name] = f"{weight.name}__2d"
            graph.initializer.append(
                numpy_helper.from_array(
                    numpy_helper.to_array(weight)[:, :, None, :], as_2d[weight.name]
                )
            )
        node.input[1] = as_2d[weight.name]
        for attribute in node.attribute:
            values = list(attribute.ints)
            if attribute.name == "pads":
                attribute.ints[:] = [0, values[0], 0, values[1]]
            elif attribute.name in ("strides", "dilations", "kernel_shape"):
                attribute.ints[:] = [1, values[0]]
        source, target = node.input[0], node.output[0]
        node.input[0], node.output[0] = f"{target}__2d_in", f"{target}__2d_out"
        nodes += [
            helper.make_node("Unsqueeze", [source, axis], [node.input[0]]),
            node,
            helper.make_node("Squeeze", [node.output[0], axis], [target]),
        ]
        rewritten += 1
    if rewritten:
        graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), axis))
        del graph.node[:]
        graph.node.extend(nodes)
        used = {name for node in graph.node for name in node.input}
        kept = [w for w in graph.initializer if w.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)  # a 1-D weight only the rewritten convs used is dropped
        del graph.value_info[:]  # shapes of the rewritten tensors changed; ORT infers them
    return rewritten


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Errors only from logger ``name`` meanwhile (torch's exporter logs a warning for every
    torchvision operator it cannot register, to a stream captured before any redirection)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _agreement(run: Any, data: bytes, path: Path, waves: np.ndarray) -> float:
    """The lowest cosine between torch's and ONNX Runtime's embeddings of ``waves``, refused below
    :data:`MIN_COSINE`: every beat in one batch, the first beat alone and a few beats twice as
    long (the batch and sample axes must really be dynamic). ONNX Runtime runs the bytes through
    :class:`OnnxBackend`, metadata check included, exactly as inference will."""
    from ecgbio.embed import embed_waves

    dim = run.model_config.embedding_dim
    onnx = OnnxBackend(
        path, expected_metadata(run), dim, threads=1, run_dir=str(run.root), data=data
    )
    longer = np.repeat(waves[:8], 2, axis=-1)
    cosines = []
    for batch in (waves, waves[:1], longer):
        reference = embed_waves(run.backbone, batch)
        try:
            got = onnx.embed(batch)
        except Exception as exc:  # ONNX Runtime's own error types: the export is refused
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(
                f"ONNX Runtime cannot run the exported file ({first}); nothing written", path
            ) from exc
        if got.shape != reference.shape:
            raise ExportError(
                f"ONNX Runtime gives embeddings of shape {got.shape}, torch {reference.shape}; "
                "nothing written",
                path,
            )
        cosines.append((got * reference).sum(1))
    every = np.concatenate(cosines)
    every = np.where(np.isfinite(every), every, -1.0)
    worst = int(np.argmin(every))
    lowest = float(every[worst])
    if lowest < MIN_COSINE:
        raise ExportError(
            f"ONNX Runtime disagrees with torch: cosine {lowest:.6f} < {MIN_COSINE} on a check "
            f"beat ({len(every)} compared); nothing written",
            path,
        )
    return lowest


def check_beats(n: int, leads: int, samples: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded heartbeat-like windows ``(n, leads, samples)`` float32 in millivolts: a QRS
    spike, P and T waves of varied size and place, baseline and noise, so that the check covers
    the range of real beats rather than zeros."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, samples, dtype=np.float64)[None, None, :]

    def wave(centre: float, width: float, amplitude: np.ndarray) -> np.ndarray:
        jitter = rng.normal(0.0, width, (n, leads, 1))
        return amplitude * np.exp(-(((t - centre - jitter) / width) ** 2))

    size = (n, leads, 1)
    beats = (
        wave(0.5, 0.03, rng.uniform(0.3, 2.5, size) * rng.choice([-1.0, 1.0], size, p=[0.2, 0.8]))
        + wave(0.2, 0.06, rng.uniform(0.0, 0.3, size))
        + wave(0.8, 0.09, rng.uniform(-0.2, 0.6, size))
        + rng.normal(0.0, 0.15, size)
        + rng.normal(0.0, 0.03, (n, leads, samples))
    )
    return beats.astype(np.float32)
