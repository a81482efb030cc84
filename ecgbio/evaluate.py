"""Model + store + protocol set -> figures: the evaluator shared by training and `ecgbio evaluate`.

Two kinds of held-out data (see :mod:`ecgbio.protocols`):

- a :class:`ClassifySet` is answered by the softmax head: accuracy and cross-entropy, the seed
  notebook's columns;
- a :class:`MatchSet` is answered by embeddings, the biometric way: record templates (mean of unit
  beat embeddings) of gallery and probe records are compared by cosine; closed-set rank-k (CMC),
  verification EER / AUC / TAR at FAR, beat-level rank-1, the same on probes recorded on another day
  than every gallery record of their person, and rank-1 / EER against the number of enrolment beats.

Score normalisation (``norm``, see :func:`gallery_cohort_norm`) recalibrates the cosine scores
against a cohort before the figures are computed; the headline EER comes with a 95 % bootstrap
interval over persons (:func:`ecgbio.metrics.verification.eer_ci`). :func:`evaluate_run` can write
the raw material of the figures beside ``metrics.json`` as ``scores.npz`` (plain arrays, no pickle)
so that ``ecgbio report`` can draw ROC, DET, histograms and CMC without the model.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from ecgbio.backends import EmbeddingBackend
from ecgbio.config import MAX_THREADS, save_json
from ecgbio.embed import embed_rows, module_device, record_templates
from ecgbio.errors import ConfigError
from ecgbio.metrics._validation import encode_ids
from ecgbio.metrics.identification import cmc
from ecgbio.metrics.norm import ScoreNormalizer
from ecgbio.metrics.pairs import PairScores, pair_figures, pair_scores
from ecgbio.metrics.verification import auc, eer, eer_ci, far_frr, tar_at_far, threshold_at_far
from ecgbio.models import IdentityModel
from ecgbio.protocols import ClassifySet, MatchSet, record_order
from ecgbio.store import BeatStore

ENROL_BEATS = (0, 1, 3, 5, 10)  # 0 = all beats of the enrolment record; the first is the headline
FAR_TARGETS = (0.01, 0.001)
NORMS = ScoreNormalizer.NAMES  # none, z, t, s, as
#: Default score normalisation of ``evaluate_run`` and ``ecgbio evaluate``: chosen by
#: ``experiments/score_norm.py`` on the PTB-XL subset (results/score-norm.json).
DEFAULT_NORM = "none"
#: Adaptive S-norm keeps this share of the cohort (the closest impostors), within the bounds below.
AS_TOP_FRACTION = 0.2
AS_TOP_K_MAX = 300
#: Bootstrap resamples (over persons) of the headline EER's 95 % interval; 0 = no interval.
CI_BOOT = 1000


@torch.no_grad()
def evaluate_classify(
    model: IdentityModel, store: BeatStore, cset: ClassifySet, batch_size: int = 1024
) -> dict[str, float]:
    """Softmax accuracy and mean cross-entropy (no label smoothing) on held-out beats."""
    model.eval()
    device = module_device(model)
    correct, loss_sum = 0, 0.0
    for start in range(0, len(cset.rows), batch_size):
        x = torch.from_numpy(store.waves(cset.rows[start : start + batch_size])).to(device)
        y = torch.from_numpy(cset.labels[start : start + batch_size]).long().to(device)
        logits = model.softmax(model.backbone(x)).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    n = max(len(cset.rows), 1)
    return {"accuracy": correct / n, "loss": loss_sum / n, "beats": len(cset.rows)}


def _encoder(model: IdentityModel | EmbeddingBackend) -> torch.nn.Module | EmbeddingBackend:
    """What embeds the beats: a backend as it is (ONNX Runtime, ``evaluate --backend onnx``), the
    backbone of a torch model."""
    return model if isinstance(model, EmbeddingBackend) else model.backbone


def evaluate_match(
    model: IdentityModel | EmbeddingBackend,
    store: BeatStore,
    mset: MatchSet,
    enrol_beats: Sequence[int] = (0,),
    classes: Sequence[str] | None = None,
    batch_size: int = 1024,
    norm: str = "none",
    ci_boot: int = 0,
    scores_out: dict[str, np.ndarray] | None = None,
    embeddings_out: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Biometric figures for gallery vs probe records (see module docstring).

    Args:
        enrol_beats: build gallery templates from the first k beats (0 = all); the first entry is
            the headline, the others go to ``by_enrol_beats``.
        model: a torch model, or an :class:`~ecgbio.backends.EmbeddingBackend` (which has no
            softmax head: ``classes`` then must be None).
        classes: softmax classes, when the probe persons are training classes (closed set): adds
            the softmax head's beat- and record-level accuracy.
        norm: score normalisation of the template scores (:func:`gallery_cohort_norm`); the
            beat-level rank-1 stays on raw cosine (it ranks single beats, not comparisons).
        ci_boot: bootstrap resamples of the headline EER interval (0, the default: none, so that
            training's per-epoch validation does not pay ~1 s an epoch for an interval it never
            reads; :func:`evaluate_run` asks for ``CI_BOOT``).
        scores_out: when given, filled with the headline's arrays (see :func:`score_arrays`).
        embeddings_out: when given, filled with the beat embeddings of ``gallery`` and ``probe``
            (so :func:`evaluate_pairs` on the same set need not embed the beats again).
    """
    if classes is not None and isinstance(model, EmbeddingBackend):
        raise ConfigError("the closed-set softmax figures need the torch model (its softmax head)")
    index = store.index
    g_emb = embed_rows(_encoder(model), store, mset.gallery, batch_size)
    p_emb = embed_rows(_encoder(model), store, mset.probe, batch_size)
    if embeddings_out is not None:
        embeddings_out.update(gallery=g_emb, probe=p_emb)
    g_records = index["record"].to_numpy()[mset.gallery]
    p_records = index["record"].to_numpy()[mset.probe]
    person_of = dict(zip(index["record"], index["person"], strict=True))
    session_of = dict(zip(index["record"], index["session"], strict=True))
    p_ids, p_templates = record_templates(p_emb, p_records)
    p_persons = np.array([person_of[r] for r in p_ids])

    out: dict[str, Any] = {}
    by_k: dict[str, Any] = {}
    for i, k in enumerate(enrol_beats):
        g_ids, g_templates = record_templates(g_emb, g_records, k)
        g_persons = np.array([person_of[r] for r in g_ids])
        scores = gallery_cohort_norm(
            p_templates @ g_templates.T, g_templates @ g_templates.T, g_persons, p_persons, norm
        )
        boot = ci_boot if i == 0 else 0
        figures = match_figures(scores, g_persons, p_persons, ci_boot=boot)
        other_day = other_day_probes(p_ids, p_persons, g_ids, g_persons, session_of)
        has_other_day = bool(other_day.any() and other_day.sum() < len(other_day))
        if has_other_day:
            figures["other_day"] = match_figures(
                scores[other_day], g_persons, p_persons[other_day], ci_boot=boot
            )
        if i == 0:
            out.update(figures)
            out["beat_rank1"] = _beat_rank1(p_emb, p_records, person_of, g_templates, g_persons)
            if scores_out is not None:
                scores_out.update(score_arrays(scores, g_persons, p_persons))
                if has_other_day:
                    od = score_arrays(scores[other_day], g_persons, p_persons[other_day])
                    scores_out.update({f"other_day_{key}": v for key, v in od.items()})
        by_k[str(k or "all")] = {key: figures[key] for key in ("rank1", "eer")}
    if len(enrol_beats) > 1:  # in increasing enrolment, whichever was the headline: 1, 3 ... all
        rank = {str(k or "all"): k or float("inf") for k in enrol_beats}
        out["by_enrol_beats"] = dict(sorted(by_k.items(), key=lambda kv: rank[kv[0]]))
    out["norm"] = norm
    if classes is not None and not isinstance(model, EmbeddingBackend):
        out["softmax"] = _softmax_closed_set(
            model, store, mset.probe, p_records, person_of, list(classes), batch_size
        )
    return out


