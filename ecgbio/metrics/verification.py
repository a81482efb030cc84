"""Verification (one-to-one) accuracy from genuine and impostor comparison scores.

A verification system compares a probe with one claimed identity's enrolment and accepts the
claim when the comparison score reaches a decision threshold. Its accuracy is described by two
error rates, named as in ISO/IEC 19795-1:

* FMR / FAR, false match (accept) rate: the fraction of impostor comparisons (different persons)
  that are accepted.
* FNMR / FRR, false non-match (reject) rate: the fraction of genuine comparisons (same person)
  that are rejected. TAR (true accept rate) is ``1 - FRR``.

Conventions, stated once here because published figures differ on them:

* Higher score = more similar (e.g. cosine similarity of embeddings); a comparison is accepted
  when ``score >= threshold``. All scores equal to a threshold are therefore accepted together,
  so ties never split an operating point.
* The ROC is computed exactly at every distinct score (no interpolation, no dropped points):
  thresholds decrease, starting at ``+inf`` (accept nothing: FAR = TAR = 0) and ending at the
  lowest score (accept everything: FAR = TAR = 1).
* The EER is read off the piecewise-linear ROC: the point where FAR and FRR cross, linearly
  interpolated between the two consecutive operating points where ``FAR - FRR`` changes sign
  (see :func:`eer`). Perfect separation gives 0.0; all-equal scores give 0.5.
* Operating points at a target FAR (``TAR@FAR``, FMR100 = FAR 1e-2, FMR1000 = 1e-3, ZeroFMR = 0)
  are conservative: the reported FAR never exceeds the target (no interpolation).
* Rates are fractions (0-1), not percentages.

Everything takes two 1-D arrays, ``genuine`` and ``impostor`` scores; :func:`split_scores` turns
scikit-learn style ``(y_true, y_score)`` into them. Invalid input raises
:class:`~ecgbio.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ecgbio.errors import ConfigError
from ecgbio.metrics._validation import encode_ids, finite_array

__all__ = [
    "EerResult",
    "Roc",
    "auc",
    "d_prime",
    "eer",
    "eer_ci",
    "far_frr",
    "min_dcf",
    "roc",
    "split_scores",
    "tar_at_far",
    "threshold_at_far",
]

#: Bootstrap resamples processed at once by :func:`eer_ci` (bounds memory to a few tens of MB).
_BOOT_CHUNK = 128


@dataclass(frozen=True, eq=False)
class Roc:
    """A receiver operating characteristic, exact at every distinct score.

    Point ``i`` is the system that accepts a comparison when ``score >= thresholds[i]``.

    Attributes:
        far: false accept (match) rate at each threshold, non-decreasing from 0 to 1.
        tar: true accept rate (``1 - FRR``) at each threshold, non-decreasing from 0 to 1.
        thresholds: the distinct scores in decreasing order, preceded by ``+inf``.
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray

    @property
    def frr(self) -> np.ndarray:
        """False reject (non-match) rate at each threshold: ``1 - tar``."""
        return 1.0 - self.tar

    def __len__(self) -> int:
        return int(self.thresholds.size)


class EerResult(NamedTuple):
    """Equal error rate and the score threshold at which FAR and FRR cross (see :func:`eer`)."""

    eer: float
    threshold: float


# --------------------------------------------------------------------------------- validation


def _scores(values: ArrayLike, name: str) -> np.ndarray:
    """A non-empty, finite, 1-D float array, or a one-line ConfigError naming ``name``."""
    return finite_array(values, f"{name} scores", ndim=1)


