"""R-peak detection accuracy against reference beat annotations (ANSI/AAMI EC57 style).

A detector is scored by pairing its peaks with the cardiologists' beat annotations one-to-one within
a matching window: paired detections are true positives, unpaired detections false positives,
unpaired reference beats false negatives. From these come sensitivity (Se = TP / (TP + FN)),
positive predictivity (+P = TP / (TP + FP)) and F1.

Conventions (stated because published figures differ on them):

* Matching window: EC57 uses 150 ms; we also report 50 ms, which penalises detectors that mark a
  fiducial away from the R apex (alignment matters for beat templates, not only beat counting).
* Whole record: every reference beat counts, including those within one window of the record's
  start or end, where a detector's filters are still settling, and every detection counts,
  including those in ventricular flutter, where the reference marks flutter waves, not beats.
* EC57 scoring (:func:`ec57_scored`, reported beside): EC57 skips a learning period (PhysioNet's
  ``bxb`` the first 5 minutes by default) and leaves ventricular flutter/fibrillation episodes
  out of QRS-detection scoring; both the reference and the detections are filtered alike.
* Only beat annotations are reference beats (:data:`BEAT_SYMBOLS`); rhythm changes, noise, artefact
  and comment annotations are not beats.
* Gross statistics over a database come from summed TP/FP/FN (:func:`sum_matches`), so long or
  fast records weigh by their beats (EC57's "gross" statistics).

Everything here is a plain function over sample indices, with no signal or file access, so that
it can be tested on hand-made cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ecgbio.errors import ConfigError

#: MIT-BIH annotation symbols that label a beat (ANSI/AAMI EC57; PhysioNet's ``ecgcodes``):
#: normal, bundle-branch blocks, atrial/aberrant/nodal/supraventricular premature, ventricular,
#: R-on-T, fusion, escapes, paced, fusion of paced and normal, unclassifiable (Q) and
#: beat-not-classified (?). Non-beat symbols (rhythm ``+``, noise ``~``, artefact ``|``,
#: flutter wave ``!``, comments ``"``, signal-quality and waveform marks) are excluded.
BEAT_SYMBOLS: frozenset[str] = frozenset(
    ("N", "L", "R", "B", "A", "a", "J", "S", "V", "r", "F", "e", "j", "n", "E", "/", "f", "Q", "?")
)

#: Reference annotations that open and close a ventricular flutter/fibrillation episode.
VF_START, VF_END = "[", "]"
#: EC57's learning period: the first 5 minutes of each record are not scored.
EC57_LEARNING_S = 300.0


@dataclass(frozen=True)
class PeakMatch:
    """Counts of a detector-versus-reference comparison and the rates derived from them.

    A rate whose denominator is zero is ``nan`` (undefined), not 0 or 1: a record without reference
    beats says nothing about sensitivity, and a detector that found nothing says nothing about
    positive predictivity. Rates are fractions (0-1), not percentages.

    Attributes:
        tp: detections paired with a reference beat.
        fp: detections left unpaired.
        fn: reference beats left unpaired.
        sensitivity: ``tp / (tp + fn)`` (Se).
        ppv: ``tp / (tp + fp)`` (positive predictivity, +P).
        f1: ``2 tp / (2 tp + fp + fn)``.
    """

    tp: int
    fp: int
    fn: int
    sensitivity: float
    ppv: float
    f1: float

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int) -> PeakMatch:
        """Build from counts, deriving the rates (``nan`` where undefined)."""
        for name, value in (("tp", tp), ("fp", fp), ("fn", fn)):
            if int(value) != value or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        tp, fp, fn = int(tp), int(fp), int(fn)
        return cls(
            tp, fp, fn, _ratio(tp, tp + fn), _ratio(tp, tp + fp), _ratio(2 * tp, 2 * tp + fp + fn)
        )

    def __add__(self, other: PeakMatch) -> PeakMatch:
        """Pool two comparisons (gross statistics): counts add, rates are recomputed."""
        if not isinstance(other, PeakMatch):
            return NotImplemented
        return PeakMatch.from_counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def as_dict(self) -> dict[str, int | float | None]:
        """JSON-safe dict: undefined rates become ``None`` (JSON has no NaN)."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "sensitivity": None if math.isnan(self.sensitivity) else self.sensitivity,
            "ppv": None if math.isnan(self.ppv) else self.ppv,
            "f1": None if math.isnan(self.f1) else self.f1,
        }


def match_peaks(detected: np.ndarray, reference: np.ndarray, tolerance: float) -> PeakMatch:
    """Pair detections with reference beats one-to-one within ``+-tolerance`` samples and count.

    The pairing is a maximum matching (see :func:`pair_peaks`): no other one-to-one pairing gives
    more true positives. This matters with close duplicates: a detector that marks one beat twice
    gets one TP and one FP, never two TPs, and a stray detection between two beats cannot steal
    the partner of a beat that has no other candidate.

    Args:
        detected: 1-D sample indices of detected peaks (any order; duplicates count separately).
        reference: 1-D sample indices of reference beats (any order).
        tolerance: half-width of the matching window in samples, inclusive: ``|d - r| <= tolerance``
            pairs. EC57's 150 ms at 360 Hz is 54 samples; 50 ms is 18.

    Returns:
        :class:`PeakMatch` with the counts and Se, +P, F1.

    Raises:
        ConfigError: an input that is not 1-D, numeric and finite, or a tolerance that is
            negative or not finite.
    """
    det_idx, _ = pair_peaks(detected, reference, tolerance)
    tp = int(det_idx.size)
    return PeakMatch.from_counts(tp, np.size(detected) - tp, np.size(reference) - tp)


