"""Run directories: a trained model, its configs and its history, with no pickle anywhere.

Layout::

    RUN_DIR/
      config.json          BeatConfig (how beats were cut), ModelConfig, TrainConfig, split, store
      classes.json         training identities, in softmax-class order
      model.safetensors    the selected (best on validation) weights: backbone + both heads
      history.csv          one row per epoch: losses, accuracies, validation metrics, lr, time
      metrics.json         test figures of the selected model
      thresholds.json      verification operating points (EER, FAR 1 %, 0.1 %) on validation
                           persons, when the protocol validates on persons (unseen)
      model.onnx           optional: the embedding network for ONNX Runtime (``ecgbio export
                           --onnx``), tied to model.safetensors by its sha256 (docs/onnx.md)
      checkpoint/          last epoch's weights, optimiser state (torch.save, read back with
                           weights_only=True) and loop state, for --resume

Weights load with ``safetensors`` (plain tensors, never code), so a run dir received from someone
else cannot execute anything when opened.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ecgbio.config import DEFAULT_MODEL, BeatConfig, ModelConfig, TrainConfig, save_json, to_dict
from ecgbio.io import atomic_open
from ecgbio.models import IdentityModel

# The torch-free half of a run directory lives in ecgbio.rundir (ONNX inference reads runs without
# importing torch); its names stay importable from here.
from ecgbio.rundir import (
    CHECKPOINT_DIR,
    CLASSES_FILE,
    CONFIG_FILE,
    DEFAULT_MODEL_DIR,
    HISTORY_FILE,
    METRICS_FILE,
    ONNX_FILE,
    THRESHOLDS_FILE,
    WEIGHTS_FILE,
    RunConfig,
    RunError,
    RunInfo,
    fingerprint,
    model_dir,
    parse_run_config,
    read_run,
    read_run_config,
)
from ecgbio.rundir import read_weight_bytes as _read_weight_bytes

__all__ = [
    "CHECKPOINT_DIR",
    "CLASSES_FILE",
    "CONFIG_FILE",
    "DEFAULT_MODEL_DIR",
    "HISTORY_FILE",
    "METRICS_FILE",
    "ONNX_FILE",
    "THRESHOLDS_FILE",
    "WEIGHTS_FILE",
    "Run",
    "RunConfig",
    "RunError",
    "RunInfo",
    "build_model",
    "fingerprint",
    "load_run",
    "load_torch_state",
    "load_weights",
    "model_dir",
    "parse_run_config",
    "read_run",
    "read_run_config",
    "run_from",
    "save_torch_state",
    "save_weights",
    "write_run_config",
]


@dataclass
class Run(RunInfo):
    """A loaded run: the model (eval mode) and everything needed to feed it beats."""

    model: IdentityModel

    @property
    def backbone(self) -> torch.nn.Module:
        return self.model.backbone


def save_weights(path: Path, module: torch.nn.Module) -> None:
    """State dict -> safetensors, written atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_open(path, "wb") as handle:
        handle.write(save_safetensors(state))


def load_weights(path: Path, module: torch.nn.Module, prefix: str = "") -> None:
    """Load safetensors weights into ``module``; a mismatch is a clear error.

    ``prefix`` loads only the entries under it (``"backbone."``: a pretrained backbone into a new
    model whose heads have other classes, for fine-tuning).
    """
    _load_weight_bytes(_read_weight_bytes(path), path, module, prefix)


def _load_weight_bytes(data: bytes, path: Path, module: torch.nn.Module, prefix: str = "") -> None:
    try:
        state = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise RunError(f"corrupt weights file ({exc})", path) from exc
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "state dict mismatch"
        raise RunError(f"weights do not fit the model in config.json ({first})", path) from exc


def save_torch_state(path: Path, state: dict[str, Any]) -> None:
    """Optimiser/scheduler state (tensors and numbers only) via torch.save, atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def load_torch_state(path: Path) -> dict[str, Any]:
    """Read :func:`save_torch_state` output without unpickling code (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"unreadable checkpoint state ({type(exc).__name__})", path) from exc


def write_run_config(
    root: Path,
    beat: BeatConfig,
    model: ModelConfig,
    train: TrainConfig,
    in_leads: int,
    classes: list[str],
    extra: dict[str, Any],
) -> None:
    save_json(
        root / CONFIG_FILE,
        {
            "beat": to_dict(beat),
            "model": to_dict(model),
            "train": to_dict(train),
            "in_leads": in_leads,
            "n_classes": len(classes),
            **extra,
        },
    )
    save_json(root / CLASSES_FILE, {"classes": classes})


def build_model(config: dict[str, Any], path: str | Path = CONFIG_FILE) -> IdentityModel:
    parsed = parse_run_config(config, path)
    return _build(parsed)


def _build(parsed: RunConfig) -> IdentityModel:
    return IdentityModel(parsed.in_leads, parsed.n_classes, parsed.model, parsed.train)


def load_run(root: str | Path | None = DEFAULT_MODEL, weights: str = WEIGHTS_FILE) -> Run:
    """Open a run directory (or the shipped default model) and load its selected model, in eval
    mode.

    Everything is read once (:func:`ecgbio.rundir.read_run`): ``fingerprint`` is the sha256 of the
    very bytes the weights were loaded from, and the configs are the parsed ones the model was
    built with.
    """
    info, parsed, data = read_run(root, weights)
    return run_from(info, parsed, data, weights)


def run_from(info: RunInfo, parsed: RunConfig, data: bytes, weights: str = WEIGHTS_FILE) -> Run:
    """Build the torch model of a run read by :func:`ecgbio.rundir.read_run` from its weight
    bytes (not read again: the model is the one the fingerprint was taken of)."""
    model = _build(parsed)
    _load_weight_bytes(data, info.root / weights, model)
    model.eval()
    fields = {name: getattr(info, name) for name in RunInfo.__dataclass_fields__}
    return Run(**fields, model=model)
