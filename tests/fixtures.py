"""Stores built once per test session: a PTB-XL-shaped synthetic cohort and a seed-protocol store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgbio.config import BeatConfig
from ecgbio.prepare import prepare_store
from ecgbio.sources.folder import folder_records
from ecgbio.sources.ptbxl import ptbxl_records
from ecgbio.sources.synthetic import write_synthetic_cohort
from tests.conftest import simulate_ecg, write_wfdb

#: persons 0-9 have one record (training identities under `unseen`), 10-13 two, 14-17 three
RECORDS_PER_PERSON = [1] * 10 + [2] * 4 + [3] * 4


def build_ptbxl_store(tmp: Path, rate: int = 100) -> Path:
    root = write_synthetic_cohort(
        tmp / "ptbxl",
        n_persons=len(RECORDS_PER_PERSON),
        records_per_person=RECORDS_PER_PERSON,
        duration_s=10.0,
        rate=500,
        n_leads=1,
        seed=5,
    )
    store = tmp / f"store{rate}"
    prepare_store(ptbxl_records(root, rate=rate), store, BeatConfig(rate=rate), progress=False)
    return store


def build_seed_store(tmp: Path) -> Path:
    """Seed preprocessing: 200-sample windows at 500 Hz, no quality rejection.

    Records: 4 valid (25 s at 80 bpm: >= 18 beats), one beyond +-2 mV, one with < 18 beats.
    """
    root = tmp / "seeddb"
    for i in range(4):
        sig = simulate_ecg(25, 500, heart_rate=80 + i, seed=i)
        write_wfdb(root / f"P{i}", "r", sig, 500)
    loud = simulate_ecg(25, 500, heart_rate=75, seed=9)
    write_wfdb(root / "P8", "loud", loud * (3.0 / np.abs(loud).max()), 500)
    write_wfdb(root / "P9", "short", simulate_ecg(10, 500, heart_rate=70, seed=7), 500)
    store = tmp / "seedstore"
    config = BeatConfig(rate=500, before_s=0.2, after_s=0.2, min_quality=0.0, max_amplitude_z=0.0)
    prepare_store(folder_records(root), store, config, progress=False)
    return store
