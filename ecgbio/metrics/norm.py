"""Score normalisation against a cohort of impostor embeddings (Z-, T-, S- and adaptive S-norm).

Raw similarity scores are not equally calibrated across persons: some enrolments (or probes)
score high against everybody. Normalisation re-centres each score on how the same enrolment or
probe scores against a cohort of persons known to be impostors (persons absent from both the
gallery and the probes), so that one threshold fits all:

* Z-norm (zero normalisation): per enrolment, ``(s - mean_e) / std_e`` where mean and standard
  deviation are over that enrolment's scores against the cohort;
* T-norm (test normalisation): the same with the probe's scores against the cohort;
* S-norm (symmetric): the average of the Z- and T-normalised scores;
* AS-norm (adaptive S-norm, Matějka et al., Interspeech 2017): S-norm where each side's mean and
  standard deviation use only its ``top_k`` highest cohort scores, i.e. the cohort members most
  similar to that enrolment or probe.

Shapes: ``scores`` is (probes, enrolments); ``enrol_cohort_scores`` is (enrolments, cohort) and
``probe_cohort_scores`` is (probes, cohort). Standard deviations are population ones (``ddof=0``);
a zero one (a constant row of cohort scores) is refused rather than divided by.

:class:`ScoreNormalizer` wraps these for L2-normalised embeddings: it keeps the cohort
embeddings and computes cohort scores as inner products (= cosine similarities).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from ecgbio.errors import ConfigError
from ecgbio.metrics._validation import finite_array

__all__ = ["ScoreNormalizer", "asnorm", "snorm", "tnorm", "znorm"]

#: Tolerance on embedding norms: rows must have L2 norm 1 within this (float32 round-off).
_UNIT_TOL = 1e-3


def _matrix(values: ArrayLike, name: str) -> np.ndarray:
    """A non-empty, finite 2-D float array, or a one-line ConfigError naming ``name``."""
    return finite_array(values, name, ndim=2)


def _cohort_stats(
    cohort_scores: ArrayLike, rows: int, name: str, top_k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each row's cohort scores (of its ``top_k`` highest ones when given)."""
    cohort = _matrix(cohort_scores, f"{name} cohort scores")
    if cohort.shape[0] != rows:
        raise ConfigError(
            f"{name} cohort scores have {cohort.shape[0]} rows, expected {rows} "
            f"(one per {name} of the score matrix)"
        )
    if cohort.shape[1] < 2:
        raise ConfigError(f"cohort has {cohort.shape[1]} member(s): need at least 2")
    if top_k is not None:
        if top_k > cohort.shape[1]:
            raise ConfigError(f"top_k={top_k} exceeds the cohort size {cohort.shape[1]}")
        # the top_k highest of each row (order within them does not matter)
        cohort = np.partition(cohort, cohort.shape[1] - top_k, axis=1)[:, -top_k:]
    mean = cohort.mean(axis=1)
    std = cohort.std(axis=1)
    flat = np.flatnonzero(std == 0.0)
    if flat.size:
        raise ConfigError(
            f"{name} {int(flat[0])} has constant cohort scores (zero spread): cannot normalise"
        )
    return mean, std


def _scores(scores: ArrayLike) -> np.ndarray:
    return _matrix(scores, "scores")


def _top_k(top_k: object) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 2:
        raise ConfigError(f"top_k must be an integer >= 2, got {top_k!r}")
    return int(top_k)


def znorm(scores: ArrayLike, enrol_cohort_scores: ArrayLike) -> np.ndarray:
    """Z-norm: ``(scores[p, e] - mean_e) / std_e`` over enrolment ``e``'s cohort scores.

    Args:
        scores: (probes, enrolments) raw scores.
        enrol_cohort_scores: (enrolments, cohort) scores of each enrolment against the cohort.
    """
    s = _scores(scores)
    mean, std = _cohort_stats(enrol_cohort_scores, s.shape[1], "enrolment")
    return (s - mean[None, :]) / std[None, :]


def tnorm(scores: ArrayLike, probe_cohort_scores: ArrayLike) -> np.ndarray:
    """T-norm: ``(scores[p, e] - mean_p) / std_p`` over probe ``p``'s cohort scores.

    Args:
        scores: (probes, enrolments) raw scores.
        probe_cohort_scores: (probes, cohort) scores of each probe against the cohort.
    """
    s = _scores(scores)
    mean, std = _cohort_stats(probe_cohort_scores, s.shape[0], "probe")
    return (s - mean[:, None]) / std[:, None]


def snorm(
    scores: ArrayLike, enrol_cohort_scores: ArrayLike, probe_cohort_scores: ArrayLike
) -> np.ndarray:
    """S-norm: the average of :func:`znorm` and :func:`tnorm` (symmetric in enrolment and probe)."""
    return (znorm(scores, enrol_cohort_scores) + tnorm(scores, probe_cohort_scores)) / 2.0


def asnorm(
    scores: ArrayLike,
    enrol_cohort_scores: ArrayLike,
    probe_cohort_scores: ArrayLike,
    top_k: int,
) -> np.ndarray:
    """Adaptive S-norm: S-norm with statistics over each side's ``top_k`` highest cohort scores.

    For enrolment ``e`` the cohort is reduced to the ``top_k`` members that score highest against
    ``e`` (its closest impostors), likewise for each probe; ``top_k`` equal to the cohort size is
    plain S-norm.

    Args:
        top_k: number of cohort scores kept per enrolment and per probe (2 <= top_k <= cohort).
    """
    k = _top_k(top_k)
    s = _scores(scores)
    e_mean, e_std = _cohort_stats(enrol_cohort_scores, s.shape[1], "enrolment", top_k=k)
    p_mean, p_std = _cohort_stats(probe_cohort_scores, s.shape[0], "probe", top_k=k)
    z = (s - e_mean[None, :]) / e_std[None, :]
    t = (s - p_mean[:, None]) / p_std[:, None]
    return (z + t) / 2.0


def _embeddings(values: ArrayLike, name: str, dim: int | None = None) -> np.ndarray:
    emb = _matrix(values, f"{name} embeddings")
    if dim is not None and emb.shape[1] != dim:
        raise ConfigError(f"{name} embeddings have dimension {emb.shape[1]}, the cohort's is {dim}")
    norms = np.linalg.norm(emb, axis=1)
    off = np.flatnonzero(np.abs(norms - 1.0) > _UNIT_TOL)
    if off.size:
        raise ConfigError(
            f"{name} embeddings must be L2-normalised rows: row {int(off[0])} has norm "
            f"{norms[off[0]]:.4g}"
        )
    return emb


class ScoreNormalizer:
    """Normalise cosine scores against a cohort of impostor embeddings.

    ``name`` picks the method: ``"none"`` (scores returned unchanged), ``"z"``, ``"t"``, ``"s"``
    or ``"as"`` (adaptive S-norm, which needs ``top_k``). Usage::

        norm = ScoreNormalizer("as", top_k=100).fit(cohort_embeddings)
        normalised = norm(scores, enrol_embeddings, probe_embeddings)

    Embeddings are L2-normalised rows (checked), and cohort scores are inner products, so they
    are on the same scale as cosine ``scores``. The cohort must hold persons that appear neither
    among the enrolments nor among the probes.
    """

    NAMES: ClassVar[tuple[str, ...]] = ("none", "z", "t", "s", "as")

    def __init__(self, name: str = "none", top_k: int | None = None) -> None:
        if name not in self.NAMES:
            raise ConfigError(
                f"unknown score normalisation {name!r}: choose from {', '.join(self.NAMES)}"
            )
        if name == "as":
            if top_k is None:
                raise ConfigError("adaptive S-norm ('as') needs top_k")
            top_k = _top_k(top_k)
        elif top_k is not None:
            raise ConfigError(f"top_k applies only to adaptive S-norm ('as'), not {name!r}")
        self.name = name
        self.top_k = top_k
        self.cohort: np.ndarray | None = None

    def __repr__(self) -> str:
        size = "unfitted" if self.cohort is None else f"cohort={self.cohort.shape[0]}"
        k = f", top_k={self.top_k}" if self.top_k is not None else ""
        return f"ScoreNormalizer({self.name!r}{k}, {size})"

    @property
    def fitted(self) -> bool:
        """Whether a cohort has been given (always true in effect for ``"none"``)."""
        return self.name == "none" or self.cohort is not None

    def fit(self, cohort_embeddings: ArrayLike) -> ScoreNormalizer:
        """Keep the (cohort, dim) impostor embeddings; returns ``self``."""
        cohort = _embeddings(cohort_embeddings, "cohort")
        if cohort.shape[0] < 2:
            raise ConfigError(f"cohort has {cohort.shape[0]} member(s): need at least 2")
        if self.top_k is not None and self.top_k > cohort.shape[0]:
            raise ConfigError(f"top_k={self.top_k} exceeds the cohort size {cohort.shape[0]}")
        self.cohort = cohort
        return self

    def __call__(
        self,
        scores: ArrayLike,
        enrol_embeddings: ArrayLike | None = None,
        probe_embeddings: ArrayLike | None = None,
    ) -> np.ndarray:
        """Normalise (probes, enrolments) ``scores``.

        Args:
            scores: (probes, enrolments) cosine scores.
            enrol_embeddings: (enrolments, dim), needed by ``"z"``, ``"s"`` and ``"as"``.
            probe_embeddings: (probes, dim), needed by ``"t"``, ``"s"`` and ``"as"``.
        """
        s = _scores(scores)
        if self.name == "none":
            return s.copy()
        if self.cohort is None:
            raise ConfigError(
                f"ScoreNormalizer({self.name!r}) is not fitted: call .fit(cohort_embeddings)"
            )
        dim = self.cohort.shape[1]
        enrol_cohort = probe_cohort = None
        if self.name in ("z", "s", "as"):
            enrol = self._side(enrol_embeddings, "enrolment", s.shape[1], dim)
            enrol_cohort = enrol @ self.cohort.T
        if self.name in ("t", "s", "as"):
            probe = self._side(probe_embeddings, "probe", s.shape[0], dim)
            probe_cohort = probe @ self.cohort.T
        if self.name == "z":
            return znorm(s, enrol_cohort)
        if self.name == "t":
            return tnorm(s, probe_cohort)
        if self.name == "s":
            return snorm(s, enrol_cohort, probe_cohort)
        return asnorm(s, enrol_cohort, probe_cohort, top_k=self.top_k)

    def _side(self, embeddings: ArrayLike | None, name: str, rows: int, dim: int) -> np.ndarray:
        """Checked (rows, dim) unit embeddings of the enrolments or the probes."""
        if embeddings is None:
            raise ConfigError(f"{self.name!r} normalisation needs the {name} embeddings")
        emb = _embeddings(embeddings, name, dim)
        if emb.shape[0] != rows:
            raise ConfigError(
                f"{emb.shape[0]} {name} embeddings for {rows} {name}s in the score matrix"
            )
        return emb
