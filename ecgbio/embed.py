"""Embeddings: beats -> L2-normalised vectors -> record templates.

A record's template is the mean of its beats' normalised embeddings, normalised again: averaging
unit vectors cancels beat-to-beat noise while keeping what all beats of the person share; the
``k`` argument builds templates from the first k beats only (enrolment from few beats).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ecgbio.store import BeatStore


@torch.no_grad()
def embed_waves(backbone: nn.Module, waves: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(n, leads, samples) beats -> (n, d) unit vectors, in eval mode, float32."""
    was_training = backbone.training
    backbone.eval()
    out = []
    try:
        for start in range(0, len(waves), batch_size):
            x = torch.from_numpy(
                np.ascontiguousarray(waves[start : start + batch_size], dtype=np.float32)
            )
            out.append(torch.nn.functional.normalize(backbone(x).float(), dim=1).numpy())
    finally:
        backbone.train(was_training)
    if not out:
        dim = getattr(getattr(backbone, "config", None), "embedding_dim", 0)
        return np.zeros((0, dim), np.float32)
    return np.concatenate(out)


def embed_rows(
    backbone: nn.Module, store: BeatStore, rows: np.ndarray, batch_size: int = 1024
) -> np.ndarray:
    """Embed the store's beats at ``rows`` (read in batches: the store stays on disk)."""
    rows = np.asarray(rows, dtype=np.int64)
    parts = [
        embed_waves(backbone, store.waves(rows[i : i + batch_size]), batch_size)
        for i in range(0, len(rows), batch_size)
    ]
    return np.concatenate(parts) if parts else embed_waves(backbone, np.zeros((0,)))


def record_templates(
    embeddings: np.ndarray, records: Sequence[str] | np.ndarray, k: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each record's (first ``k``, 0 = all) beat embeddings, renormalised.

    Returns (record ids in first-appearance order, templates (records, d)). Beats of a record are
    expected in time order, as a store keeps them.
    """
    records = np.asarray(records)
    ids, first, inverse = np.unique(records, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    ids = ids[order]
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    group = remap[inverse]
    if k:
        rank = np.zeros(len(group), np.int64)
        seen: dict[int, int] = {}
        for i, g in enumerate(group):
            rank[i] = seen.get(g, 0)
            seen[g] = rank[i] + 1
        keep = rank < k
        embeddings, group = embeddings[keep], group[keep]
    sums = np.zeros((len(ids), embeddings.shape[1]), np.float64)
    np.add.at(sums, group, embeddings)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return ids, (sums / np.maximum(norms, 1e-12)).astype(np.float32)
