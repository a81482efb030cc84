"""Typed configuration, saved as JSON beside every store and model so a run can be reproduced.

Dataclasses rather than dicts: a typo in a field name fails loudly, defaults are documented in one
place, and ``to_dict``/``from_dict`` round-trip exactly through JSON.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from ecgbio.errors import ConfigError

T = TypeVar("T")

ALL_LEADS = "all"
NORMALIZATIONS = ("none", "record", "beat")


@dataclass(frozen=True)
class BeatConfig:
    """Everything that turns a WFDB record into beat windows.

    A model remembers the ``BeatConfig`` of the store it was trained on, and enrolment/identification
    re-use it, so a probe is always cut exactly like the training beats.

    Attributes:
        leads: lead names to keep, in this order (``("I",)``), or ``("all",)`` for every lead.
        rate: the pipeline's sampling rate in Hz; records are resampled to it.
        before_s / after_s: window extent around the R-peak in seconds. The window has
            ``round(before_s*rate) + round(after_s*rate)`` samples and the R-peak sits at index
            ``round(before_s*rate)``. The seed notebook's 200 samples centred at 500 Hz are
            ``before_s=0.2, after_s=0.2``.
        clean_method: ``neurokit2.ecg_clean`` method for the stored waveforms.
        peak_method: ``neurokit2.ecg_peaks`` method for R-peak detection (default measured on MIT-BIH,
            see README).
        detect_lead: lead name used for R-peak detection; empty = the first kept lead.
        refine_peaks: move each detected peak to the local extremum (with the record's QRS polarity)
            within ``refine_window_s``, so that beats are aligned on the R wave itself.
        min_quality: beats whose correlation with the record's median beat is below this are
            rejected (0 disables).
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
    rate: int = 500
    before_s: float = 0.25
    after_s: float = 0.45
    clean_method: str = "neurokit"
    peak_method: str = "neurokit"
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
        if not self.leads:
            raise ConfigError("leads must name at least one lead (or 'all')")
        if not 50 <= self.rate <= 10_000:
            raise ConfigError(f"rate must be between 50 and 10000 Hz, got {self.rate}")
        if self.before_s < 0 or self.after_s < 0 or self.window_samples < 4:
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
    """Dict -> dataclass, refusing unknown keys (a config from a newer version fails loudly)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


def save_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + fsync + rename): a crash never leaves half a file."""
    from ecgbio.io import atomic_write_text

    atomic_write_text(Path(path), json.dumps(data, indent=2, sort_keys=False) + "\n")
