"""Operating points (which score threshold, set for which FAR) and the open-set decision.

A threshold means nothing without the false-accept rate it was set for, so every decision reports
both, and where the threshold came from. Sources, in order of preference for the point asked for:

1. the gallery's own calibration (``ecgbio gallery calibrate``: the gallery's enrolled people,
   scored exactly like probes are scored);
2. the model's ``RUN_DIR/thresholds.json`` (computed on the run's validation persons)::

       {"eer": {"threshold": 0.61, "far": 0.043},
        "far=0.01": {"threshold": 0.72}, "far=0.001": {"threshold": 0.80}}

3. :data:`DEFAULT_THRESHOLD`, with a warning: nothing measured says which FAR it gives.

``--threshold`` overrides all of them (reported as ``manual``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ecgbio.gallery.errors import GalleryError

MODEL_THRESHOLDS_FILE = "thresholds.json"
#: the operating point asked for when none is given (FMR100: 1 false accept in 100 impostor tries)
DEFAULT_FAR = "0.01"
#: cosine threshold used when neither the gallery nor the model has calibrated thresholds: about
#: FAR 1 % (0.9 %, FRR 20 %) for the PTB-XL cross-session model on ECG-ID persons it never saw
#: (one enrolled record each, 220 probes). Another model can put its scores elsewhere, so the
#: output always carries a warning when it is used.
DEFAULT_THRESHOLD = 0.75
#: identification also needs the best person to beat the second-best by this much, so that two
#: look-alike persons (or one person enrolled twice under two names) give "unknown", not a coin
#: toss. Same ECG-ID measurement at threshold 0.75: margin 0.02 turns 3.7 % of the probes from
#: wrong answers into "unknown" for 2.3 % of right answers (0.05: 7.3 % for 6.8 %).
DEFAULT_MARGIN = 0.02


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold and what it means.

    Attributes:
        threshold: accept when score >= threshold.
        point: ``"far=0.01"``, ``"eer"``, ``"manual"`` or ``"default"``.
        far: the false-accept rate the threshold was set for (for ``eer`` the EER measured);
            None when unknown.
        source: ``"gallery"`` (its calibration), ``"model"`` (thresholds.json), ``"manual"`` or
            ``"default"``.
        warning: set when the threshold is uncalibrated.
    """

    threshold: float
    point: str
    far: float | None
    source: str
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_far(value: str | float) -> str | float:
    """``"eer"`` or a FAR in (0, 1) (``0.01``, ``"1e-3"``)."""
    if isinstance(value, str) and value.strip().lower() == "eer":
        return "eer"
    try:
        far = float(value)
    except (TypeError, ValueError):
        raise GalleryError(f"--far must be 'eer' or a rate such as 0.01, got {value!r}") from None
    if not 0.0 < far < 1.0:
        raise GalleryError(f"--far must be between 0 and 1 (exclusive), got {value!r}")
    return far


def point_name(far: str | float) -> str:
    return "eer" if far == "eer" else f"far={float(far):g}"


def read_table(path: Path) -> dict[str, Any] | None:
    """A ``thresholds.json`` table, None when the file is absent; a damaged one is an error."""
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GalleryError(f"unreadable thresholds file ({exc})", path) from exc
    check_table(table, path)
    return table


#: a threshold is a cosine; a score can pass 1 by float32 rounding, never by more than this
COSINE_SLACK = 1e-5
#: rates an operating point may report (measured or targeted), each a number in [0, 1] or null
RATE_FIELDS = ("far", "frr", "far_measured")


def check_table(table: Any, where: str | Path | None) -> None:
    """Every operating point must be ``{"threshold": cosine in [-1, 1], ...}`` under ``eer`` or
    ``far=X`` (X in (0, 1)), with its rates (``far``, ``frr``, ``far_measured``) in [0, 1].

    Other keys are notes (``source``, ``genuine_scores``) and are ignored; a key that starts like
    an operating point (``far=1%``) but is none is refused rather than silently never used.
    """
    if not isinstance(table, dict):
        raise GalleryError(f"thresholds must be a JSON object, got {_kind(table)}", where)
    for key, entry in table.items():
        if key != "eer" and not key.startswith("far="):
            continue  # room for other keys (notes, provenance)
        if key != "eer" and _key_far(key) is None:
            raise GalleryError(
                f"operating point {key!r} is neither 'eer' nor 'far=X' with X between 0 and 1",
                where,
            )
        if not isinstance(entry, dict):
            raise GalleryError(
                f"operating point {key!r} must be an object with a threshold, got {_kind(entry)}",
                where,
            )
        if "threshold" not in entry:
            raise GalleryError(f"operating point {key!r} has no threshold", where)
        value = entry["threshold"]
        if not _finite(value):
            raise GalleryError(f"threshold {key!r} must be a finite number, got {value!r}", where)
        if not -1.0 - COSINE_SLACK <= value <= 1.0 + COSINE_SLACK:
            raise GalleryError(
                f"threshold {key!r} must be a cosine between -1 and 1, got {value!r}", where
            )
        for name in RATE_FIELDS:
            rate = entry.get(name)
            if rate is not None and not (_finite(rate) and 0.0 <= rate <= 1.0):
                raise GalleryError(
                    f"{name} of operating point {key!r} must be a rate between 0 and 1, "
                    f"got {rate!r}",
                    where,
                )


