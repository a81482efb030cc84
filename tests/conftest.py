"""Shared fixtures: small WFDB records written on the fly, and the real data beside the project."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ECGBIO_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(name: str) -> Path:
    """A folder of ../shared/data, or skip the test cleanly when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} not present")
    return path


def simulate_ecg(
    seconds: float = 10.0, fs: int = 500, heart_rate: float = 70.0, seed: int = 0, n_leads: int = 1
) -> np.ndarray:
    """(samples, leads) synthetic ECG in mV (neurokit2), for unit tests only."""
    import neurokit2 as nk

    base = nk.ecg_simulate(
        duration=seconds,
        sampling_rate=fs,
        heart_rate=heart_rate,
        method="simple",
        noise=0.01,
        random_state=seed,
    )
    base = base * (1.2 / np.abs(base).max())  # a typical lead-I R wave: 1.2 mV
    leads = [base * (1.0 - 0.2 * i) for i in range(n_leads)]
    return np.stack(leads, axis=1)


def write_wfdb(
    directory: Path,
    name: str,
    signal: np.ndarray,
    fs: float,
    leads: list[str] | None = None,
    comments: list[str] | None = None,
) -> Path:
    """Write ``signal`` (samples, leads) in mV as a WFDB record; returns the record path."""
    import wfdb

    directory.mkdir(parents=True, exist_ok=True)
    leads = leads or ["I", "II", "III", "AVR", "AVL", "AVF"][: signal.shape[1]]
    sig = np.nan_to_num(signal, nan=0.0)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * sig.shape[1],
        sig_name=leads,
        p_signal=sig,
        fmt=["16"] * sig.shape[1],
        adc_gain=[1000.0] * sig.shape[1],
        baseline=[0] * sig.shape[1],
        comments=comments or [],
        write_dir=str(directory),
    )
    return directory / name


@pytest.fixture
def record_factory(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic WFDB record: ``record_factory(name, seconds=10, fs=500, ...)``."""

    def make(
        name: str = "rec",
        seconds: float = 10.0,
        fs: int = 500,
        heart_rate: float = 70.0,
        seed: int = 0,
        n_leads: int = 1,
        leads: list[str] | None = None,
        signal: np.ndarray | None = None,
        comments: list[str] | None = None,
        directory: Path | None = None,
    ) -> Path:
        sig = signal if signal is not None else simulate_ecg(seconds, fs, heart_rate, seed, n_leads)
        return write_wfdb(directory or tmp_path, name, sig, fs, leads, comments)

    return make
