"""Every (earlier, later) record pair of a person as a trial, with intervals over persons.

Why: enrolling each person from their earliest record only and probing with the later ones uses
few of the cross-session comparisons a small validation set holds, and a rank-1 on about a hundred
persons moves by several points from one variant to the next by chance. Here every earlier record
of a person enrols once against every later one:

- identification trial (earlier ``e``, later ``l`` of person ``p``): the gallery is ``e`` and the
  earliest record of every other person; a hit when ``l`` scores higher with ``e`` than with any
  other person's record (ties are misses);
- verification: genuine = every (earlier, later) pair of a person, impostor = every pair of records
  of two different persons, owned by the later record's person.

Intervals resample persons (all comparisons of a drawn person, once per draw), because comparisons
of one person are correlated; :func:`paired_difference` draws the same persons for two models, so
the interval of their difference is narrower than either model's own and says whether one is
better beyond the noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgbio.errors import ConfigError
from ecgbio.metrics.verification import eer


@dataclass(frozen=True)
class PairScores:
    """The raw material of pair figures, as plain arrays (saved with ``np.savez``).

    ``hit`` / ``hit_person``: one entry per identification trial; ``genuine`` / ``impostor`` with
    the owning person of each score.
    """

    hit: np.ndarray
    hit_person: np.ndarray
    genuine: np.ndarray
    genuine_person: np.ndarray
    impostor: np.ndarray
    impostor_person: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def load_pair_scores(path: str | Path) -> PairScores:
    """Read what :meth:`PairScores.arrays` saved (no pickle: plain arrays only)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return PairScores(**{k: data[k] for k in PairScores.__dataclass_fields__})
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"not a pair-scores file ({exc})", path) from exc


def pair_scores(templates: np.ndarray, persons: np.ndarray, order: np.ndarray) -> PairScores:
    """Trials and comparisons from record templates (unit rows), their persons and their time
    order (any sortable key: a record's rank among its person's records)."""
    templates = np.asarray(templates, np.float32)
    persons = np.asarray(persons).astype(str)
    order = np.asarray(order)
    if not len(templates) == len(persons) == len(order):
        raise ConfigError("templates, persons and order must have one entry per record")
    sort = np.lexsort((order, persons))
    templates, persons = templates[sort], persons[sort]
    scores = templates @ templates.T
    same = persons[:, None] == persons[None, :]
    later = np.triu(np.ones_like(same), k=1)  # (i, j): i before j in (person, order)
    first = np.r_[True, persons[1:] != persons[:-1]]  # each person's earliest record
    enrol_of_other = np.where(first[None, :] & ~same, scores, -np.inf).max(axis=1)
    e_idx, l_idx = np.nonzero(same & later)
    hit = scores[l_idx, e_idx] > enrol_of_other[l_idx]
    imp_i, imp_j = np.nonzero(~same & later)
    return PairScores(
        hit=hit,
        hit_person=persons[l_idx],
        genuine=scores[l_idx, e_idx].astype(np.float64),
        genuine_person=persons[l_idx],
        impostor=scores[imp_i, imp_j].astype(np.float64),
        impostor_person=persons[imp_j],
    )


def pair_figures(ps: PairScores, n_boot: int = 1000, seed: int = 0) -> dict[str, object]:
    """Rank-1 and EER over all pairs, each with a 95 % interval over persons (``n_boot`` 0: none).
    Without a genuine or an impostor comparison (persons of one record each) there is nothing to
    measure: the figures are ``{}``."""
    if not ps.genuine.size or not ps.impostor.size:
        return {}
    out: dict[str, object] = {
        "rank1": float(ps.hit.mean()) if ps.hit.size else float("nan"),
        "eer": float(eer(ps.genuine, ps.impostor).eer),
        "trials": int(ps.hit.size),
        "persons": int(np.unique(ps.hit_person).size),
        "genuine_scores": int(ps.genuine.size),
        "impostor_scores": int(ps.impostor.size),
    }
    if n_boot:
        weights = _person_weights(_persons_of(ps), n_boot, seed)
        rank1, eers = _boot_figures(ps, weights)
        out["rank1_ci"] = _interval(rank1)
        out["eer_ci"] = _interval(eers)
    return out


