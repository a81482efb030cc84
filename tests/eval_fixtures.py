"""A tiny trained run on the synthetic PTB-XL-shaped store, shared by the evaluate and report tests."""

from __future__ import annotations

from pathlib import Path

from ecgbio.config import ModelConfig, TrainConfig
from ecgbio.training import train
from tests.fixtures import build_ptbxl_store

TINY = ModelConfig(widths=(8, 16), blocks=(1, 1), embedding_dim=16, dropout=0.1)


def build_unseen_run(tmp: Path) -> tuple[Path, Path]:
    """(store, run dir): 10 training identities, 8 unseen test persons with 12 later records."""
    store = build_ptbxl_store(tmp)
    config = TrainConfig(
        protocol="unseen",
        epochs=2,
        batch_size=16,
        m_per_class=2,
        threads=1,
        patience=0,
        val_fraction=0.0,
    )
    train(store, tmp / "run", TINY, config, progress=False, echo=None)
    return store, tmp / "run"