def evaluate_pairs(
    model: IdentityModel | EmbeddingBackend,
    store: BeatStore,
    mset: MatchSet,
    ci_boot: int = 0,
    batch_size: int = 1024,
    embeddings: dict[str, np.ndarray] | None = None,
    norm: str = "none",
    cohort: np.ndarray | None = None,
    blind_probes: bool = False,
) -> tuple[dict[str, Any], PairScores]:
    """Every (earlier, later) record pair of the match set's persons (see
    :mod:`ecgbio.metrics.pairs`): figures (with 95 % intervals over persons when ``ci_boot``) and
    the scores behind them, for comparing two models on the same trials. ``embeddings``: what
    :func:`evaluate_match` embedded of the same set (``embeddings_out``), reused. ``norm``: a
    score normalisation (:func:`pair_cohort_norm`) with the records of the other persons as each
    side's cohort, or, with ``cohort`` (unit templates of persons outside the set, such as
    the model's training records), with that fixed cohort (:class:`ScoreNormalizer`; adaptive
    S-norm keeps ``AS_TOP_FRACTION`` of it, at most ``AS_TOP_K_MAX``). ``blind_probes``: see
    :func:`pair_cohort_norm`."""
    rows = np.concatenate([mset.gallery, mset.probe])
    if embeddings is not None:
        emb = np.concatenate([embeddings["gallery"], embeddings["probe"]])
    else:
        emb = embed_rows(_encoder(model), store, rows, batch_size)
    templates, persons, order, ids = record_pair_inputs(store, rows, emb)
    normalise = None
    if norm != "none" and cohort is not None:
        top_k = int(np.clip(round(AS_TOP_FRACTION * len(cohort)), 2, AS_TOP_K_MAX))
        fixed = ScoreNormalizer(norm, top_k if norm == "as" else None).fit(cohort)

        def normalise(scores: np.ndarray, persons: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return fixed(scores, rows, rows)

    elif norm != "none":

        def normalise(scores: np.ndarray, persons: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return pair_cohort_norm(scores, persons, norm, blind_probes)

    ps = pair_scores(templates, persons, order, ids, normalise)
    return pair_figures(ps, ci_boot), ps


def record_pair_inputs(
    store: BeatStore, rows: np.ndarray, embeddings: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`~ecgbio.metrics.pairs.pair_scores` takes, from the beat ``embeddings`` of the
    store's ``rows``: one template per record, and each record's person, rank among its
    person's records (0 = earliest) and id."""
    ids, templates = record_templates(embeddings, store.index["record"].to_numpy()[rows])
    rank = record_order(store)
    person_of = dict(zip(store.index["record"], store.index["person"], strict=True))
    persons = np.array([person_of[r] for r in ids])
    return templates, persons, np.array([rank[r] for r in ids]), np.asarray(ids)


# --- score normalisation -------------------------------------------------------------------------
def pair_cohort_norm(
    scores: np.ndarray,
    persons: np.ndarray,
    name: str,
    blind_probes: bool = False,
    top_k: int | None = None,
) -> np.ndarray:
    """Normalise the square (records x records) cosine matrix of
    :func:`~ecgbio.metrics.pairs.pair_scores` (row: the probe, column: the enrolment), each
    side's cohort the records of other persons.

    Every record is a probe of some trials and an enrolment of others, so the cohorts come from
    the same records as the trials, and one rule keeps that from flattering the figures: an
    enrolment's cohort (Z side) leaves out the probe of the trial at hand. A gallery fixes an
    enrolment's statistics before any probe arrives; with the probe in the cohort, a high
    impostor score would raise its own enrolment's mean and so push itself down, which a genuine
    score (whose probe shares the enrolment's person, outside the cohort) never is.

    A probe's cohort (T side) is every record of the other persons, or, with ``blind_probes``,
    every record but the probe itself (its own person's included), as a deployed gallery's must
    be: it cannot leave out a person it has not recognised yet. Formulas as in
    :func:`gallery_cohort_norm` (``"as"``: each side's ``top_k`` highest cohort scores).
    """
    if name not in NORMS:
        raise ConfigError(f"unknown score normalisation {name!r}: choose from {', '.join(NORMS)}")
    if name == "none":
        return scores
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or len(persons) != len(scores):
        raise ConfigError("pair_cohort_norm needs the square record-by-record matrix and persons")
    codes = np.unique(np.asarray(persons), return_inverse=True)[1]
    same = codes[:, None] == codes[None, :]
    cohort_size = len(codes) - int(np.bincount(codes).max())
    if cohort_size < 3:
        raise ConfigError(
            f"{name!r} score normalisation needs >= 3 records of other persons, got {cohort_size}"
        )
    if name == "as":
        # one of an enrolment's cohort may be a trial's probe, left out: top_k + 1 must exist
        top_k = top_k or int(np.clip(round(AS_TOP_FRACTION * cohort_size), 2, AS_TOP_K_MAX))
        top_k = min(top_k, cohort_size - 1)
    elif top_k is not None:
        raise ConfigError(f"top_k applies only to adaptive S-norm ('as'), not {name!r}")
    z = t = None
    if name in ("z", "s", "as"):
        mean, std = _enrolment_stats_without_probe(scores, ~same, top_k if name == "as" else None)
        z = (scores - mean) / std
    if name in ("t", "s", "as"):
        keep = ~np.eye(len(scores), dtype=bool) if blind_probes else ~same
        mean, std = _cohort_stats(scores, codes, codes, top_k if name == "as" else None, keep)
        t = (scores - mean[:, None]) / std[:, None]
    if z is None:
        return t  # type: ignore[return-value]
    return z if t is None else (z + t) / 2.0


def _enrolment_stats_without_probe(
    scores: np.ndarray, cohort: np.ndarray, top_k: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(probes, enrolments) means and stds of each enrolment's cohort scores (column ``e``, rows
    where ``cohort``), the probe of each cell left out: over all of them, or over the ``top_k``
    highest, the next one standing in when the probe is among them."""
    inside = cohort.astype(np.float64)
    if top_k is None:
        count = inside.sum(axis=0)[None, :] - inside
        total = (scores * inside).sum(axis=0)[None, :] - scores * inside
        squares = (scores**2 * inside).sum(axis=0)[None, :] - scores**2 * inside
    else:
        ranked = -np.sort(-np.where(cohort, scores, -np.inf), axis=0)[: top_k + 1]
        top, after = ranked[:top_k], ranked[top_k]
        among = cohort & (scores >= top[-1][None, :])  # the probe is one of the top_k
        count = np.full(scores.shape, float(top_k))
        total = top.sum(axis=0)[None, :] + np.where(among, after[None, :] - scores, 0.0)
        squares = (top**2).sum(axis=0)[None, :] + np.where(
            among, after[None, :] ** 2 - scores**2, 0.0
        )
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    if np.any(std == 0.0):
        raise ConfigError("cohort scores have zero spread for some enrolment: cannot normalise")
    return mean, std


def gallery_cohort_norm(
    scores: np.ndarray,
    gallery_scores: np.ndarray,
    gallery_persons: np.ndarray,
    probe_persons: np.ndarray,
    name: str,
    top_k: int | None = None,
) -> np.ndarray:
    """Normalise (probes x gallery) cosine scores with the gallery's other persons as cohort.

    The cohort of enrolment ``e`` (Z side) is every gallery template of a person other than
    ``e``'s; the cohort of probe ``p`` (T side) is every gallery template of a person other than
    ``p``'s. Why this one:

    * it exists for any store and any protocol that makes a gallery (>= 3 persons): ECG-ID, for
      one, has no persons outside its gallery to spare, and the model's training store may not be
      on the user's machine;
    * it is drawn from the data under test (same device, same conditions), which is what a
      cohort is for: to measure how high impostor scores run for this enrolment and this probe;
    * each side leaves its own person out, so a genuine score never enters its own statistics
      (as :class:`~ecgbio.metrics.norm.ScoreNormalizer` requires of a cohort), and the
      statistics are fixed per enrolment and per probe: T-norm keeps each probe's ranking, as
      with any fixed cohort. Leaving out the other person of each comparison too was tried and
      dropped: the cohort then changes with the candidate, and a strong impostor, absent from
      its own cohort, gains against the genuine score (rank-1 fell by 6 to 11 points on PTB-XL).

    What differs from an external cohort: the impostor candidates are cohort members too (as in
    any gallery-as-cohort scheme), and leaving the probe's own person out uses its label, which
    an evaluation knows and a deployed gallery does not (there, the probe's mate would stay in
    its cohort); the figures are those of a cohort without the probe's person.

    ``"s"`` averages the Z and T scores; ``"as"`` (adaptive S-norm) takes each side's statistics
    over its ``top_k`` highest cohort scores (default: ``AS_TOP_FRACTION`` of the cohort, 2 to
    ``AS_TOP_K_MAX``). The formulas are those of :mod:`ecgbio.metrics.norm`; its functions take a
    cohort score matrix with one equal-length row per enrolment or probe, and here the cohort's
    length changes with the row (a person may have several gallery templates, a probe's person
    none), so the statistics are computed here over masked rows. ``"none"`` returns ``scores``.

    Args:
        scores: (probes, gallery) cosine scores of probe vs gallery templates.
        gallery_scores: (gallery, gallery) cosine scores of the gallery templates between them.
        gallery_persons, probe_persons: person ids of the gallery templates and the probes.
        name: ``"none"``, ``"z"``, ``"t"``, ``"s"`` or ``"as"``.
        top_k: adaptive S-norm only (see above).
    """
    if name not in NORMS:
        raise ConfigError(f"unknown score normalisation {name!r}: choose from {', '.join(NORMS)}")
    if name == "none":
        return scores
    _, g_codes, p_codes = encode_ids(
        np.asarray(gallery_persons), np.asarray(probe_persons), ("gallery", "probe"), "persons"
    )
    cohort_size = len(g_codes) - int(np.bincount(g_codes).max())
    if cohort_size < 2:
        raise ConfigError(
            f"{name!r} score normalisation uses the gallery's other persons as cohort and needs "
            f">= 3 gallery persons, got {len(np.unique(g_codes))} (use norm 'none')"
        )
    if name == "as":
        top_k = top_k or int(np.clip(round(AS_TOP_FRACTION * cohort_size), 2, AS_TOP_K_MAX))
        if top_k > cohort_size:
            raise ConfigError(f"top_k={top_k} exceeds the cohort size {cohort_size}")
    elif top_k is not None:
        raise ConfigError(f"top_k applies only to adaptive S-norm ('as'), not {name!r}")
    z = t = None
    if name in ("z", "s", "as"):
        mean, std = _cohort_stats(gallery_scores, g_codes, g_codes, top_k)
        z = (scores - mean[None, :]) / std[None, :]
    if name in ("t", "s", "as"):
        mean, std = _cohort_stats(scores, p_codes, g_codes, top_k)
        t = (scores - mean[:, None]) / std[:, None]
    if z is None:
        return t  # type: ignore[return-value]
    return z if t is None else (z + t) / 2.0


def _cohort_stats(
    cohort: np.ndarray,
    row_codes: np.ndarray,
    g_codes: np.ndarray,
    top_k: int | None,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 0) of each row's scores against gallery templates of other persons.

    ``cohort`` is (rows, gallery); row ``r`` belongs to person ``row_codes[r]``, whose templates
    are left out (unless ``keep``, a (rows, gallery) mask, says which count instead). With
    ``top_k`` only the ``top_k`` highest remaining scores count.
    """
    if keep is None:
        keep = row_codes[:, None] != g_codes[None, :]
    if top_k is not None:
        order = np.argsort(-cohort, axis=1, kind="stable")
        ranked_keep = np.take_along_axis(keep, order, axis=1)
        ranked_keep &= np.cumsum(ranked_keep, axis=1) <= top_k
        keep = np.zeros_like(keep)
        np.put_along_axis(keep, order, ranked_keep, axis=1)
    count = keep.sum(axis=1)
    mean = np.where(keep, cohort, 0.0).sum(axis=1) / count
    var = np.where(keep, (cohort - mean[:, None]) ** 2, 0.0).sum(axis=1) / count
    std = np.sqrt(var)
    if np.any(std == 0.0):
        raise ConfigError("cohort scores have zero spread for some row: cannot normalise")
    return mean, std


def validation_thresholds(
    model: IdentityModel | EmbeddingBackend,
    store: BeatStore,
    mset: MatchSet,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Verification thresholds on validation persons: the EER point and FAR 1 % / 0.1 %.

    Record templates against record templates, as a gallery will compare them; saved with the
    model (``thresholds.json``) as its default operating points.
    """
    index = store.index
    person_of = dict(zip(index["record"], index["person"], strict=True))
    g_ids, g_t = record_templates(
        embed_rows(_encoder(model), store, mset.gallery, batch_size),
        index["record"].to_numpy()[mset.gallery],
    )
    p_ids, p_t = record_templates(
        embed_rows(_encoder(model), store, mset.probe, batch_size),
        index["record"].to_numpy()[mset.probe],
    )
    scores = p_t @ g_t.T
    same = (
        np.array([person_of[r] for r in p_ids])[:, None]
        == np.array([person_of[r] for r in g_ids])[None, :]
    )
    genuine, impostor = scores[same], scores[~same]
    point = eer(genuine, impostor)
    out: dict[str, Any] = {
        "eer": {
            "threshold": float(point.threshold),
            "far": float(point.eer),
            "frr": float(point.eer),
        },
        "genuine_scores": int(genuine.size),
        "impostor_scores": int(impostor.size),
        "source": "validation persons of the training protocol",
    }
    for target in FAR_TARGETS:
        threshold = float(threshold_at_far(genuine, impostor, target))
        far, frr = far_frr(genuine, impostor, threshold)
        out[f"far={target:g}"] = {"threshold": threshold, "far": float(far), "frr": float(frr)}
    return out


def match_figures(
    scores: np.ndarray,
    gallery_persons: np.ndarray,
    probe_persons: np.ndarray,
    ci_boot: int = 0,
) -> dict[str, Any]:
    """Rank-1/5 and verification figures from a (probes x gallery templates) score matrix.

    With ``ci_boot`` > 0 the EER gets a 95 % interval (``eer_ci``) from that many bootstrap
    resamples of persons (each score belongs to its probe's person; see
    :func:`~ecgbio.metrics.verification.eer_ci`), because scores of one person are correlated.
    """
    arrays = score_arrays(scores, gallery_persons, probe_persons)
    curve = arrays["cmc"]
    genuine, impostor = arrays["genuine"], arrays["impostor"]
    result = eer(genuine, impostor)
    figures: dict[str, Any] = {
        "rank1": float(curve[0]),
        "rank5": float(curve[min(4, len(curve) - 1)]),
        "eer": float(result.eer),
        "eer_threshold": float(result.threshold),
        "auc": float(auc(genuine, impostor)),
        "d_prime": d_prime(genuine, impostor),
        "persons": int(len(np.unique(gallery_persons))),
        "probes": int(len(probe_persons)),
        "genuine_scores": int(genuine.size),
        "impostor_scores": int(impostor.size),
    }
    if ci_boot:
        low, high = eer_ci(
            genuine,
            arrays["genuine_person"],
            impostor,
            arrays["impostor_person"],
            n_boot=ci_boot,
        )
        figures["eer_ci"] = [low, high]
    for far in FAR_TARGETS:
        tar, _ = tar_at_far(genuine, impostor, far)
        figures[f"tar@far={far:g}"] = float(tar)
    return figures


def d_prime(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Daugman's decidability index: how far apart the genuine and impostor score distributions
    are, in pooled standard deviations. Unlike rank-1 or the EER it keeps growing once the two
    are fully separated, so it can still tell two perfect models apart."""
    if genuine.size < 2 or impostor.size < 2:
        return 0.0
    spread = np.sqrt((genuine.var() + impostor.var()) / 2)
    return float((genuine.mean() - impostor.mean()) / max(float(spread), 1e-12))


def score_arrays(
    scores: np.ndarray, gallery_persons: np.ndarray, probe_persons: np.ndarray
) -> dict[str, np.ndarray]:
    """The raw material of the figures, as plain arrays (what ``scores.npz`` holds).

    ``genuine`` / ``impostor``: the scores of same-person / different-person comparisons, with
    ``genuine_person`` / ``impostor_person`` the probe's person of each (strings, no objects, so
    the file loads with ``allow_pickle=False``); ``cmc``: identification rate at ranks 1..persons;
    ``eer_threshold``: the score where FAR = FRR.
    """
    genuine_mask = probe_persons[:, None] == gallery_persons[None, :]
    owner = np.broadcast_to(probe_persons[:, None], scores.shape)
    genuine, impostor = scores[genuine_mask], scores[~genuine_mask]
    return {
        "genuine": genuine,
        "impostor": impostor,
        "genuine_person": owner[genuine_mask].astype(str),
        "impostor_person": owner[~genuine_mask].astype(str),
        "cmc": cmc(scores, gallery_persons, probe_persons),
        "eer_threshold": np.array(eer(genuine, impostor).threshold),
    }


def other_day_probes(
    p_ids: np.ndarray,
    p_persons: np.ndarray,
    g_ids: np.ndarray,
    g_persons: np.ndarray,
    session_of: dict[str, str],
) -> np.ndarray:
    """Probes with a known session that differs from every gallery session of their person."""
    g_sessions: dict[str, set[str]] = {}
    for record, person in zip(g_ids, g_persons, strict=True):
        g_sessions.setdefault(person, set()).add(session_of[record])
    return np.array(
        [
            bool(session_of[r])
            and session_of[r] not in g_sessions.get(p, set())
            and "" not in g_sessions.get(p, set())
            for r, p in zip(p_ids, p_persons, strict=True)
        ],
        dtype=bool,
    )


def _beat_rank1(
    p_emb: np.ndarray,
    p_records: np.ndarray,
    person_of: dict[str, str],
    g_templates: np.ndarray,
    g_persons: np.ndarray,
) -> float:
    """Single probe beats against the gallery's record templates."""
    if len(p_emb) == 0:
        return float("nan")
    truth = np.array([person_of[r] for r in p_records])
    return float(cmc(p_emb @ g_templates.T, g_persons, truth, max_rank=1)[0])


@torch.no_grad()
def _softmax_closed_set(
    model: IdentityModel,
    store: BeatStore,
    rows: np.ndarray,
    records: np.ndarray,
    person_of: dict[str, str],
    classes: list[str],
    batch_size: int,
) -> dict[str, float]:
    model.eval()
    device = module_device(model)
    class_of = {c: i for i, c in enumerate(classes)}
    probs = []
    for start in range(0, len(rows), batch_size):
        x = torch.from_numpy(store.waves(rows[start : start + batch_size])).to(device)
        probs.append(torch.softmax(model.softmax(model.backbone(x)).float(), 1).cpu().numpy())
    p = np.concatenate(probs)
    truth = np.array([class_of.get(person_of[r], -1) for r in records])
    beat_acc = float((p.argmax(1) == truth).mean())
    ids, inverse = np.unique(records, return_inverse=True)
    summed = np.zeros((len(ids), p.shape[1]))
    np.add.at(summed, inverse, p)
    rec_truth = np.array([class_of.get(person_of[r], -1) for r in ids])
    top5 = np.argsort(-summed, axis=1)[:, :5]
    return {
        "beat_accuracy": beat_acc,
        "record_accuracy": float((summed.argmax(1) == rec_truth).mean()),
        "record_top5": float((top5 == rec_truth[:, None]).any(1).mean()),
    }


def evaluate_run(
    run_dir: str | Path,
    store: str | Path | BeatStore,
    protocol: str | None = None,
    enrol_beats: int = 0,
    out: str | Path | None = None,
    norm: str = DEFAULT_NORM,
    ci_boot: int = CI_BOOT,
    overwrite: bool = False,
    backend: str = "auto",
    threads: int = 0,
) -> dict[str, Any]:
    """Load a run, split ``store`` by ``protocol`` (default: the run's) and evaluate its test set.

    The store must have been cut like the model's training beats (same rate, window, leads);
    otherwise the comparison would be meaningless, so it is refused.

    Args:
        norm: score normalisation of gallery-probe protocols (see :func:`gallery_cohort_norm`);
            classification protocols (``seed``) have no comparison scores and ignore it.
        ci_boot: bootstrap resamples of the headline EER's 95 % interval (0: none).
        out: directory for ``metrics.json`` (the figures) and, for gallery-probe protocols,
            ``scores.npz`` (the arrays behind them, see :func:`save_scores`). An earlier
            evaluation there is replaced only with ``overwrite``; a run directory is refused (its
            own ``metrics.json`` is the training record). Both files name the store's persons, so
            they are private (0600) and so is ``out`` when made here (0700).
        backend: what embeds the beats (:mod:`ecgbio.backends`): ``auto`` (ONNX Runtime when the
            run holds ``model.onnx``, else torch), ``torch`` or ``onnx``. The protocols the
            softmax head answers (``seed``; the closed-set figures of ``cross-session`` on the
            training store) need torch: ``auto`` then takes it, ``onnx`` is refused.
        threads: ONNX Runtime's intra-op threads (0: its default); torch's are the caller's.
    """
    from ecgbio.backends import choose_backend, open_backend
    from ecgbio.config import to_dict
    from ecgbio.io import private_dir
    from ecgbio.protocols import make_split
    from ecgbio.rundir import read_run
    from ecgbio.runs import run_from

    if norm not in NORMS:
        raise ConfigError(f"unknown score normalisation {norm!r}: choose from {', '.join(NORMS)}")
    # (a negative count would enrol from no beat, and report chance figures as results)
    for name, value, zero in (
        ("--enrol-beats", enrol_beats, "every beat"),
        ("--threads", threads, "the default"),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ConfigError(f"{name} must be a whole number >= 0 (0: {zero}), got {value}")
    if threads > MAX_THREADS:
        raise ConfigError(f"--threads must be at most {MAX_THREADS}, got {threads}")
    if out is not None:
        _check_out(Path(out), overwrite)
    run, parsed, weights = read_run(run_dir)
    chosen = choose_backend(run.root, backend)  # (an unknown or impossible backend: refused now)
    store = store if isinstance(store, BeatStore) else BeatStore.open(store)
    check_compatible(run.beat, store)
    name = protocol or run.train_config.protocol
    if not protocol and name == "general":  # a general model is tested on persons it never saw
        name = "enrol-probe"
    split = make_split(
        store, name, seed=run.train_config.seed, val_fraction=run.train_config.val_fraction
    )
    arrays: dict[str, np.ndarray] = {}
    if split.test is None:
        raise ConfigError(
            f"protocol {name} has no test set; evaluate this model with --protocol enrol-probe "
            "on a store of persons it has not seen",
            store.root,
        )
    test = split.test
    rows = (
        test.rows if isinstance(test, ClassifySet) else np.concatenate((test.gallery, test.probe))
    )
    store.check_finite(rows)  # a damaged beats.npy is named here, not as NaN scores later
    closed = name == "cross-session" and split.classes == run.classes
    softmax = isinstance(split.test, ClassifySet) or closed
    if softmax and chosen == "onnx" and backend == "onnx":
        raise ConfigError(
            f"protocol {name} on this store is answered by the softmax head, which model.onnx "
            "does not hold: use --backend torch (or auto)"
        )
    model = run_from(run, parsed, weights).model if softmax or chosen == "torch" else None
    encoder = model if model is not None else open_backend(run, parsed, weights, "onnx", threads)[0]
    if isinstance(split.test, ClassifySet):
        if split.classes != run.classes:
            raise ConfigError(
                "the store's classes differ from the model's (a classification "
                "protocol needs the store the model was trained on)",
                store.root,
            )
        assert model is not None  # (softmax: the torch model was loaded)
        figures: dict[str, Any] = evaluate_classify(model, store, split.test)
    else:
        ks = (enrol_beats, *tuple(k for k in ENROL_BEATS if k != enrol_beats))
        figures = evaluate_match(
            encoder,
            store,
            split.test,
            enrol_beats=ks,
            classes=split.classes if closed else None,
            norm=norm,
            ci_boot=ci_boot,
            scores_out=arrays,
        )
    figures = {
        "protocol": name,
        "warnings": _training_data_warnings(run, store) + lead_warnings(run.beat, store),
        "model": str(run.root),
        "backend": "torch" if model is not None else encoder.name,
        "store": str(store.root),
        "enrol_beats": enrol_beats,
        **figures,
        "split": split.info,
        "beat_config": to_dict(run.beat),
    }
    if out is not None:
        private_dir(Path(out))
        if arrays:
            save_scores(Path(out) / SCORES_FILE, arrays, norm)
        else:  # a classification protocol: no scores, and none left from an earlier evaluation
            (Path(out) / SCORES_FILE).unlink(missing_ok=True)
        save_json(Path(out) / "metrics.json", figures, private=True)
    return figures


#: A PTB-XL record path (``records100/00000/00001_lr``), whatever folder the database sits in.
PTBXL_RECORD = r"records(?:100|500)/\d{5}/\d{5}_(?:lr|hr)$"


def _training_data_warnings(run: Any, store: BeatStore) -> list[str]:
    """Say so when the shipped model is evaluated on the databases it was trained on.

    (A run of one's own is split by its protocol, which keeps test persons out of training; the
    shipped model's training store is not shipped, so its databases are recognised by source.)
    """
    from ecgbio.runs import DEFAULT_MODEL_DIR

    if run.root.resolve() != DEFAULT_MODEL_DIR.resolve():
        return []
    source = json.dumps(store.manifest.get("source") or {}).lower()
    ptbxl_paths = store.records["path"].astype(str).str.contains(PTBXL_RECORD).any()
    if ptbxl_paths or any(name in source for name in ("ptbxl", "ptb-xl", "mitdb")):
        return [
            "the default model was trained on PTB-XL and MIT-BIH records: figures on them are "
            "not those of people it never saw"
        ]
    return []


def lead_warnings(beat: Any, store: BeatStore) -> list[str]:
    """Say so when the store's records were read from another lead than the model's: a lead
    standing in (``prepare wfdb --lead``, MIT-BIH's MLII, CinC's ECG) or a store prepared from
    another lead. Compares the records table's ``leads`` (what was read) with the model's."""
    from ecgbio.records import stand_in_warnings

    records = store.records
    if "leads" not in records.columns:
        return []
    ok = records[records["status"] == "ok"] if "status" in records.columns else records
    counts = ok["leads"].astype(str).value_counts()
    out: list[str] = []
    for read, n in counts.items():
        where = f" in {n} of {len(ok)} records" if n < len(ok) else ""
        for text in stand_in_warnings(str(read).split(","), list(beat.leads), where):
            if text not in out:
                out.append(text)
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write an evaluation over a run directory, over an evaluation unasked, or into a
    path that is a file (before the evaluation runs, not after)."""
    if out.exists() and not out.is_dir():
        raise ConfigError("is a file, not a directory: choose another --out", out)
    if (out / "config.json").exists():
        raise ConfigError("this is a run directory; write the evaluation elsewhere (--out)", out)
    if (out / "metrics.json").exists() and not overwrite:
        raise ConfigError("an evaluation exists here; use --overwrite to replace it", out)


SCORES_FILE = "scores.npz"


def save_scores(path: Path, arrays: dict[str, np.ndarray], norm: str) -> None:
    """Write the headline's score arrays as ``.npz``, atomically; loads with ``allow_pickle=False``.

    Keys: ``genuine``, ``impostor``, ``genuine_person``, ``impostor_person``, ``cmc``,
    ``eer_threshold`` (see :func:`score_arrays`), the same prefixed ``other_day_`` when some
    probes were recorded on another day than their person's gallery record, and ``norm`` (the
    normalisation the scores went through). Plain numeric and string arrays only: no pickle,
    so a received file cannot run code when loaded. Private (0600): it names persons.
    """
    from ecgbio.io import atomic_open

    payload = {**arrays, "norm": np.array(norm)}
    if any(v.dtype == object for v in payload.values()):
        raise ConfigError("score arrays must not hold Python objects", path)
    with atomic_open(path, "wb", private=True) as handle:
        np.savez(handle, **payload)


def check_compatible(beat: Any, store: BeatStore) -> None:
    """Refuse a store whose beats were cut differently from the model's training beats."""
    cfg = store.config
    mismatches = [
        f"{name} {getattr(cfg, name)} != {getattr(beat, name)}"
        for name in ("rate", "before_s", "after_s", "normalize")
        if getattr(cfg, name) != getattr(beat, name)
    ]
    if store.beats.shape[1] != len(beat.leads) and not beat.all_leads:
        mismatches.append(f"leads {store.leads} != {list(beat.leads)}")
    if mismatches:
        raise ConfigError(
            "store was prepared differently from the model's beats ("
            + "; ".join(mismatches)
            + f"); prepare it again with --rate {beat.rate} --before {beat.before_s} "
            f"--after {beat.after_s} --normalize {beat.normalize}",
            store.root,
        )
