"""BeatDataset: lazy torch access to a store, also through DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ecgbio.config import BeatConfig
from ecgbio.datasets import BeatDataset
from ecgbio.errors import StoreError
from ecgbio.prepare import prepare_store
from ecgbio.sources.folder import folder_records
from ecgbio.store import BeatStore
from tests.conftest import simulate_ecg, write_wfdb


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> BeatStore:
    tmp = tmp_path_factory.mktemp("ds")
    for p in range(3):
        write_wfdb(tmp / "db" / f"P{p}", "r", simulate_ecg(6, 250, seed=p), 250)
    prepare_store(folder_records(tmp / "db"), tmp / "store", BeatConfig(rate=250), progress=False)
    return BeatStore.open(tmp / "store")


def test_items_are_float32_tensors_with_person_labels(store):
    ds = BeatDataset(store)
    x, _ = ds[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == store.beats.shape[1:]
    assert len(ds) == len(store)
    assert sorted(set(ds.labels.tolist())) == [0, 1, 2]
    np.testing.assert_array_equal(x.numpy(), store.waves([0])[0])


def test_subset_rows_and_workers(store):
    rows = np.arange(1, len(store), 2)
    ds = BeatDataset(store.root, rows=rows, labels=np.zeros(len(rows), int))
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    xs = torch.cat([x for x, _ in loader])
    np.testing.assert_array_equal(xs.numpy(), store.waves(rows))


def test_bad_rows(store):
    with pytest.raises(StoreError, match="rows out of range"):
        BeatDataset(store, rows=[len(store)])
    with pytest.raises(StoreError, match="2 labels for 1 rows"):
        BeatDataset(store, rows=[0], labels=[0, 1])
