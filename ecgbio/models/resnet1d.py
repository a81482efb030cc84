"""ResNet1d: a residual 1-D convolutional backbone for (leads x samples) heartbeats.

Small by design (about 1 M parameters at the default widths): beats are short (40-350 samples) and
identities many, so depth buys little while width and regularisation matter; see ``ModelConfig``.
"""

from __future__ import annotations

import torch
from torch import nn

from ecgbio.config import ModelConfig


class BasicBlock1d(nn.Module):
    """Two convolutions with batch norm and a residual connection (He et al. 2016), in 1-D."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)
            )
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity: stable early training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet1d(nn.Module):
    """Beats (batch, leads, samples) -> embeddings (batch, embedding_dim), not normalised.

    The embedding layer ends in batch norm (the "BNNeck" of person re-identification), which lets a
    softmax head and an angular-margin head share one embedding without fighting over its scale.
    """

    def __init__(self, in_leads: int, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        self.in_leads = in_leads
        w0 = config.widths[0]
        self.stem = nn.Sequential(
            nn.Conv1d(
                in_leads, w0, config.stem_kernel, padding=config.stem_kernel // 2, bias=False
            ),
            nn.BatchNorm1d(w0),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c_in = w0
        for stage, (width, blocks) in enumerate(zip(config.widths, config.blocks, strict=True)):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(BasicBlock1d(c_in, width, config.kernel_size, stride))
                c_in = width
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.embedding = nn.Linear(2 * c_in, config.embedding_dim, bias=False)
        self.neck = nn.BatchNorm1d(config.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.input_norm == "beat":
            x = (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + 1e-3)
        h = self.stages(self.stem(x))
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)  # average and max pooling
        return self.neck(self.embedding(self.dropout(pooled)))
