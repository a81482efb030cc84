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
      checkpoint/          last epoch's weights, optimiser state (torch.save, read back with
                           weights_only=True) and loop state, for --resume

Weights load with ``safetensors`` (plain tensors, never code), so a run dir received from someone
else cannot execute anything when opened.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ecgbio.config import (
    DEFAULT_MODEL,
    BeatConfig,
    ModelConfig,
    TrainConfig,
    from_dict,
    save_json,
    to_dict,
)
from ecgbio.errors import EcgbioError
from ecgbio.io import atomic_open
from ecgbio.models import IdentityModel

CONFIG_FILE = "config.json"
CLASSES_FILE = "classes.json"
WEIGHTS_FILE = "model.safetensors"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
THRESHOLDS_FILE = "thresholds.json"
CHECKPOINT_DIR = "checkpoint"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"


class RunError(EcgbioError):
    """A run directory is missing, incomplete or inconsistent."""


@dataclass
class Run:
    """A loaded run: the model (eval mode) and everything needed to feed it beats."""

    root: Path
    model: IdentityModel
    beat: BeatConfig
    model_config: ModelConfig
    train_config: TrainConfig
    classes: list[str]
    fingerprint: str
    info: dict[str, Any]

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
    try:
        state = load_safetensors(path.read_bytes())
    except FileNotFoundError as exc:
        raise RunError("weights file not found", path) from exc
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


def read_run_config(root: Path) -> dict[str, Any]:
    path = root / CONFIG_FILE
    if not root.is_dir():
        raise RunError("run directory not found", root)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RunError("not a run directory (no config.json)", root) from exc
    except json.JSONDecodeError as exc:
        raise RunError(f"corrupt config ({exc})", path) from exc


def build_model(config: dict[str, Any]) -> IdentityModel:
    model_cfg = from_dict(ModelConfig, config["model"])
    train_cfg = from_dict(TrainConfig, config["train"])
    return IdentityModel(int(config["in_leads"]), int(config["n_classes"]), model_cfg, train_cfg)


def model_dir(model: str | Path | None) -> Path:
    """The run directory a ``--model`` value names: ``None`` or ``"default"`` is the shipped model
    (lead I, 100 Hz; see the README's model card), anything else a run directory."""
    if model is None or str(model) == DEFAULT_MODEL:
        if not (DEFAULT_MODEL_DIR / WEIGHTS_FILE).is_file():
            raise RunError(
                "the default model is not installed in this copy of ecgbio; pass --model RUN_DIR",
                DEFAULT_MODEL_DIR,
            )
        return DEFAULT_MODEL_DIR
    return Path(model)


def load_run(root: str | Path | None = DEFAULT_MODEL, weights: str = WEIGHTS_FILE) -> Run:
    """Open a run directory (or the shipped default model) and load its selected model, in eval
    mode."""
    root = model_dir(root)
    config = read_run_config(root)
    try:
        classes = json.loads((root / CLASSES_FILE).read_text())["classes"]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise RunError("missing or corrupt classes.json", root) from exc
    model = build_model(config)
    path = root / weights
    load_weights(path, model)
    model.eval()
    return Run(
        root=root,
        model=model,
        beat=from_dict(BeatConfig, config["beat"]),
        model_config=from_dict(ModelConfig, config["model"]),
        train_config=from_dict(TrainConfig, config["train"]),
        classes=classes,
        fingerprint=fingerprint(path),
        info=config,
    )


def fingerprint(path: Path) -> str:
    """sha256 of a weights file: galleries remember which model made their templates."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
