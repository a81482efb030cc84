"""Model + store + protocol set -> figures: the evaluator shared by training and `ecgbio evaluate`.

Two kinds of held-out data (see :mod:`ecgbio.protocols`):

- a :class:`ClassifySet` is answered by the softmax head: accuracy and cross-entropy, the seed
  notebook's columns;
- a :class:`MatchSet` is answered by embeddings, the biometric way: record templates (mean of unit
  beat embeddings) of gallery and probe records are compared by cosine; closed-set rank-k (CMC),
  verification EER / AUC / TAR at FAR, beat-level rank-1, the same on probes recorded on another day
  than every gallery record of their person, and rank-1 / EER against the number of enrolment beats.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from ecgbio.embed import embed_rows, record_templates
from ecgbio.metrics.identification import cmc
from ecgbio.metrics.verification import auc, eer, far_frr, tar_at_far, threshold_at_far
from ecgbio.models import IdentityModel
from ecgbio.protocols import ClassifySet, MatchSet
from ecgbio.store import BeatStore

ENROL_BEATS = (0, 1, 3, 5, 10)  # 0 = all beats of the enrolment record; the first is the headline
FAR_TARGETS = (0.01, 0.001)


@torch.no_grad()
def evaluate_classify(
    model: IdentityModel, store: BeatStore, cset: ClassifySet, batch_size: int = 1024
) -> dict[str, float]:
    """Softmax accuracy and mean cross-entropy (no label smoothing) on held-out beats."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(cset.rows), batch_size):
        x = torch.from_numpy(store.waves(cset.rows[start : start + batch_size]))
        y = torch.from_numpy(cset.labels[start : start + batch_size]).long()
        logits = model.softmax(model.backbone(x)).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    n = max(len(cset.rows), 1)
    return {"accuracy": correct / n, "loss": loss_sum / n, "beats": len(cset.rows)}


def evaluate_match(
    model: IdentityModel,
    store: BeatStore,
    mset: MatchSet,
    enrol_beats: Sequence[int] = (0,),
    classes: Sequence[str] | None = None,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Biometric figures for gallery vs probe records (see module docstring).

    Args:
        enrol_beats: build gallery templates from the first k beats (0 = all); the first entry is
            the headline, the others go to ``by_enrol_beats``.
        classes: softmax classes, when the probe persons are training classes (closed set): adds
            the softmax head's beat- and record-level accuracy.
    """
    index = store.index
    g_emb = embed_rows(model.backbone, store, mset.gallery, batch_size)
    p_emb = embed_rows(model.backbone, store, mset.probe, batch_size)
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
        scores = p_templates @ g_templates.T
        figures = match_figures(scores, g_persons, p_persons)
        other_day = _other_day(p_ids, p_persons, g_ids, g_persons, session_of)
        if other_day.any() and other_day.sum() < len(other_day):
            figures["other_day"] = match_figures(scores[other_day], g_persons, p_persons[other_day])
        if i == 0:
            out.update(figures)
            out["beat_rank1"] = _beat_rank1(p_emb, p_records, person_of, g_templates, g_persons)
        by_k[str(k or "all")] = {key: figures[key] for key in ("rank1", "eer")}
    if len(enrol_beats) > 1:
        out["by_enrol_beats"] = by_k
    if classes is not None:
        out["softmax"] = _softmax_closed_set(
            model, store, mset.probe, p_records, person_of, list(classes), batch_size
        )
    return out


def validation_thresholds(
    model: IdentityModel, store: BeatStore, mset: MatchSet, batch_size: int = 1024
) -> dict[str, Any]:
    """Verification thresholds on validation persons: the EER point and FAR 1 % / 0.1 %.

    Record templates against record templates, as a gallery will compare them; saved with the
    model (``thresholds.json``) as its default operating points.
    """
    index = store.index
    person_of = dict(zip(index["record"], index["person"], strict=True))
    g_ids, g_t = record_templates(
        embed_rows(model.backbone, store, mset.gallery, batch_size),
        index["record"].to_numpy()[mset.gallery],
    )
    p_ids, p_t = record_templates(
        embed_rows(model.backbone, store, mset.probe, batch_size),
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
    scores: np.ndarray, gallery_persons: np.ndarray, probe_persons: np.ndarray
) -> dict[str, Any]:
    """Rank-1/5 and verification figures from a (probes x gallery templates) score matrix."""
    curve = cmc(scores, gallery_persons, probe_persons)
    genuine_mask = probe_persons[:, None] == gallery_persons[None, :]
    genuine, impostor = scores[genuine_mask], scores[~genuine_mask]
    result = eer(genuine, impostor)
    figures: dict[str, Any] = {
        "rank1": float(curve[0]),
        "rank5": float(curve[min(4, len(curve) - 1)]),
        "eer": float(result.eer),
        "eer_threshold": float(result.threshold),
        "auc": float(auc(genuine, impostor)),
        "persons": int(len(np.unique(gallery_persons))),
        "probes": int(len(probe_persons)),
        "genuine_scores": int(genuine.size),
        "impostor_scores": int(impostor.size),
    }
    for far in FAR_TARGETS:
        tar, _ = tar_at_far(genuine, impostor, far)
        figures[f"tar@far={far:g}"] = float(tar)
    return figures


def _other_day(
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
    class_of = {c: i for i, c in enumerate(classes)}
    probs = []
    for start in range(0, len(rows), batch_size):
        x = torch.from_numpy(store.waves(rows[start : start + batch_size]))
        probs.append(torch.softmax(model.softmax(model.backbone(x)).float(), 1).numpy())
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
) -> dict[str, Any]:
    """Load a run, split ``store`` by ``protocol`` (default: the run's) and evaluate its test set.

    The store must have been cut like the model's training beats (same rate, window, leads);
    otherwise the comparison would be meaningless, so it is refused.
    """
    from ecgbio.config import save_json, to_dict
    from ecgbio.errors import ConfigError
    from ecgbio.protocols import make_split
    from ecgbio.runs import load_run

    run = load_run(run_dir)
    store = store if isinstance(store, BeatStore) else BeatStore.open(store)
    check_compatible(run.beat, store)
    name = protocol or run.train_config.protocol
    split = make_split(
        store, name, seed=run.train_config.seed, val_fraction=run.train_config.val_fraction
    )
    if isinstance(split.test, ClassifySet):
        if split.classes != run.classes:
            raise ConfigError(
                "the store's classes differ from the model's (a classification "
                "protocol needs the store the model was trained on)",
                store.root,
            )
        figures: dict[str, Any] = evaluate_classify(run.model, store, split.test)
    else:
        ks = (enrol_beats, *tuple(k for k in ENROL_BEATS if k != enrol_beats))
        closed = name == "cross-session" and split.classes == run.classes
        figures = evaluate_match(
            run.model, store, split.test, enrol_beats=ks, classes=split.classes if closed else None
        )
    figures = {
        "protocol": name,
        "model": str(run.root),
        "store": str(store.root),
        "enrol_beats": enrol_beats,
        **figures,
        "split": split.info,
        "beat_config": to_dict(run.beat),
    }
    if out is not None:
        save_json(Path(out) / "metrics.json", figures)
    return figures


def check_compatible(beat: Any, store: BeatStore) -> None:
    """Refuse a store whose beats were cut differently from the model's training beats."""
    from ecgbio.errors import ConfigError

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
            "store was prepared differently from the model's beats (" + "; ".join(mismatches) + ")",
            store.root,
        )
