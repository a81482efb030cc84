"""Typed configuration, saved as JSON beside every store and model so a run can be reproduced.

Dataclasses rather than dicts: a typo in a field name fails loudly, defaults are documented in one
place, and ``to_dict``/``from_dict`` round-trip exactly through JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from ecgbio.errors import ConfigError

T = TypeVar("T")

ALL_LEADS = "all"
#: ``--model default`` (or no ``--model``) names the model shipped inside the package.
DEFAULT_MODEL = "default"
NORMALIZATIONS = ("none", "record", "beat")


#: The longest stretch a beat window may reach on either side of its R-peak, in seconds: one whole
#: beat at the slowest heart rate a resting adult shows; a longer side would cut the neighbouring
#: beats instead of this one, and an unbounded one overflows the sample arithmetic.
MAX_WINDOW_SIDE_S = 2.0


@dataclass(frozen=True)
class BeatConfig:
    """Everything that turns a WFDB record into beat windows.

    A model remembers the ``BeatConfig`` of the store it was trained on, and enrolment/identification
    re-use it, so a probe is always cut exactly like the training beats.

    Attributes:
        leads: lead names to keep, in this order (``("I",)``), or ``("all",)`` for every lead.
        rate: the pipeline's sampling rate in Hz; records are resampled to it. 100 Hz by default:
            the shipped model's rate and PTB-XL's ``records100``; it keeps the 0.5-40 Hz band that
            holds most of a beat's shape.
        before_s / after_s: window extent around the R-peak in seconds. The window has
            ``round(before_s*rate) + round(after_s*rate)`` samples and the R-peak sits at index
            ``round(before_s*rate)``; neither side reaches past :data:`MAX_WINDOW_SIDE_S`.
            0.2 s / 0.2 s by default (the shipped model's input, and the seed notebook's 200
            samples centred at 500 Hz): the P wave, QRS and ST segment. A
            window to the end of the T wave (0.25 / 0.45 s) identified people across sessions
            worse on validation persons (the T wave moves with the heart rate; README, default
            model card).
        clean_method: ``neurokit2.ecg_clean`` method for the stored waveforms.
        peak_method: R-peak detector, one of ``ecgbio.beats.DETECTORS`` (ecgbio's Pan-Tompkins or
            a ``neurokit2.ecg_peaks`` method). The default has the best F1 at 50 ms on all 48
            MIT-BIH records after peak refinement (98.6 %; 98.8 % at 150 ms, where Pan-Tompkins
            is better; README, ``experiments/rpeaks_mitdb.py``).
        detect_lead: lead name used for R-peak detection; empty = the first kept lead.
        refine_peaks: move each detected peak to the local extremum (with the record's QRS polarity)
            within ``refine_window_s``, so that beats are aligned on the R wave itself.
        min_quality: beats whose correlation with the record's median beat (over the whole
            heartbeat, ``ecgbio.beats.QUALITY_CONTEXT_S``) is below this are rejected (0 disables).
        max_amplitude_z: beats whose peak-to-peak amplitude is this many robust standard deviations
            away from the record's median are rejected (0 disables).
        normalize: ``none`` keeps millivolts; ``record`` divides all beats of a record by the
            record's median-beat peak-to-peak amplitude (keeps within-record shape and relative
            amplitude); ``beat`` z-scores every beat on its own.
        min_duration_s: records shorter than this are refused.
        min_beats: records with fewer usable beats than this are refused.
        max_beats: keep at most this many beats per record (the first ones); 0 = all.
    """

    leads: tuple[str, ...] = ("I",)
    rate: int = 100
    before_s: float = 0.2
    after_s: float = 0.2
    clean_method: str = "neurokit"
    peak_method: str = "rodrigues2021"
    detect_lead: str = ""
    refine_peaks: bool = True
    refine_window_s: float = 0.04
    min_quality: float = 0.5
    max_amplitude_z: float = 6.0
    normalize: str = "none"
    min_duration_s: float = 2.0
    min_beats: int = 3
    max_beats: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.leads, str):  # tolerate "I,II" from callers
            object.__setattr__(self, "leads", parse_leads(self.leads))
        else:
            object.__setattr__(self, "leads", tuple(self.leads))
        twice = sorted({s for s in self.leads if self.leads.count(s) > 1})
        if twice:  # a lead twice would be cut and fed to the model twice, as two leads
            raise ConfigError(f"lead {twice[0]} is named twice in leads {','.join(self.leads)}")
        if not self.leads:
            raise ConfigError("leads must name at least one lead (or 'all')")
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(field.default, float) and not math.isfinite(value):
                raise ConfigError(f"{field.name} must be a finite number, got {value}")
        if not 50 <= self.rate <= 10_000:
            raise ConfigError(f"rate must be between 50 and 10000 Hz, got {self.rate}")
        for name in ("before_s", "after_s", "refine_window_s"):
            if not 0 <= getattr(self, name) <= MAX_WINDOW_SIDE_S:
                raise ConfigError(
                    f"{name} must be between 0 and {MAX_WINDOW_SIDE_S:g} seconds, "
                    f"got {getattr(self, name)}"
                )
        if not -1 <= self.min_quality <= 1:
            raise ConfigError(
                f"min_quality must be a correlation in [-1, 1] (0: off), got {self.min_quality}"
            )
        if self.window_samples < 4:
            raise ConfigError(
                f"window before_s={self.before_s}, after_s={self.after_s} at {self.rate} Hz "
                f"gives {self.window_samples} samples; need at least 4"
            )
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.min_beats < 1:
            raise ConfigError(f"min_beats must be >= 1, got {self.min_beats}")
        if self.max_beats < 0:
            raise ConfigError(f"max_beats must be >= 0, got {self.max_beats}")

    @property
    def samples_before(self) -> int:
        return round(self.before_s * self.rate)

    @property
    def samples_after(self) -> int:
        return round(self.after_s * self.rate)

    @property
    def window_samples(self) -> int:
        return self.samples_before + self.samples_after

    @property
    def all_leads(self) -> bool:
        return self.leads == (ALL_LEADS,)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def parse_leads(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"I,II"`` -> ``("I", "II")``; ``"all"`` -> ``("all",)``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    leads = tuple(s.strip() for s in items if s.strip())
    if any(s.lower() == ALL_LEADS for s in leads):
        if len(leads) > 1:
            raise ConfigError(f"'all' cannot be combined with other leads: {','.join(leads)}")
        return (ALL_LEADS,)
    return leads


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Dict -> dataclass, refusing unknown keys (a config from a newer version fails loudly).

    Values read from a file are checked against the type of the field's default (an integer, a
    finite number, text, a flag, a list) before the dataclass checks their ranges, so a damaged
    or hand-edited config is a :class:`ConfigError` naming the field, never a TypeError.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    defaults = {f.name: f.default for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields: {', '.join(map(str, unknown))}")
    kwargs = {k: _loaded(cls.__name__, k, v, defaults[k]) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"invalid {cls.__name__} ({exc})") from exc


def _loaded(owner: str, name: str, value: Any, default: Any) -> Any:
    """``value`` read from JSON for a field whose default is ``default``, type-checked."""

    def refuse(expected: str) -> ConfigError:
        return ConfigError(f"{owner} field {name} must be {expected}, got {value!r:.60}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise refuse("true or false")
    elif isinstance(default, int):
        if not _integral(value):
            raise refuse("an integer")
        return int(value)
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refuse("a number")
        if not math.isfinite(value):
            raise refuse("a finite number")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise refuse("text")
    elif isinstance(default, tuple):
        textual = all(isinstance(d, str) for d in default)
        if textual and isinstance(value, str):
            return value  # "I,II": parsed by the dataclass
        if not isinstance(value, (list, tuple)):
            raise refuse("a list of " + ("names" if textual else "integers"))
        check = (lambda v: isinstance(v, str)) if textual else _integral
        if not all(check(v) for v in value):
            raise refuse("a list of " + ("names" if textual else "integers"))
        return tuple(value) if textual else tuple(int(v) for v in value)
    return tuple(value) if isinstance(value, list) else value


def _integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def save_json(path: str | Path, data: dict[str, Any], private: bool = False) -> None:
    """Write JSON atomically (temp file + fsync + rename): a crash never leaves half a file;
    ``private``: readable by its owner only (0600), for files that hold personal data."""
    from ecgbio.io import atomic_write_text

    atomic_write_text(
        Path(path), json.dumps(data, indent=2, sort_keys=False) + "\n", private=private
    )


METRIC_LOSSES = ("arcface", "subcenter-arcface", "triplet", "arcface+triplet", "none")
INPUT_NORMS = ("none", "beat")


@dataclass(frozen=True)
class ModelConfig:
    """The ResNet1d backbone and its embedding.

    Attributes:
        widths: channels of each residual stage; each stage after the first halves the time axis.
        blocks: residual blocks per stage (depth); one int per stage.
        kernel_size: convolution kernel size (odd).
        stem_kernel: kernel size of the first convolution.
        dropout: dropout before the embedding layer.
        embedding_dim: size of the embedding (L2-normalised at inference).
        input_norm: ``beat`` standardises every beat (per lead) inside the model, so amplitude
            differences between sessions (electrode contact, gain) cannot be learned as identity;
            ``none`` feeds the stored values.
    """

    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    kernel_size: int = 7
    stem_kernel: int = 11
    dropout: float = 0.2
    embedding_dim: int = 128
    input_norm: str = "beat"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if not self.widths or len(self.widths) != len(self.blocks):
            raise ConfigError(
                f"widths {self.widths} and blocks {self.blocks} need one entry per stage"
            )
        if any(w < 1 for w in self.widths) or any(b < 1 for b in self.blocks):
            raise ConfigError("widths and blocks must be positive")
        if min(self.kernel_size, self.stem_kernel) < 1:
            raise ConfigError(
                f"kernel sizes must be >= 1, got {self.kernel_size} and {self.stem_kernel}"
            )
        if self.kernel_size % 2 == 0 or self.stem_kernel % 2 == 0:
            raise ConfigError("kernel sizes must be odd (so that 'same' padding is exact)")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.embedding_dim < 2:
            raise ConfigError(f"embedding_dim must be >= 2, got {self.embedding_dim}")
        if self.input_norm not in INPUT_NORMS:
            raise ConfigError(f"input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}")


#: The default model's time augmentation (experiments/train_default.py): heart-rate stretch about
#: the R-peak and R-peak jitter; ``ecgbio train`` uses them unless told otherwise.
RECIPE_STRETCH = 0.08
RECIPE_SHIFT_S = 0.02
#: The widest R-peak jitter ``augment_shift_s`` may ask for, in seconds: the widest tolerance
#: R-peak detectors are scored at (150 ms, README's MIT-BIH table). A wider shift is no longer
#: detector jitter: it slides the QRS towards the window's edge, where the beat is clamped flat.
MAX_SHIFT_S = 0.15
#: The most torch threads an option may ask for: more than any CPU has cores (torch itself
#: overflows beyond 2**31 - 1 and would start each one it accepts).
MAX_THREADS = 1024
#: Seeds run from 0 to below this: numpy's legacy generator (the batch sampler's) takes no more.
MAX_SEED = 2**32


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; saved in every run directory.

    Attributes:
        protocol: split protocol name (see :mod:`ecgbio.protocols`).
        epochs: maximum epochs.
        batch_size: beats per optimisation step (per process under DDP).
        m_per_class: beats of each identity in a batch (``MPerClassSampler``); batch_size must be a
            multiple of it.
        lr / weight_decay: AdamW; the learning rate follows a cosine schedule with warm-up.
        warmup_epochs: linear warm-up length.
        softmax_weight: weight of the softmax identity head's cross-entropy.
        metric_loss: metric-learning head (pytorch-metric-learning).
        metric_weight: weight of the metric loss.
        arcface_margin: ArcFace additive angular margin, in degrees (pml 2.x convention).
        arcface_scale: ArcFace logit scale.
        triplet_margin: triplet loss margin (cosine distance).
        label_smoothing: for the softmax head.
        augment: random amplitude scaling, baseline offset/ramp and noise on training beats.
        augment_gain: with ``augment``, the amplitude scaling's range (0.2 = x U(0.8, 1.2)):
            electrode contact and skin between sessions (``experiments/session_drift.py``
            measures what really changes between a person's records).
        augment_noise: with ``augment``, Gaussian noise added, in standard deviations of the beat.
        augment_stretch: with ``augment``, random time stretch of each beat about its R-peak, as a
            fraction (0.08 = up to +-8 %): heart-rate changes between sessions.
        augment_shift_s: with ``augment``, random shift of each beat by up to this many seconds:
            R-peak jitter (at most :data:`MAX_SHIFT_S`).
        augment_smooth: with ``augment``, random 3-tap low-pass of strength up to this (0-0.33):
            recorders' different bandwidths.
        augment_axis_deg: with ``augment``, turn each training beat's lead axis by up to this
            many degrees (at most 45) in the frontal plane (electrode placement, posture,
            breathing). Needs a store whose first two leads are I then II, not z-scored per beat;
            the model sees lead I only, and remembers lead I as its input (see
            :func:`ecgbio.training.augment.rotate_lead_axis`).
        patience: stop after this many epochs without a better validation score (0 = never).
        seed: seeds every random choice (weights, batches, augmentation); 0 to below 2**32.
        num_workers: DataLoader worker processes.
        threads: torch intra-op threads (0 = leave torch's default).
        bf16: bfloat16 autocast. Only CPUs with native bf16 (AVX512-BF16 / AMX) gain from it; on
            an AVX2-only CPU it was measured 10-43x slower (benchmarks/train_throughput.py).
        val_fraction: share of the held-out persons used for validation in the ``unseen``
            protocol; 0 keeps them all for test and validates on unseen training identities
            instead (see :func:`ecgbio.protocols.unseen_split`); in the ``general``
            protocol, the share of multi-record persons that validate (0: all of them).
        max_beats_per_record: cap beats per training record (0 = all).
        device: where the model trains: ``cpu``, ``cuda`` (``cuda:N``) or ``auto`` (CUDA when
            torch sees a GPU). Batches are read and augmented on the CPU either way; a run on
            a GPU saves CPU weights like any other. Not part of the recipe: resuming on another
            device is allowed.
        ema_decay: validate, select and keep an exponential moving average of the weights,
            updated after every optimiser step with this decay (0 = off; 0.998 averages over
            about 500 steps). Why: averaged weights sit in a flatter minimum than the last
            step's, and flat minima transfer better to recorders and databases never trained on
            (SWA, Izmailov et al. 2018; SWAD, Cha et al. 2021).
    """

    protocol: str = "unseen"
    epochs: int = 40
    batch_size: int = 256
    m_per_class: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    softmax_weight: float = 1.0
    metric_loss: str = "arcface"
    metric_weight: float = 1.0
    arcface_margin: float = 28.6
    arcface_scale: float = 32.0
    triplet_margin: float = 0.2
    label_smoothing: float = 0.1
    augment: bool = True
    augment_gain: float = 0.2
    augment_noise: float = 0.02
    augment_stretch: float = 0.0
    augment_shift_s: float = 0.0
    augment_smooth: float = 0.0
    augment_axis_deg: float = 0.0
    patience: int = 8
    seed: int = 0
    num_workers: int = 0
    threads: int = 0
    bf16: bool = False
    val_fraction: float = 0.2
    max_beats_per_record: int = 0
    ema_decay: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for field in fields(self):  # NaN passes every comparison below; refuse it by name first
            value = getattr(self, field.name)
            if isinstance(field.default, float) and not math.isfinite(value):
                raise ConfigError(f"{field.name} must be a finite number, got {value}")
        if self.metric_loss not in METRIC_LOSSES:
            raise ConfigError(
                f"metric_loss must be one of {METRIC_LOSSES}, got {self.metric_loss!r}"
            )
        if self.m_per_class < 1:
            raise ConfigError(f"m_per_class must be >= 1, got {self.m_per_class}")
        if self.batch_size < 2:  # batch normalisation needs two beats to train
            raise ConfigError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.batch_size % self.m_per_class:
            raise ConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of m_per_class "
                f"({self.m_per_class})"
            )
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        for name in ("warmup_epochs", "patience", "num_workers", "threads", "max_beats_per_record"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.threads > MAX_THREADS:
            raise ConfigError(f"threads must be at most {MAX_THREADS}, got {self.threads}")
        if not 0 <= self.seed < MAX_SEED:  # numpy's legacy generator takes no more
            raise ConfigError(f"seed must be in [0, 2**32), got {self.seed}")
        if self.lr <= 0:  # (0 would train nothing and say nothing)
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if (
            self.softmax_weight < 0
            or self.metric_weight < 0
            or (
                self.softmax_weight == 0 and (self.metric_weight == 0 or self.metric_loss == "none")
            )
        ):
            raise ConfigError(
                "at least one of the softmax and metric losses needs a positive weight "
                f"(and neither a negative one), got softmax_weight {self.softmax_weight}, "
                f"metric_weight {self.metric_weight}"
            )
        if not 0 <= self.arcface_margin < 90:  # cos(angle + margin) must still fall with angle
            raise ConfigError(
                f"arcface_margin must be in [0, 90) degrees, got {self.arcface_margin}"
            )
        if self.arcface_scale <= 0:
            raise ConfigError(f"arcface_scale must be > 0, got {self.arcface_scale}")
        if not 0 <= self.triplet_margin <= 2:  # cosine distances lie in [0, 2]
            raise ConfigError(f"triplet_margin must be in [0, 2], got {self.triplet_margin}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.augment_shift_s <= MAX_SHIFT_S:
            raise ConfigError(
                f"augment_shift_s is the R-peak jitter in seconds and must be in "
                f"[0, {MAX_SHIFT_S:g}], got {self.augment_shift_s}"
            )
        if not 0 <= self.augment_stretch < 0.5 or not 0 <= self.augment_smooth <= 1 / 3:
            raise ConfigError(
                f"augment_stretch must be in [0, 0.5) and augment_smooth in [0, 1/3], got "
                f"{self.augment_stretch}, {self.augment_smooth}"
            )
        if not 0 <= self.augment_gain < 1 or not 0 <= self.augment_noise <= 1:
            raise ConfigError(
                f"augment_gain must be in [0, 1) and augment_noise in [0, 1], got "
                f"{self.augment_gain}, {self.augment_noise}"
            )
        if not 0 <= self.augment_axis_deg <= 45:
            raise ConfigError(f"augment_axis_deg must be in [0, 45], got {self.augment_axis_deg}")
        asked = {
            name: getattr(self, name)
            for name in ("augment_stretch", "augment_shift_s", "augment_smooth", "augment_axis_deg")
            if getattr(self, name)
        }
        if asked and not self.augment:
            raise ConfigError(
                f"{', '.join(asked)} need augment (they would be ignored with augment off)"
            )
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
