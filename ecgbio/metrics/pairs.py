"""Every (earlier, later) record pair of a person as a trial, with intervals over persons.

Why: enrolling each person from their earliest record only and probing with the later ones uses
few of the cross-session comparisons a small validation set holds, and a rank-1 on about a hundred
persons moves by several points from one variant to the next by chance. Here every earlier record
of a person enrols once against every later one:

- identification trial (earlier ``e``, later ``l`` of person ``p``): the gallery is ``e`` and the
  earliest record of every other person; a hit when ``l`` scores higher with ``e`` than with any
  other person's record (ties are misses);
- verification: genuine = every (earlier, later) pair of a person, impostor = every pair of records
  of two different persons.

Intervals resample persons, because comparisons of one person are correlated: a resample draws
persons with replacement, a trial or a genuine score counts as often as its person was drawn, and
an impostor score, which involves two persons, as often as both were (the product of their
counts), so a person left out of a resample leaves with all their comparisons.
:func:`paired_difference` draws the same persons for two models, so the interval of their
difference is narrower than either model's own and says whether one is better beyond the noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgbio.errors import ConfigError
from ecgbio.metrics.verification import _eer_crossing, eer


@dataclass(frozen=True)
class PairScores:
    """The raw material of pair figures, as plain arrays (saved with ``np.savez``).

    ``hit`` / ``hit_person`` / ``hit_record``: one entry per identification trial (the probe's
    person and record); ``genuine`` with its person; ``impostor`` with the persons of its two
    records (``impostor_person`` the later one's, ``impostor_other`` the other's).
    """

    hit: np.ndarray
    hit_person: np.ndarray
    hit_record: np.ndarray
    genuine: np.ndarray
    genuine_person: np.ndarray
    impostor: np.ndarray
    impostor_person: np.ndarray
    impostor_other: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def load_pair_scores(path: str | Path) -> PairScores:
    """Read what :meth:`PairScores.arrays` saved (no pickle: plain arrays only)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return PairScores(**{k: data[k] for k in PairScores.__dataclass_fields__})
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"not a pair-scores file of this ecgbio ({exc})", path) from exc


def pair_scores(
    templates: np.ndarray,
    persons: np.ndarray,
    order: np.ndarray,
    records: np.ndarray | None = None,
    normalise: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> PairScores:
    """Trials and comparisons from record templates (unit rows), their persons, their time order
    (any sortable key: a record's rank among its person's records) and their ids (default: the
    position). ``normalise(scores, persons, templates)``, when given, maps the (records x records)
    cosine matrix to normalised scores (a score normalisation, with the other persons or an
    outside cohort) before any trial is read from it; all three are in the order it indexes."""
    templates = np.asarray(templates, np.float32)
    persons = np.asarray(persons).astype(str)
    order = np.asarray(order)
    records = np.arange(len(persons)).astype(str) if records is None else np.asarray(records)
    if not len(templates) == len(persons) == len(order) == len(records):
        raise ConfigError("templates, persons, order and records must have one entry per record")
    sort = np.lexsort((order, persons))
    templates, persons, records = templates[sort], persons[sort], records[sort].astype(str)
    scores = templates @ templates.T
    if normalise is not None:
        scores = np.asarray(normalise(scores, persons, templates), dtype=np.float64)
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
        hit_record=records[l_idx],
        genuine=scores[l_idx, e_idx].astype(np.float64),
        genuine_person=persons[l_idx],
        impostor=scores[imp_i, imp_j].astype(np.float64),
        impostor_person=persons[imp_j],
        impostor_other=persons[imp_i],
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
        np.array_equal(a.hit_record, b.hit_record)
        and np.array_equal(a.hit_person, b.hit_person)
        and np.array_equal(a.impostor_person, b.impostor_person)
        and np.array_equal(a.impostor_other, b.impostor_other)
    ):
        raise ConfigError("paired_difference needs the same trials (same persons and records)")
    if not (a.genuine.size and a.impostor.size):
        raise ConfigError("paired_difference needs genuine and impostor comparisons")
    if n_boot < 1:
        raise ConfigError(f"paired_difference needs n_boot >= 1, got {n_boot}")
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
    return np.unique(
        np.concatenate([ps.hit_person, ps.genuine_person, ps.impostor_person, ps.impostor_other])
    )


def _person_weights(persons: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(persons, table): how often each person is drawn in each resample, (n_boot, persons)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(persons), size=(n_boot, len(persons)))
    table = np.stack([np.bincount(d, minlength=len(persons)) for d in draws]).astype(np.int64)
    return persons, table


#: Resample-by-comparison cells handled at once by the bootstrap (bounded memory at any scale).
_CELLS = 4_000_000


def _boot_figures(
    ps: PairScores, weights: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 and EER of every resample (rows of the weight table), a few rows at a time.

    The EER of a resample follows :func:`~ecgbio.metrics.verification.eer` exactly: operating
    points at each distinct score (ties grouped), counts weighted by the resample, the same
    crossing (``_eer_crossing``), so unit weights give ``eer()``'s value.
    """
    persons, table = weights
    code = {name: np.searchsorted(persons, getattr(ps, name)) for name in (
        "hit_person", "genuine_person", "impostor_person", "impostor_other")}  # fmt: skip
    scores = np.concatenate([ps.genuine, ps.impostor])
    order = np.argsort(-scores, kind="stable")
    is_gen = order < ps.genuine.size
    ends = np.flatnonzero(np.r_[scores[order][1:] != scores[order][:-1], True])
    rank1 = np.full(len(table), np.nan)
    eers = np.full(len(table), np.nan)
    chunk = max(1, _CELLS // max(1, scores.size))
    for start in range(0, len(table), chunk):
        t = table[start : start + chunk]
        w_hit = t[:, code["hit_person"]]
        total = w_hit.sum(axis=1)
        rank1[start : start + chunk] = np.where(
            total > 0, (w_hit * ps.hit).sum(axis=1) / np.maximum(total, 1), np.nan
        )
        w = np.concatenate(
            [
                t[:, code["genuine_person"]],
                t[:, code["impostor_person"]] * t[:, code["impostor_other"]],
            ],
            axis=1,
        )[:, order]
        pos = np.cumsum(np.where(is_gen, w, 0), axis=1)[:, ends]
        neg = np.cumsum(np.where(is_gen, 0, w), axis=1)[:, ends]
        n_pos, n_neg = pos[:, -1], neg[:, -1]
        ok = (n_pos > 0) & (n_neg > 0)
        if ok.any():
            rate, _, _ = _eer_crossing(pos[ok], neg[ok], n_pos[ok], n_neg[ok])
            block = np.full(len(t), np.nan)
            block[ok] = rate
            eers[start : start + chunk] = block
        del w, pos, neg
    return rank1, eers


def _interval(values: np.ndarray, alpha: float = 0.05) -> list[float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return [float("nan"), float("nan")]
    return [float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))]