def decision_points(table: dict[str, Any] | None) -> dict[str, Any] | None:
    """The operating points of a checked table (what changes a decision), without the notes."""
    if table is None:
        return None
    fields = ("threshold", *RATE_FIELDS)
    return {
        k: {f: v[f] for f in fields if f in v}
        for k, v in table.items()
        if k == "eer" or _key_far(k) is not None
    }


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def lookup(table: dict[str, Any] | None, far: str | float) -> tuple[float, float | None] | None:
    """(threshold, far it was set for) of the entry matching ``far``, or None."""
    if not table:
        return None
    for key, entry in table.items():
        if far == "eer" and key == "eer":
            measured = entry.get("far")
            return float(entry["threshold"]), None if measured is None else float(measured)
        key_far = _key_far(key)
        if far != "eer" and key_far is not None and math.isclose(key_far, float(far), rel_tol=1e-9):
            return float(entry["threshold"]), key_far
    return None


def points(table: dict[str, Any] | None) -> list[str]:
    return [k for k in (table or {}) if k == "eer" or _key_far(k) is not None]


def resolve(
    far: str | float = DEFAULT_FAR,
    threshold: float | None = None,
    gallery_table: dict[str, Any] | None = None,
    model_table: dict[str, Any] | None = None,
    model_file: str | Path | None = None,
) -> OperatingPoint:
    """Pick the operating point for ``far`` (see the module doc for the order)."""
    if threshold is not None:
        if not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
            raise GalleryError(f"--threshold must be a cosine between -1 and 1, got {threshold!r}")
        return OperatingPoint(float(threshold), "manual", None, "manual")
    far = parse_far(far)
    name = point_name(far)
    for source, table in (("gallery", gallery_table), ("model", model_table)):
        found = lookup(table, far)
        if found is not None:
            return OperatingPoint(found[0], name, far if far != "eer" else found[1], source)
    available = sorted(set(points(gallery_table)) | set(points(model_table)))
    if available:
        where = " and ".join(
            w
            for w, t in (
                ("the gallery's calibration", gallery_table),
                (str(model_file), model_table),
            )
            if t
        )
        raise GalleryError(
            f"no operating point {name} in {where} (available: {', '.join(available)})"
        )
    return OperatingPoint(
        DEFAULT_THRESHOLD,
        "default",
        None,
        "default",
        warning=(
            f"uncalibrated: no {MODEL_THRESHOLDS_FILE} in the model's run dir and no gallery "
            f"calibration; using the default cosine threshold {DEFAULT_THRESHOLD}, whose false-"
            "accept rate is unknown (run `ecgbio gallery calibrate`)"
        ),
    )


#: warn when an unknown probe would pass the threshold against someone this often (FPIR bound)
FPIR_WARNING = 0.1


def fpir_warning(point: OperatingPoint, persons: int) -> str | None:
    """Open-set caution: a FAR is per comparison, and an unknown probe is compared with everyone.

    With ``persons`` enrolled, a stranger passes the threshold against at least one of them with
    probability up to ``1 - (1 - FAR)^persons`` (the false-positive identification rate, FPIR, if
    comparisons were independent); say so when that exceeds :data:`FPIR_WARNING`.
    """
    if point.far is None or point.point in ("eer", "manual") or persons < 2:
        return None
    fpir = 1 - (1 - point.far) ** persons
    if fpir <= FPIR_WARNING:
        return None
    return (
        f"{persons} persons enrolled: a stranger passes a FAR {point.far:g} threshold against "
        f"someone with probability up to {fpir:.0%} (FPIR); for open-set use choose a lower "
        "--far (e.g. 0.001) or calibrate the gallery"
    )


def open_set(
    scores: list[tuple[str, float]], point: OperatingPoint, margin: float
) -> tuple[str | None, str]:
    """The open-set decision over person-level scores, best first: (person or None, why).

    A person is named only if their score passes the threshold AND beats the second-best person by
    ``margin``; with a single enrolled person the threshold alone rejects strangers.
    """
    if not scores:
        return None, "the gallery is empty"
    best_name, best = scores[0]
    if best < point.threshold:
        return (
            None,
            f"best score {best:.3f} ({best_name}) is below the threshold {point.threshold:.3f}",
        )
    if len(scores) > 1:
        second_name, second = scores[1]
        if best - second < margin:
            return None, (
                f"{best_name} ({best:.3f}) beats {second_name} ({second:.3f}) by "
                f"{best - second:.3f}, less than the margin {margin:.3f}"
            )
        return best_name, (
            f"score {best:.3f} >= threshold {point.threshold:.3f} and {best - second:.3f} "
            f"ahead of {second_name}"
        )
    return best_name, f"score {best:.3f} >= threshold {point.threshold:.3f} (only person enrolled)"


def _key_far(key: str) -> float | None:
    if not key.startswith("far="):
        return None
    try:
        value = float(key[4:])
    except ValueError:
        return None
    return value if 0.0 < value < 1.0 else None
