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
from ecgbio.errors import ConfigError, EcgbioError
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
    #: sha256 of ``model.safetensors`` (the weights only; ``model_sha256`` in results files)
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
    _load_weight_bytes(_read_weight_bytes(path), path, module, prefix)


def _read_weight_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise RunError("weights file not found", path) from exc
    except OSError as exc:
        raise RunError(f"cannot read the weights file ({exc.strerror or exc})", path) from exc


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


def read_run_config(root: Path) -> dict[str, Any]:
    path = root / CONFIG_FILE
    if not root.is_dir():
        raise RunError("run directory not found", root)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RunError("not a run directory (no config.json)", root) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"corrupt config ({exc})", path) from exc
    except OSError as exc:
        raise RunError(f"cannot read the config ({exc.strerror or exc})", path) from exc
    if not isinstance(config, dict):
        raise RunError(f"corrupt config (a JSON object expected, got {_kind(config)})", path)
    return config


@dataclass(frozen=True)
class RunConfig:
    """The validated parts of a run's ``config.json`` that build the model and cut its beats."""

    beat: BeatConfig
    model: ModelConfig
    train: TrainConfig
    in_leads: int
    n_classes: int


def parse_run_config(config: dict[str, Any], path: str | Path = CONFIG_FILE) -> RunConfig:
    """Check ``config.json``'s sections and counts; every problem is a :class:`RunError` naming
    ``path`` and the key (never a KeyError or TypeError from deep inside)."""
    if not isinstance(config, dict):
        raise RunError(f"corrupt config (a JSON object expected, got {_kind(config)})", path)
    return RunConfig(
        beat=_section(config, "beat", BeatConfig, path),
        model=_section(config, "model", ModelConfig, path),
        train=_section(config, "train", TrainConfig, path),
        in_leads=_count(config, "in_leads", path),
        n_classes=_count(config, "n_classes", path),
    )


def _section(config: dict[str, Any], key: str, cls: type, path: str | Path) -> Any:
    if key not in config:
        raise RunError(f'config lacks the "{key}" section', path)
    data = config[key]
    if not isinstance(data, dict):
        raise RunError(f'config section "{key}" must be a JSON object, got {_kind(data)}', path)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise RunError(f'invalid config section "{key}": {exc}', path) from exc


def _count(config: dict[str, Any], key: str, path: str | Path) -> int:
    if key not in config:
        raise RunError(f'config lacks "{key}"', path)
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RunError(f'config "{key}" must be a positive integer, got {value!r:.40}', path)
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def build_model(config: dict[str, Any], path: str | Path = CONFIG_FILE) -> IdentityModel:
    parsed = parse_run_config(config, path)
    return _build(parsed)


def _build(parsed: RunConfig) -> IdentityModel:
    return IdentityModel(parsed.in_leads, parsed.n_classes, parsed.model, parsed.train)


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
    mode.

    Everything is read once: ``fingerprint`` is the sha256 of the very bytes the weights were
    loaded from, and the configs are the parsed ones the model was built with.
    """
    root = model_dir(root)
    config = read_run_config(root)
    parsed = parse_run_config(config, root / CONFIG_FILE)
    classes_path = root / CLASSES_FILE
    try:
        classes = json.loads(classes_path.read_text())["classes"]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise RunError("missing or corrupt classes.json", root) from exc
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise RunError('corrupt classes.json ("classes" must be a list of names)', classes_path)
    if len(classes) != parsed.n_classes:
        raise RunError(
            f"classes.json names {len(classes)} classes, config.json says n_classes "
            f"{parsed.n_classes}",
            classes_path,
        )
    model = _build(parsed)
    path = root / weights
    data = _read_weight_bytes(path)
    _load_weight_bytes(data, path, model)
    model.eval()
    return Run(
        root=root,
        model=model,
        beat=parsed.beat,
        model_config=parsed.model,
        train_config=parsed.train,
        classes=classes,
        fingerprint=hashlib.sha256(data).hexdigest(),
        info={**config, "in_leads": parsed.in_leads, "n_classes": parsed.n_classes},
    )


def fingerprint(path: Path) -> str:
    """sha256 of a weights file (the weights alone: :attr:`Run.fingerprint`, ``model_sha256`` in
    results files). Galleries bind to more than this: see :func:`ecgbio.embed.model_binding`."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
