"""Models: the ResNet1d backbone and the identity model with its two heads."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from ecgbio.config import ModelConfig, TrainConfig
from ecgbio.models.heads import MetricHead, SoftmaxHead
from ecgbio.models.resnet1d import ResNet1d

__all__ = ["IdentityModel", "MetricHead", "ResNet1d", "SoftmaxHead"]


class IdentityModel(nn.Module):
    """Backbone + softmax identity head + metric-learning head, trained together.

    ``forward`` returns raw embeddings; :meth:`embed` the L2-normalised ones used for matching. The
    heads are only needed for training (and for the closed-set softmax answer); an enrolled gallery
    needs the backbone alone.
    """

    def __init__(
        self,
        in_leads: int,
        n_classes: int,
        model: ModelConfig = ModelConfig(),
        train: TrainConfig = TrainConfig(),
    ) -> None:
        super().__init__()
        self.backbone = ResNet1d(in_leads, model)
        self.softmax = SoftmaxHead(model.embedding_dim, n_classes, train.label_smoothing)
        self.metric = MetricHead(train.metric_loss, model.embedding_dim, n_classes, train)
        self.softmax_weight = train.softmax_weight
        self.metric_weight = train.metric_weight if train.metric_loss != "none" else 0.0

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        """Embeddings; with ``labels``, the training losses (so DDP sees one forward call)."""
        return self.backbone(x) if labels is None else self.losses(x, labels)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(x).float(), dim=1)

    def losses(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted sum of both heads' losses, with the parts and the softmax logits."""
        emb = self.backbone(x)
        logits = self.softmax(emb)
        ce = self.softmax.loss(logits, labels)
        metric = self.metric(emb, labels) if self.metric_weight > 0 else ce.new_zeros(())
        total = self.softmax_weight * ce + self.metric_weight * metric
        return {
            "loss": total,
            "softmax": ce.detach(),
            "metric": metric.detach(),
            "logits": logits.detach(),
        }
