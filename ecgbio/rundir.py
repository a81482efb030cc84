"""Reading a run directory without torch: its configs, classes and the sha256 of its weights.

Split from :mod:`ecgbio.runs` (which builds the torch model) so that inference through ONNX
Runtime (:mod:`ecgbio.backends`) opens a run, checks it and fingerprints it without importing
torch: a cold ``ecgbio identify`` pays for torch's import more than for anything it computes.
:mod:`ecgbio.runs` re-exports every name here, so ``from ecgbio.runs import RunError`` keeps
working.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecgbio.config import DEFAULT_MODEL, BeatConfig, ModelConfig, TrainConfig, from_dict
from ecgbio.errors import ConfigError, EcgbioError

CONFIG_FILE = "config.json"
CLASSES_FILE = "classes.json"
WEIGHTS_FILE = "model.safetensors"
#: the embedding network alone, exported by ``ecgbio export --onnx`` (see :mod:`ecgbio.export`)
ONNX_FILE = "model.onnx"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
THRESHOLDS_FILE = "thresholds.json"
CHECKPOINT_DIR = "checkpoint"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"


class RunError(EcgbioError):
    """A run directory is missing, incomplete or inconsistent."""


@dataclass
class RunInfo:
    """What a run directory says about its model, read and checked without building it.

    Everything a gallery binds to (:func:`ecgbio.embed.model_binding`) is here, so the binding is
    the same whichever backend (torch or ONNX Runtime) embeds the beats.
    """

    root: Path
    beat: BeatConfig
    model_config: ModelConfig
    train_config: TrainConfig
    classes: list[str]
    #: sha256 of ``model.safetensors`` (the weights only; ``model_sha256`` in results files)
    fingerprint: str
    info: dict[str, Any]

    @property
    def in_leads(self) -> int:
        return int(self.info["in_leads"])


@dataclass(frozen=True)
class RunConfig:
    """The validated parts of a run's ``config.json`` that build the model and cut its beats."""

    beat: BeatConfig
    model: ModelConfig
    train: TrainConfig
    in_leads: int
    n_classes: int


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


def read_weight_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise RunError("weights file not found", path) from exc
    except OSError as exc:
        raise RunError(f"cannot read the weights file ({exc.strerror or exc})", path) from exc


def read_classes(root: Path, n_classes: int) -> list[str]:
    """``classes.json``'s names, checked against ``config.json``'s ``n_classes``."""
    path = root / CLASSES_FILE
    try:
        classes = json.loads(path.read_text())["classes"]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise RunError("missing or corrupt classes.json", root) from exc
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise RunError('corrupt classes.json ("classes" must be a list of names)', path)
    if len(classes) != n_classes:
        raise RunError(
            f"classes.json names {len(classes)} classes, config.json says n_classes {n_classes}",
            path,
        )
    return classes


def read_run(
    root: str | Path | None = DEFAULT_MODEL, weights: str = WEIGHTS_FILE
) -> tuple[RunInfo, RunConfig, bytes]:
    """Open a run directory (or the shipped default model) without building its model.

    Returns the run's description, its parsed config (what builds the model) and the weight
    bytes, read once: :attr:`RunInfo.fingerprint` is the sha256 of these very bytes, so a torch
    model loaded from them (:func:`ecgbio.runs.load_run`) and an ONNX file checked against them
    (:mod:`ecgbio.backends`) are tied to the same fingerprint.
    """
    root = model_dir(root)
    config = read_run_config(root)
    parsed = parse_run_config(config, root / CONFIG_FILE)
    classes = read_classes(root, parsed.n_classes)
    data = read_weight_bytes(root / weights)
    info = RunInfo(
        root=root,
        beat=parsed.beat,
        model_config=parsed.model,
        train_config=parsed.train,
        classes=classes,
        fingerprint=hashlib.sha256(data).hexdigest(),
        info={**config, "in_leads": parsed.in_leads, "n_classes": parsed.n_classes},
    )
    return info, parsed, data


def fingerprint(path: Path) -> str:
    """sha256 of a weights file (the weights alone: :attr:`RunInfo.fingerprint`, ``model_sha256``
    in results files). Galleries bind to more than this: see :func:`ecgbio.embed.model_binding`."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
