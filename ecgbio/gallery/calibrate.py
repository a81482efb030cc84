"""Thresholds from the gallery's own people: each enrolled record plays a probe, the rest the gallery.

Why not reuse the model's thresholds: score distributions shift with the population, the devices
and the enrolment conditions, so the people actually enrolled give the most relevant estimate.

What is scored is exactly what verification and identification compute, so the thresholds mean
what they say: for every template ``t`` of person ``p``

* genuine: ``t`` against ``p``'s *other* templates (their max in ``each`` mode, their renormalised
  mean in ``mean`` mode) - needs persons with >= 2 templates;
* impostor: ``t`` against every other person (max over, or mean of, all their templates).

With two templates per person and ``each`` mode this is plain template pairs: genuine =
same-person pairs, impostor = different-person pairs (each pair scored from both sides).

Calibration is refused, with the reason, when it cannot mean much: fewer than ``min_genuine``
genuine scores, or score distributions that overlap so much that the EER exceeds ``max_eer``
(no threshold would separate the people). A FAR point is only set when there are at least
``1 / far`` impostor scores (otherwise the threshold could not be told apart from the maximum).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ecgbio.errors import option
from ecgbio.gallery.errors import GalleryError
from ecgbio.metrics.verification import eer, far_frr, threshold_at_far

MAX_EER = 0.25
MIN_GENUINE = 10
FARS = (0.01, 0.001)
#: at most this many probe templates and impostor scores (sampled, seeded): bounded time and memory
MAX_PROBES = 5000
MAX_IMPOSTOR = 2_000_000


def calibration_scores(
    vectors: np.ndarray, owners: np.ndarray, mode: str = "each", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) leave-one-template-out scores; see the module doc."""
    vectors = np.asarray(vectors, np.float32)
    owners = np.asarray(owners)
    order = np.argsort(owners, kind="stable")
    vectors, owners = vectors[order], owners[order]
    persons, starts, counts = np.unique(owners, return_index=True, return_counts=True)
    column_of = np.searchsorted(persons, owners)  # person index of each template
    rng = np.random.default_rng(seed)
    probes = np.arange(len(vectors))
    if len(probes) > MAX_PROBES:
        probes = np.sort(rng.choice(probes, MAX_PROBES, replace=False))
    if mode == "mean":
        sums = np.add.reduceat(vectors.astype(np.float64), starts, axis=0)
    genuine: list[np.ndarray] = []
    impostor: list[np.ndarray] = []
    budget = max(1, MAX_IMPOSTOR // max(len(probes), 1))
    chunk = max(1, min(1024, (1 << 25) // max(len(vectors), 1)))
    for begin in range(0, len(probes), chunk):
        rows = probes[begin : begin + chunk]
        mine = column_of[rows]
        if mode == "mean":
            per_person = _normalise(sums) @ vectors[rows].T  # (persons, rows)
            per_person = per_person.T
            own = sums[mine] - vectors[rows]
            alone = counts[mine] < 2
            own_score = np.einsum("ij,ij->i", _normalise(own), vectors[rows])
        else:
            sims = vectors[rows] @ vectors.T  # (rows, templates)
            sims[np.arange(len(rows)), rows] = -np.inf  # never against itself
            per_person = np.maximum.reduceat(sims, starts, axis=1)
            alone = counts[mine] < 2
            own_score = per_person[np.arange(len(rows)), mine]
        genuine.append(own_score[~alone])
        mask = np.ones(per_person.shape, bool)
        mask[np.arange(len(rows)), mine] = False
        scores = per_person[mask]
        if scores.size > budget * len(rows):
            scores = rng.choice(scores, budget * len(rows), replace=False)
        impostor.append(scores)
    gen = np.concatenate(genuine) if genuine else np.zeros(0)
    imp = np.concatenate(impostor) if impostor else np.zeros(0)
    return gen.astype(np.float64), imp.astype(np.float64)


def calibrate(
    vectors: np.ndarray,
    owners: np.ndarray,
    mode: str = "each",
    max_eer: float = MAX_EER,
    min_genuine: int = MIN_GENUINE,
    fars: tuple[float, ...] = FARS,
    seed: int = 0,
    where: str = "",
) -> dict[str, Any]:
    """A thresholds table (the ``thresholds.json`` format) plus what it was computed from.

    Raises:
        GalleryError: too few genuine scores, no impostors, or an EER above ``max_eer``.
    """
    if isinstance(min_genuine, bool) or not isinstance(min_genuine, (int, np.integer)):
        raise GalleryError(
            f"--min-genuine must be a whole number, got {min_genuine!r}", where or None
        )
    if min_genuine < 1:
        raise GalleryError(f"--min-genuine must be >= 1, got {min_genuine}", where or None)
    if not 0 < max_eer <= 1:  # NaN too: it would switch the overlap check off
        raise GalleryError(f"--max-eer must be in (0, 1], got {max_eer}", where or None)
    owners = np.asarray(owners)
    multi = int(np.sum(np.unique(owners, return_counts=True)[1] >= 2)) if owners.size else 0
    if len(np.unique(owners)) < 2:
        raise GalleryError(
            "cannot calibrate: need at least two enrolled persons (impostor scores); nothing stored",
            where or None,
        )
    gen, imp = calibration_scores(vectors, owners, mode, seed)
    if gen.size < min_genuine:
        append = option("--append", "mode='append'")
        raise GalleryError(
            f"cannot calibrate yet: it compares each person's records with each other (genuine "
            f"scores), so it needs persons enrolled from two or more records; this gallery gives "
            f"{gen.size} genuine scores from {multi} such persons (need {min_genuine}): enrol "
            f"another record of more persons ({append}); nothing "
            "stored",
            where or None,
        )
    result = eer(gen, imp)
    if result.eer > max_eer:
        raise GalleryError(
            f"cannot calibrate: genuine and impostor scores overlap too much (EER {result.eer:.1%} "
            f"> {max_eer:.0%} on {gen.size} genuine and {imp.size} impostor scores); no threshold "
            "separates these persons; nothing stored",
            where or None,
        )
    table: dict[str, Any] = {"eer": {"threshold": result.threshold, "far": result.eer}}
    skipped = []
    for far in fars:
        if imp.size * far < 1:
            skipped.append(far)
            continue
        threshold = threshold_at_far(gen, imp, far)
        if not np.isfinite(threshold):
            skipped.append(far)
            continue
        measured_far, frr = far_frr(gen, imp, threshold)
        table[f"far={far:g}"] = {"threshold": threshold, "far_measured": measured_far, "frr": frr}
    return {
        "points": table,
        "eer": result.eer,
        "genuine": int(gen.size),
        "impostor": int(imp.size),
        "persons": len(np.unique(owners)),
        "persons_multi": multi,
        "skipped_fars": skipped,
        "template_mode": mode,
    }


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