def _pair(genuine: ArrayLike, impostor: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return _scores(genuine, "genuine"), _scores(impostor, "impostor")


def _fraction(value: float, name: str) -> float:
    """A number in [0, 1] (a rate target), or a ConfigError."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= out <= 1.0:  # also rejects NaN
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return out


def split_scores(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Split scikit-learn style labels and scores into ``(genuine, impostor)`` score arrays.

    Args:
        y_true: 1 (or True) for a genuine comparison (same person), 0 (False) for an impostor.
        y_score: the comparison scores, same length.

    Returns:
        ``(genuine, impostor)`` float arrays, each non-empty.
    """
    labels = np.asarray(y_true)
    scores = _scores(y_score, "comparison")
    if labels.ndim != 1:
        raise ConfigError(f"labels must be a 1-D array, got shape {labels.shape}")
    if labels.shape != scores.shape:
        raise ConfigError(
            f"labels and scores differ in length: {labels.size} labels, {scores.size} scores"
        )
    if labels.dtype.kind not in "biuf" or not np.all((labels == 0) | (labels == 1)):
        found = np.unique(labels)[:5].tolist() if labels.dtype.kind != "O" else "objects"
        raise ConfigError(f"labels must be 0 (impostor) or 1 (genuine), found {found}")
    is_genuine = labels == 1
    return _scores(scores[is_genuine], "genuine"), _scores(scores[~is_genuine], "impostor")


# ------------------------------------------------------------------------------ ROC and AUC


def _accept_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (+inf, then distinct scores decreasing) and how many pos/neg scores each accepts."""
    thresholds = np.concatenate(([np.inf], np.unique(np.concatenate((pos, neg)))[::-1]))
    pos_accepted = pos.size - np.searchsorted(np.sort(pos), thresholds, side="left")
    neg_accepted = neg.size - np.searchsorted(np.sort(neg), thresholds, side="left")
    return thresholds, pos_accepted.astype(np.int64), neg_accepted.astype(np.int64)


def roc(genuine: ArrayLike, impostor: ArrayLike) -> Roc:
    """The exact ROC: FAR and TAR at ``+inf`` and at every distinct score.

    Unlike :func:`sklearn.metrics.roc_curve` (which by default drops collinear points), every
    distinct score is an operating point, so any threshold's rates can be looked up.

    Args:
        genuine: scores of same-person comparisons.
        impostor: scores of different-person comparisons.
    """
    gen, imp = _pair(genuine, impostor)
    thresholds, gen_acc, imp_acc = _accept_counts(gen, imp)
    return Roc(far=imp_acc / imp.size, tar=gen_acc / gen.size, thresholds=thresholds)


def auc(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """Area under the ROC: the probability that a genuine score exceeds an impostor score.

    Ties count one half (the Mann-Whitney U statistic), which equals the trapezoidal area under
    :func:`roc` and :func:`sklearn.metrics.roc_auc_score`. Computed exactly from counts.
    """
    gen, imp = _pair(genuine, impostor)
    imp_sorted = np.sort(imp)
    below = np.searchsorted(imp_sorted, gen, side="left").astype(np.float64)
    at_or_below = np.searchsorted(imp_sorted, gen, side="right").astype(np.float64)
    wins = float(np.sum(below + at_or_below)) / 2.0  # below + (ties / 2)
    return wins / (gen.size * imp.size)


# ------------------------------------------------------------------------------------- EER


def _eer_crossing(
    pos_acc: np.ndarray, neg_acc: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where FAR - FRR changes sign along operating points, for each row (vectorised).

    ``pos_acc``/``neg_acc`` are (rows, points) integer counts (or integer weights) of accepted
    genuine/impostor comparisons at each point after the accept-nothing one (whose counts are 0);
    the last point accepts everything (``n_pos``, ``n_neg``, the (rows,) totals, all > 0). The
    sign test uses exact integer arithmetic, so a crossing that falls on an operating point is
    recognised as such.

    Returns:
        ``(eer, i, lam)``: the interpolated rate, the index of the first point with
        FAR >= FRR, and the weight of that point in the interpolation (exactly 1.0 when the
        crossing is on it); the point before index 0 is the accept-nothing one.
    """
    rows = np.arange(pos_acc.shape[0])
    product = n_pos * n_neg
    # (FAR - FRR) * n_pos * n_neg = neg_acc * n_pos + pos_acc * n_neg - n_pos * n_neg, exactly
    # (FAR = neg_acc / n_neg, FRR = (n_pos - pos_acc) / n_pos); it grows along the points.
    scaled = neg_acc * n_pos[:, None] + pos_acc * n_neg[:, None]
    i = np.argmax(scaled >= product[:, None], axis=1)  # exists: the last point has FAR - FRR = 1
    prev = np.maximum(i - 1, 0)
    has_prev = i > 0
    before = np.where(has_prev, scaled[rows, prev], 0) - product  # < 0
    after = scaled[rows, i] - product  # >= 0
    lam = -before / (after - before)  # in (0, 1]
    far_before = np.where(has_prev, neg_acc[rows, prev], 0) / n_neg
    far_after = neg_acc[rows, i] / n_neg
    return (1.0 - lam) * far_before + lam * far_after, i, lam


def eer(genuine: ArrayLike, impostor: ArrayLike) -> EerResult:
    """Equal error rate: where FAR and FRR cross on the ROC's piecewise-linear curve.

    Convention: walk the operating points of :func:`roc` from ``+inf`` (FAR 0, FRR 1) to the
    lowest score (FAR 1, FRR 0); ``FAR - FRR`` strictly increases along them. Take the first
    point where it is >= 0 and the point before it, and interpolate linearly between the two
    (FAR, FRR) pairs to where FAR = FRR; that common value is the EER. This is the crossing of
    the FRR-vs-FAR polyline (the DET curve drawn with straight segments) with the line
    FAR = FRR, well defined for any input.

    The threshold reported:

    * crossing exactly on an operating point: the midpoint between that point's threshold and
      the next lower distinct score; it realises the EER exactly (``far_frr`` gives
      ``(eer, eer)``). With perfect separation this is the midpoint between the lowest genuine
      and the highest impostor score, and the EER is 0.0.
    * crossing between two points: the two thresholds interpolated with the same weight (the
      upper one replaced by the lower when it is ``+inf``). No single threshold realises an
      interpolated EER; this one lies between the two that bracket it.

    All scores equal gives EER 0.5 at that score.

    Returns:
        :class:`EerResult` ``(eer, threshold)``.
    """
    gen, imp = _pair(genuine, impostor)
    thresholds, gen_acc, imp_acc = _accept_counts(gen, imp)
    rate, idx, weight = _eer_crossing(
        gen_acc[None, 1:], imp_acc[None, 1:], np.array([gen.size]), np.array([imp.size])
    )
    i, lam = int(idx[0]) + 1, float(weight[0])  # i indexes ``thresholds`` (0 is +inf)
    # exactly on operating point i (FAR = FRR in integers)? Never the last: FAR - FRR = 1 there
    if int(imp_acc[i]) * gen.size == (gen.size - int(gen_acc[i])) * imp.size:
        threshold = (thresholds[i] + thresholds[i + 1]) / 2.0
    elif np.isinf(thresholds[i - 1]):
        threshold = thresholds[i]
    else:
        threshold = (1.0 - lam) * thresholds[i - 1] + lam * thresholds[i]
    return EerResult(float(rate[0]), float(threshold))


def far_frr(genuine: ArrayLike, impostor: ArrayLike, threshold: float) -> tuple[float, float]:
    """FAR and FRR of the system that accepts when ``score >= threshold``.

    ``threshold`` may be ``+inf`` (accept nothing: ``(0.0, 1.0)``) or ``-inf`` (accept all).
    """
    gen, imp = _pair(genuine, impostor)
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number, got {threshold!r}") from None
    if np.isnan(t):
        raise ConfigError("threshold is NaN")
    return float(np.mean(imp >= t)), float(np.mean(gen < t))


# ------------------------------------------------------------------------ fixed-FAR points


def _best_at_rate(
    thresholds: np.ndarray,
    pos_acc: np.ndarray,
    neg_acc: np.ndarray,
    n_pos: int,
    n_neg: int,
    target: float,
) -> tuple[float, float]:
    """Highest positive-accept rate among points whose negative-accept rate is <= target."""
    ok = np.flatnonzero(neg_acc / n_neg <= target)  # never empty: the +inf point accepts nothing
    j = int(ok[-1])  # accept counts grow along the points, so the last admissible one is best
    return float(pos_acc[j] / n_pos), float(thresholds[j])


def tar_at_far(genuine: ArrayLike, impostor: ArrayLike, far_target: float) -> tuple[float, float]:
    """The highest TAR whose FAR does not exceed ``far_target``, and its threshold.

    Conservative: only exact operating points are considered, so the FAR actually achieved at
    the returned threshold is <= the target (no interpolation towards the target). FMR100 is
    ``far_target=0.01``, FMR1000 ``0.001`` and ZeroFMR ``0``. The threshold is the lowest
    distinct score that keeps FAR within the target (accept if ``score >= threshold``); it is
    ``+inf`` with TAR 0 when even the highest score is an impostor's and the target is below
    one impostor in ``len(impostor)``.

    Returns:
        ``(tar, threshold)``.
    """
    gen, imp = _pair(genuine, impostor)
    target = _fraction(far_target, "far_target")
    thresholds, gen_acc, imp_acc = _accept_counts(gen, imp)
    return _best_at_rate(thresholds, gen_acc, imp_acc, gen.size, imp.size, target)


def threshold_at_far(genuine: ArrayLike, impostor: ArrayLike, far_target: float) -> float:
    """The threshold of :func:`tar_at_far`: the lowest score whose FAR is <= ``far_target``."""
    return tar_at_far(genuine, impostor, far_target)[1]


# --------------------------------------------------------------------- summary statistics


def d_prime(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """Decidability index d' (Daugman): separation of the two score distributions in pooled SDs.

    ``d' = (mean_g - mean_i) / sqrt((var_g + var_i) / 2)`` with population variances (``ddof=0``,
    so a single genuine score is allowed). Signed: negative when impostors score higher on
    average. ``+/-inf`` when both distributions have zero spread but different means, ``nan``
    when all scores are equal (undefined).
    """
    gen, imp = _pair(genuine, impostor)
    diff = float(np.mean(gen) - np.mean(imp))
    spread = float(np.sqrt((np.var(gen) + np.var(imp)) / 2.0))
    if spread == 0.0:
        return float("nan") if diff == 0.0 else float(np.copysign(np.inf, diff))
    return diff / spread


def min_dcf(
    genuine: ArrayLike,
    impostor: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Minimum normalised detection cost over all thresholds (NIST speaker recognition evaluations).

    ``DCF(t) = c_miss * p_target * FRR(t) + c_fa * (1 - p_target) * FAR(t)``, divided by the cost
    of the best system that ignores its input, ``min(c_miss * p_target, c_fa * (1 - p_target))``,
    so 1.0 means "no better than always rejecting or always accepting". The minimum is over the
    exact operating points of :func:`roc` (including accept-nothing and accept-all), hence <= 1.

    Args:
        p_target: prior probability of a genuine claim, in (0, 1).
        c_miss: cost of a false reject, > 0.
        c_fa: cost of a false accept, > 0.
    """
    for name, value in (("p_target", p_target), ("c_miss", c_miss), ("c_fa", c_fa)):
        if not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if not 0.0 < p_target < 1.0:
        raise ConfigError(f"p_target must be in (0, 1), got {p_target!r}")
    if c_miss <= 0 or c_fa <= 0:
        raise ConfigError(f"costs must be > 0, got c_miss={c_miss!r}, c_fa={c_fa!r}")
    curve = roc(genuine, impostor)
    cost = c_miss * p_target * curve.frr + c_fa * (1.0 - p_target) * curve.far
    default = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(np.min(cost) / default)


# ------------------------------------------------------------------ bootstrap over persons


def _groups(groups: ArrayLike, scores: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(groups)
    if arr.ndim != 1:
        raise ConfigError(f"{name} groups must be a 1-D array, got shape {arr.shape}")
    if arr.size != scores.size:
        raise ConfigError(
            f"{name} scores and groups differ in length: {scores.size} scores, {arr.size} groups"
        )
    return arr


def eer_ci(
    genuine_scores: ArrayLike,
    genuine_groups: ArrayLike,
    impostor_scores: ArrayLike,
    impostor_groups: ArrayLike,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the EER, resampling persons, not scores.

    Comparisons that involve the same person are correlated (one person's noisy recordings
    produce many poor genuine scores at once), so resampling individual scores understates the
    uncertainty. Instead each resample draws person ids with replacement (as many as there are
    distinct persons) and keeps every comparison of each drawn person, once per draw, as the
    "subsets bootstrap" of Bolle et al. Ownership of a comparison:

    * a genuine score belongs to its person (``genuine_groups``);
    * an impostor score belongs to its probe's person (``impostor_groups``), i.e. the person who
      attempted the false claim.

    The EER of each resample follows :func:`eer` exactly (the same interpolation on weighted
    counts). Resamples that happen to contain no genuine or no impostor comparison have no EER
    and are discarded. The interval is ``(q(alpha/2), q(1 - alpha/2))`` of the resampled EERs.

    Args:
        genuine_scores, genuine_groups: genuine scores and their person ids (any hashable type).
        impostor_scores, impostor_groups: impostor scores and their probe persons' ids.
        n_boot: number of resamples (>= 1).
        alpha: 1 - confidence level, in (0, 1).
        seed: seed of the random generator, for reproducible intervals.

    Returns:
        ``(low, high)``.
    """
    gen, imp = _pair(genuine_scores, impostor_scores)
    gen_groups = _groups(genuine_groups, gen, "genuine")
    imp_groups = _groups(impostor_groups, imp, "impostor")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not isinstance(alpha, (int, float, np.number)) or not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    _, gen_codes, imp_codes = encode_ids(gen_groups, imp_groups, ("genuine", "impostor"), "groups")
    person = np.concatenate((gen_codes, imp_codes))
    n_persons = int(person.max()) + 1

    # Sort all comparisons once by decreasing score; operating points end at each tie group.
    scores = np.concatenate((gen, imp))
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    owner = person[order]
    is_gen = order < gen.size
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    if ends.size == scores.size:
        ends = None  # no ties: every comparison is an operating point
    # One cumulative sum gives both accept counts: impostor weights are packed in the high 32
    # bits of an int64, genuine weights in the low 32. A resample's total weight is at most
    # n_persons * (most comparisons of one person), checked to fit.
    per_person = np.bincount(person, minlength=n_persons)
    if n_persons * int(per_person.max()) >= 2**31:
        raise ConfigError(
            f"too many comparisons for the bootstrap: {n_persons} persons, up to "
            f"{int(per_person.max())} comparisons each"
        )
    pack = np.where(is_gen, 1, 1 << 32).astype(np.int64)
    low_bits = (1 << 32) - 1

    rng = np.random.default_rng(seed)
    eers = np.empty(n_boot)
    for start in range(0, n_boot, _BOOT_CHUNK):
        rows = min(_BOOT_CHUNK, n_boot - start)
        draws = rng.integers(0, n_persons, size=(rows, n_persons))
        draws += np.arange(rows)[:, None] * n_persons  # one bin per (resample, person)
        counts = np.bincount(draws.ravel(), minlength=rows * n_persons).reshape(rows, n_persons)
        packed = np.cumsum(counts[:, owner] * pack, axis=1)  # (rows, comparisons)
        if ends is not None:
            packed = packed[:, ends]
        gen_acc, imp_acc = packed & low_bits, packed >> 32
        n_gen, n_imp = gen_acc[:, -1], imp_acc[:, -1]
        valid = (n_gen > 0) & (n_imp > 0)
        out = np.full(rows, np.nan)
        if np.all(valid):
            out = _eer_crossing(gen_acc, imp_acc, n_gen, n_imp)[0]
        elif np.any(valid):
            out[valid] = _eer_crossing(gen_acc[valid], imp_acc[valid], n_gen[valid], n_imp[valid])[
                0
            ]
        eers[start : start + rows] = out
    kept = eers[~np.isnan(eers)]
    if kept.size == 0:
        raise ConfigError(
            "no bootstrap resample had both genuine and impostor scores: "
            "give persons with both kinds of comparisons"
        )
    low, high = np.quantile(kept, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)