def pair_peaks(
    detected: np.ndarray, reference: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs behind :func:`match_peaks`: indices into ``detected`` and ``reference``.

    Use it to measure *where* a detector marks the beat (``detected[i] - reference[j]`` over the
    pairs): a constant lag passes a 150 ms window yet misaligns every beat window cut around it.

    Algorithm: because every reference beat's window has the same width, the classic greedy is a
    maximum matching: take reference beats in time order and give each the earliest still-unused
    detection inside its window (a detection left of the window can serve no later beat). This is
    O(n log n) for sorting plus one linear pass. It maximises the number of pairs, not closeness,
    so with a duplicate inside one window the earlier mark is the one paired.

    Returns:
        ``(det_idx, ref_idx)``: int64 arrays of equal length, in reference time order.
    """
    det = _as_positions(detected, "detected")
    ref = _as_positions(reference, "reference")
    tol = float(tolerance)
    if not math.isfinite(tol) or tol < 0:
        raise ConfigError(f"tolerance must be a finite number >= 0 samples, got {tolerance!r}")
    det_order = np.argsort(det, kind="stable")
    ref_order = np.argsort(ref, kind="stable")
    det_sorted = det[det_order]
    lows = np.searchsorted(det_sorted, ref[ref_order] - tol, side="left")
    pairs_d: list[int] = []
    pairs_r: list[int] = []
    j = 0
    for k, r_pos in enumerate(ref_order):
        j = max(j, int(lows[k]))  # detections left of this window can serve no later beat either
        if j < det_sorted.size and det_sorted[j] <= ref[r_pos] + tol:
            pairs_d.append(int(det_order[j]))
            pairs_r.append(int(r_pos))
            j += 1
    return np.asarray(pairs_d, dtype=np.int64), np.asarray(pairs_r, dtype=np.int64)


def sum_matches(matches: Iterable[PeakMatch]) -> PeakMatch:
    """Gross statistics over many records: summed TP/FP/FN, rates recomputed from the sums.

    This is EC57's "gross" figure: every beat weighs the same, whichever record it is in. (The
    mean of per-record rates, EC57's "average", lets a short record weigh as much as a long one.)
    """
    total = PeakMatch.from_counts(0, 0, 0)
    for m in matches:
        total = total + m
    return total


def reference_beats(annotation: object, symbols: Iterable[str] = BEAT_SYMBOLS) -> np.ndarray:
    """Sorted sample indices of the beat annotations of a ``wfdb.Annotation``.

    Args:
        annotation: anything with parallel ``sample`` and ``symbol`` sequences (``wfdb.rdann``'s
            result, e.g. ``wfdb.rdann("mitdb/100", "atr")``).
        symbols: which annotation symbols are beats; defaults to :data:`BEAT_SYMBOLS`.

    Raises:
        ConfigError: the object has no ``sample``/``symbol`` or they differ in length.
    """
    sample = getattr(annotation, "sample", None)
    symbol = getattr(annotation, "symbol", None)
    if sample is None or symbol is None:
        raise ConfigError("annotation must have 'sample' and 'symbol' (a wfdb.Annotation)")
    samples = np.asarray(sample)
    if samples.ndim != 1 or len(samples) != len(symbol):
        raise ConfigError(
            f"annotation has {samples.size} samples but {len(symbol)} symbols; expected one each"
        )
    keep = set(symbols)
    is_beat = np.fromiter((s in keep for s in symbol), dtype=bool, count=len(symbol))
    return np.sort(samples[is_beat].astype(np.int64))


def vf_spans(annotation: object) -> np.ndarray:
    """``(k, 2)`` sample spans of ventricular flutter/fibrillation in a ``wfdb.Annotation``.

    Why: ANSI/AAMI EC57 leaves these episodes out of QRS-detection scoring: flutter waves are not
    beats (MIT-BIH marks them ``!``, not a beat symbol) and no beat detector is asked to find beats
    in them. An episode runs from a ``[`` to the next ``]``; one left open runs to the last
    annotation.
    """
    sample = np.asarray(getattr(annotation, "sample", []), dtype=np.int64)
    symbol = list(getattr(annotation, "symbol", []))
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for at, sym in zip(sample, symbol, strict=True):
        if sym == VF_START and start is None:
            start = int(at)
        elif sym == VF_END and start is not None:
            spans.append((start, int(at)))
            start = None
    if start is not None:
        spans.append((start, int(sample.max())))
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def ec57_scored(peaks: np.ndarray, spans: np.ndarray, start: int = 0) -> np.ndarray:
    """The positions of ``peaks`` that EC57 scores: from ``start`` on, outside every span.

    Apply it to the detections and to the reference alike (``start``: the end of the learning
    period in samples, :data:`EC57_LEARNING_S` times the rate; ``spans``: :func:`vf_spans`).
    """
    peaks = np.asarray(peaks)
    keep = peaks >= start
    for lo, hi in np.asarray(spans).reshape(-1, 2):
        keep &= (peaks < lo) | (peaks > hi)
    return peaks[keep]


def _as_positions(values: np.ndarray, name: str) -> np.ndarray:
    """A float64 copy of a 1-D, finite array of positions (samples)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D array of sample indices, got shape {arr.shape}")
    if arr.size and not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ConfigError(f"{name} must hold numbers, got dtype {arr.dtype}")
    out = arr.astype(np.float64, copy=True)
    if not np.isfinite(out).all():
        raise ConfigError(f"{name} holds NaN or infinite values")
    return out


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan
