"""Identification (one-to-many) accuracy from a probe x gallery score matrix.

An identification system compares each probe (search) with every template of a gallery of
enrolled persons and ranks the persons by score. Names follow ISO/IEC 19795-1 and NIST's face
recognition vendor tests:

* Closed set (every probe's person is enrolled): the cumulative match characteristic,
  ``CMC(k)`` = fraction of probes whose true person is ranked within the top ``k``
  (:func:`cmc`); rank-1 accuracy is ``CMC(1)`` (:func:`rank_k_accuracy`).
* Open set (some probes' persons are not enrolled): a mated search (person enrolled) is
  detected and identified when its true person is at rank 1 and scores at least the threshold;
  DIR (detection and identification rate, ``1 - FNIR``) is the fraction of mated searches so
  identified. A non-mated search is a false positive when its best score reaches the threshold;
  FPIR is the fraction of non-mated searches that are (:func:`dir_at_fpir`).

Conventions:

* ``scores[i, j]`` compares probe ``i`` with gallery template ``j``; higher = more similar.
* A person may have several templates: a person's score is the maximum over their templates,
  and ranks are over persons, not templates.
* Ties are broken pessimistically: the true person's rank is the number of gallery persons whose
  score is >= the true person's score (itself included), so a tie never helps. A constant
  score matrix therefore gives rank = number of persons, not 1.
* Labels may be any sortable ids (ints or strings), compared by equality.

Invalid input raises :class:`~ecgbio.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ecgbio.errors import ConfigError
from ecgbio.metrics._validation import encode_ids
from ecgbio.metrics.verification import _accept_counts, _best_at_rate, _fraction

__all__ = ["cmc", "dir_at_fpir", "rank_k_accuracy"]


class _Searches:
    """A validated score matrix reduced to persons: per-person scores and each probe's mate."""

    def __init__(self, scores: ArrayLike, gallery_labels: ArrayLike, probe_labels: ArrayLike):
        matrix = np.asarray(scores)
        gallery = np.asarray(gallery_labels)
        probes = np.asarray(probe_labels)
        for name, labels in (("gallery", gallery), ("probe", probes)):
            if labels.ndim != 1:
                raise ConfigError(f"{name} labels must be a 1-D array, got shape {labels.shape}")
            if labels.size == 0:
                raise ConfigError(f"no {name} labels: need at least one")
        if matrix.dtype.kind not in "biuf":
            raise ConfigError(f"scores must be numbers, got dtype {matrix.dtype}")
        if matrix.shape != (probes.size, gallery.size):
            raise ConfigError(
                f"scores must be (probes, gallery templates) = ({probes.size}, {gallery.size}), "
                f"got shape {matrix.shape}"
            )
        matrix = matrix.astype(np.float64, copy=False)
        if not np.all(np.isfinite(matrix)):
            bad = int(np.count_nonzero(~np.isfinite(matrix)))
            raise ConfigError(f"scores contain {bad} NaN or infinite value(s)")
        ids, gallery_codes, probe_codes = encode_ids(
            gallery, probes, ("gallery", "probe"), "labels"
        )

        # Person scores: max over each person's templates (columns grouped by person).
        persons = np.unique(gallery_codes)  # sorted codes of enrolled persons
        order = np.argsort(gallery_codes, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(gallery_codes[order]) != 0])
        self.person_scores = np.maximum.reduceat(matrix[:, order], starts, axis=1)
        self.n_persons = persons.size
        # Column of each probe's true person, or -1 when not enrolled (non-mated search).
        column = np.searchsorted(persons, probe_codes)
        found = column < persons.size
        found[found] = persons[column[found]] == probe_codes[found]
        self.mate = np.where(found, column, -1)
        self.ids = ids
        self.probe_codes = probe_codes

    @property
    def mated(self) -> np.ndarray:
        """Boolean mask of probes whose person is enrolled."""
        return self.mate >= 0

    def true_scores_and_ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """Score and pessimistic rank (1-based) of the true person, for the mated probes."""
        rows = np.flatnonzero(self.mated)
        person_scores = self.person_scores[rows]
        true = person_scores[np.arange(rows.size), self.mate[rows]]
        ranks = np.count_nonzero(person_scores >= true[:, None], axis=1)  # includes itself
        return true, ranks


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def cmc(
    scores: ArrayLike,
    gallery_labels: ArrayLike,
    probe_labels: ArrayLike,
    max_rank: int | None = None,
) -> np.ndarray:
    """Closed-set cumulative match characteristic: ``out[k - 1]`` = fraction with rank <= k.

    Args:
        scores: (probes, gallery templates) comparison scores, higher = more similar.
        gallery_labels: person id of each gallery template (several templates per person allowed;
            a person scores the maximum over their templates).
        probe_labels: person id of each probe; every one must be enrolled (closed set).
        max_rank: length of the curve; defaults to the number of gallery persons. Ranks beyond
            the number of persons have CMC 1.0.

    Ranks use pessimistic tie-breaking: the number of persons scoring >= the true person.
    """
    searches = _Searches(scores, gallery_labels, probe_labels)
    if not np.all(searches.mated):
        missing = np.unique(searches.ids[searches.probe_codes[~searches.mated]])
        shown = ", ".join(map(str, missing[:5])) + (", ..." if missing.size > 5 else "")
        raise ConfigError(
            f"closed-set identification needs every probe's person in the gallery; "
            f"{missing.size} are not: {shown}"
        )
    length = searches.n_persons if max_rank is None else _positive_int(max_rank, "max_rank")
    _, ranks = searches.true_scores_and_ranks()
    hits = np.bincount(np.minimum(ranks, length + 1) - 1, minlength=length + 1)[:length]
    return np.cumsum(hits) / ranks.size


