"""The two heads trained together on one embedding.

- :class:`SoftmaxHead`: a linear identity classifier with cross-entropy (the seed notebook's
  question, "which of the training identities is this?").
- :class:`MetricHead`: a pytorch-metric-learning loss that shapes the embedding space itself so that
  unseen people can be compared (ArcFace / SubCenterArcFace, triplet with a miner, or both).
  ArcFace keeps a weight matrix (one centre per identity): it is an ``nn.Parameter`` of this module,
  so it is trained by the optimiser and saved in the checkpoint with the rest of the model.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import losses, miners
from torch import nn
from torch.nn import functional as F  # noqa: N812

from ecgbio.config import TrainConfig


class SoftmaxHead(nn.Module):
    """Linear classifier over training identities; cross-entropy with label smoothing."""

    def __init__(self, embedding_dim: int, n_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_dim, n_classes)
        self.label_smoothing = label_smoothing

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.fc(embeddings)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)


class MetricHead(nn.Module):
    """A pml metric loss (and miner) as one module; its own weights are registered parameters."""

    def __init__(self, kind: str, embedding_dim: int, n_classes: int, config: TrainConfig) -> None:
        super().__init__()
        self.kind = kind
        self.arcface: nn.Module | None = None
        self.triplet: nn.Module | None = None
        self.miner: miners.BaseMiner | None = None
        if kind in ("arcface", "arcface+triplet"):
            self.arcface = losses.ArcFaceLoss(
                n_classes, embedding_dim, margin=config.arcface_margin, scale=config.arcface_scale
            )
        elif kind == "subcenter-arcface":
            self.arcface = losses.SubCenterArcFaceLoss(
                num_classes=n_classes,
                embedding_size=embedding_dim,
                margin=config.arcface_margin,
                scale=config.arcface_scale,
                sub_centers=3,
            )
        if kind in ("triplet", "arcface+triplet"):
            self.triplet = losses.TripletMarginLoss(margin=config.triplet_margin)
            self.miner = miners.TripletMarginMiner(
                margin=config.triplet_margin, type_of_triplets="semihard"
            )

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb = embeddings.float()  # margins and cosines in fp32, also under bf16 autocast
        total = emb.new_zeros(())
        with torch.autocast(device_type=emb.device.type, enabled=False):
            if self.arcface is not None:
                total = total + self.arcface(emb, labels)
            if self.triplet is not None:
                pairs = self.miner(emb, labels) if self.miner is not None else None
                total = total + self.triplet(emb, labels, pairs)
        return total