def paired_difference(
    a: PairScores, b: PairScores, n_boot: int = 1000, seed: int = 0
) -> dict[str, object]:
    """``a`` minus ``b`` on the same trials: rank-1 and EER differences with 95 % intervals from
    one person resampling shared by both (so what the two have in common cancels), and the same
    for rank-1 minus EER (``score_diff``), the figure training selects epochs on."""
    if not (
        np.array_equal(a.hit_person, b.hit_person)
        and np.array_equal(a.impostor_person, b.impostor_person)
    ):
        raise ConfigError("paired_difference needs the same trials (same persons and records)")
    if not (a.genuine.size and a.impostor.size):
        raise ConfigError("paired_difference needs genuine and impostor comparisons")
    weights = _person_weights(_persons_of(a), n_boot, seed)
    r_a, e_a = _boot_figures(a, weights)
    r_b, e_b = _boot_figures(b, weights)
    fa, fb = pair_figures(a, 0), pair_figures(b, 0)
    return {
        "rank1_diff": float(fa["rank1"]) - float(fb["rank1"]),  # type: ignore[arg-type]
        "rank1_diff_ci": _interval(r_a - r_b),
        "eer_diff": float(fa["eer"]) - float(fb["eer"]),  # type: ignore[arg-type]
        "eer_diff_ci": _interval(e_a - e_b),
        "score_diff": (float(fa["rank1"]) - float(fa["eer"]))  # type: ignore[arg-type]
        - (float(fb["rank1"]) - float(fb["eer"])),  # type: ignore[arg-type]
        "score_diff_ci": _interval((r_a - e_a) - (r_b - e_b)),
        "persons": fa["persons"],
        "trials": fa["trials"],
    }


def _persons_of(ps: PairScores) -> np.ndarray:
    return np.unique(np.concatenate([ps.hit_person, ps.genuine_person, ps.impostor_person]))


def _person_weights(persons: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(persons, table): how often each person is drawn in each resample, (n_boot, persons)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(persons), size=(n_boot, len(persons)))
    table = np.stack([np.bincount(d, minlength=len(persons)) for d in draws]).astype(np.float64)
    return persons, table


def _boot_figures(
    ps: PairScores, weights: tuple[np.ndarray, np.ndarray], chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 and EER of every resample (rows of the weight table), ``chunk`` rows at a time so
    that memory stays bounded (resamples x comparisons)."""
    persons, table = weights
    hit_c, gen_c, imp_c = (
        np.searchsorted(persons, owner)
        for owner in (ps.hit_person, ps.genuine_person, ps.impostor_person)
    )
    scores = np.concatenate([ps.genuine, ps.impostor])
    order = np.argsort(-scores, kind="stable")
    is_gen = order < ps.genuine.size
    owner = np.concatenate([gen_c, imp_c])[order]
    rank1 = np.full(len(table), np.nan)
    eers = np.full(len(table), np.nan)
    for start in range(0, len(table), chunk):
        t = table[start : start + chunk]
        w_hit = t[:, hit_c]
        total = w_hit.sum(axis=1)
        rank1[start : start + chunk] = np.where(
            total > 0, (w_hit * ps.hit).sum(axis=1) / np.maximum(total, 1e-12), np.nan
        )
        eers[start : start + chunk] = _weighted_eers(t[:, owner], is_gen)
    return rank1, eers


def _weighted_eers(w: np.ndarray, is_gen: np.ndarray) -> np.ndarray:
    """EER of each row of weights ``w`` over comparisons sorted by decreasing score: FAR and FRR
    at every threshold, interpolated linearly where FAR - FRR changes sign (as
    :func:`~ecgbio.metrics.verification.eer`)."""
    wg, wi = np.where(is_gen, w, 0.0), np.where(is_gen, 0.0, w)
    g_total, i_total = wg.sum(axis=1, keepdims=True), wi.sum(axis=1, keepdims=True)
    ok = (g_total[:, 0] > 0) & (i_total[:, 0] > 0)
    far = np.cumsum(wi, axis=1) / np.maximum(i_total, 1e-12)
    frr = 1 - np.cumsum(wg, axis=1) / np.maximum(g_total, 1e-12)
    far = np.concatenate([np.zeros((len(w), 1)), far], axis=1)
    frr = np.concatenate([np.ones((len(w), 1)), frr], axis=1)
    diff = far - frr  # non-decreasing along the thresholds
    k = np.maximum(np.argmax(diff >= 0, axis=1), 1)
    rows = np.arange(len(w))
    d0, d1 = diff[rows, k - 1], diff[rows, k]
    lam = np.where(d1 > d0, -d0 / np.where(d1 > d0, d1 - d0, 1.0), 0.0)
    value = far[rows, k - 1] + lam * (far[rows, k] - far[rows, k - 1])
    return np.where(ok, value, np.nan)


def _interval(values: np.ndarray, alpha: float = 0.05) -> list[float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return [float("nan"), float("nan")]
    return [float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))]
