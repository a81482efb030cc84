"""A torch ``Dataset`` over a :class:`~ecgbio.store.BeatStore`, reading beats lazily from disk.

The store's memmap is reopened in each DataLoader worker (not inherited), so a million-beat store
costs no memory up front and workers never share a file offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ecgbio.errors import StoreError
from ecgbio.store import BeatStore


class BeatDataset(Dataset):
    """Beats at ``rows`` of a store, with integer labels.

    Args:
        store: an open store or its directory.
        rows: beat rows to expose (default: all).
        labels: one integer label per row (default: person ids, numbered in sorted order).
    """

    def __init__(
        self,
        store: BeatStore | str | Path,
        rows: Sequence[int] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        opened = store if isinstance(store, BeatStore) else BeatStore.open(store)
        self.root = opened.root
        self.rows = np.arange(len(opened)) if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= len(opened)):
            raise StoreError(f"rows out of range for a store of {len(opened)} beats", self.root)
        if labels is None:
            persons = opened.index["person"].to_numpy()[self.rows]
            _, labels = np.unique(persons, return_inverse=True)
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.shape != self.rows.shape:
            raise StoreError(f"{len(self.labels)} labels for {len(self.rows)} rows", self.root)
        self._beats: np.ndarray | None = None
        self.sample_shape = tuple(opened.beats.shape[1:])

    @property
    def beats(self) -> np.ndarray:
        if self._beats is None:  # opened lazily: once per process
            self._beats = np.load(self.root / "beats.npy", mmap_mode="r", allow_pickle=False)
        return self._beats

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_beats"] = None  # never ship a memmap to a worker
        return state

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        wave = np.asarray(self.beats[self.rows[i]], dtype=np.float32)
        return torch.from_numpy(wave), int(self.labels[i])