def rank_k_accuracy(
    scores: ArrayLike, gallery_labels: ArrayLike, probe_labels: ArrayLike, k: int = 1
) -> float:
    """Closed-set rank-k identification rate: fraction of probes whose true person has rank <= k.

    ``k=1`` is the usual identification accuracy. See :func:`cmc` for the conventions.
    """
    k = _positive_int(k, "k")
    return float(cmc(scores, gallery_labels, probe_labels, max_rank=k)[k - 1])


def dir_at_fpir(
    scores: ArrayLike,
    gallery_labels: ArrayLike,
    probe_labels: ArrayLike,
    fpir_target: float,
) -> tuple[float, float]:
    """Open-set rank-1 detection and identification rate at a false positive identification rate.

    Probes whose label is absent from ``gallery_labels`` are non-mated searches; the others are
    mated. At threshold ``t`` (a candidate is returned when its score >= ``t``):

    * ``FPIR(t)``: fraction of non-mated searches whose best person score is >= ``t``;
    * ``DIR(t)``: fraction of mated searches whose true person is at rank 1 (pessimistic ties:
      no other person scores >= it) with score >= ``t``.

    The threshold is the lowest one with ``FPIR(t) <= fpir_target`` (conservative, as
    :func:`~ecgbio.metrics.verification.tar_at_far`: no interpolation), chosen among the scores
    that can change DIR or FPIR (rank-1 true scores and non-mated best scores) and ``+inf``, and
    it maximises DIR under that constraint. ``1 - DIR`` is the FNIR.

    Returns:
        ``(dir, threshold)``.
    """
    target = _fraction(fpir_target, "fpir_target")
    searches = _Searches(scores, gallery_labels, probe_labels)
    n_mated = int(np.count_nonzero(searches.mated))
    if n_mated == 0:
        raise ConfigError("open-set identification needs mated probes (persons in the gallery)")
    if n_mated == searches.mate.size:
        raise ConfigError(
            "open-set identification needs non-mated probes (persons absent from the gallery)"
        )
    true, ranks = searches.true_scores_and_ranks()
    hits = true[ranks == 1]
    nonmated_best = searches.person_scores[~searches.mated].max(axis=1)
    thresholds, hit_acc, false_acc = _accept_counts(hits, nonmated_best)
    return _best_at_rate(thresholds, hit_acc, false_acc, n_mated, nonmated_best.size, target)
