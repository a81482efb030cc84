"""peaks: ecgbio's Pan-Tompkins QRS detector on synthetic ECG and (realdata) on MIT-BIH records."""

from __future__ import annotations

import numpy as np
import pytest

from ecgbio.beats import DETECTORS, detect_rpeaks
from ecgbio.errors import ConfigError
from ecgbio.metrics.rpeaks import match_peaks, reference_beats
from ecgbio.peaks import pan_tompkins
from tests.conftest import SHARED_DATA

EDGE_S = 0.1


def ecgsyn(seconds: float, fs: int, heart_rate: float, seed: int = 0) -> np.ndarray:
    """neurokit2's ECGSYN model (P, QRS and T waves), in mV."""
    import neurokit2 as nk

    return nk.ecg_simulate(
        duration=seconds,
        sampling_rate=fs,
        heart_rate=heart_rate,
        method="ecgsyn",
        noise=0.0,
        random_state=seed,
    )


def true_r_peaks(ecg: np.ndarray, fs: int) -> np.ndarray:
    """The R apices of a clean synthetic ECG: maxima well above the T waves, >= 250 ms apart.

    Beats within 100 ms of either end are left out: their QRS is cut by the edge.
    """
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(ecg, height=0.6 * ecg.max(), distance=int(0.25 * fs))
    return peaks[(peaks >= EDGE_S * fs) & (peaks < ecg.size - EDGE_S * fs)]


def score(found: np.ndarray, truth: np.ndarray, n: int, fs: int):
    """Match within 50 ms, ignoring detections within 100 ms of either end (as the truth does)."""
    found = found[(found >= EDGE_S * fs) & (found < n - EDGE_S * fs)]
    return match_peaks(found, truth, round(0.05 * fs))


@pytest.mark.parametrize(("fs", "heart_rate"), [(360, 60), (500, 100), (250, 150)])
def test_finds_every_synthetic_beat_on_the_r_wave(fs: int, heart_rate: float) -> None:
    ecg = ecgsyn(20, fs, heart_rate)
    truth = true_r_peaks(ecg, fs)
    found = pan_tompkins(ecg, fs)
    found = found[(found >= EDGE_S * fs) & (found < ecg.size - EDGE_S * fs)]
    m = match_peaks(found, truth, round(0.05 * fs))
    assert m.fn == 0 and m.fp == 0, m  # P and T waves are not taken for beats
    tol = round(0.02 * fs)  # the band-passed maximum sits on the R wave
    assert np.abs(found - truth).max() <= tol


def test_noise_wander_and_inverted_polarity() -> None:
    fs = 360
    ecg = ecgsyn(20, fs, 75, seed=1)
    truth = true_r_peaks(ecg, fs)
    rng = np.random.default_rng(0)
    t = np.arange(ecg.size) / fs
    dirty = ecg + 0.5 * np.sin(2 * np.pi * 0.3 * t) + 0.05 * rng.standard_normal(ecg.size)
    dirty += 0.1 * np.sin(2 * np.pi * 50 * t)  # powerline
    for signal in (dirty, -dirty, 1000 * dirty):  # polarity and units do not matter
        m = score(pan_tompkins(signal, fs), truth, ecg.size, fs)
        assert m.fn == 0 and m.fp == 0, m


def test_search_back_finds_a_small_beat_after_a_pause() -> None:
    # one beat at 45 % of the amplitude (20 % of the integrated energy): below the threshold
    # (25 % of the signal level), above the search-back's (half that), so only the search-back (no
    # QRS within 166 % of the mean RR) finds it
    fs = 360
    ecg = ecgsyn(20, fs, 60, seed=1)
    truth = true_r_peaks(ecg, fs)
    k = len(truth) // 2
    lo, hi = (truth[k - 1] + truth[k]) // 2, (truth[k] + truth[k + 1]) // 2
    ecg[lo:hi] *= 0.45
    m = score(pan_tompkins(ecg, fs), truth, ecg.size, fs)
    assert m.fn == 0 and m.fp == 0, m


def test_degenerate_inputs() -> None:
    assert pan_tompkins(np.zeros(5000), 360).size == 0  # flat
    assert pan_tompkins(np.ones(100), 360).size == 0  # shorter than the learning phase
    assert pan_tompkins(np.full(5000, np.nan), 360).size == 0
    with pytest.raises(ValueError, match="too low"):
        pan_tompkins(np.random.default_rng(0).standard_normal(1000), 30)
    with pytest.raises(ValueError, match="1-D"):
        pan_tompkins(np.zeros((2, 1000)), 360)


def test_registered_as_a_detector() -> None:
    fs = 500
    ecg = ecgsyn(10, fs, 70)
    assert "ecgbio_pantompkins" in DETECTORS
    out = detect_rpeaks(ecg, fs, "ecgbio_pantompkins")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, pan_tompkins(ecg, fs))
    with pytest.raises(ConfigError, match="too low"):
        detect_rpeaks(ecg[::20], 25, "ecgbio_pantompkins")


@pytest.mark.realdata
@pytest.mark.parametrize("record", ["100", "119"])
def test_mitdb_records(record: str) -> None:
    # 100: clean sinus rhythm; 119: ventricular bigeminy, whose PVCs have large T waves
    import wfdb

    path = SHARED_DATA / "mitdb" / record
    if not path.with_suffix(".atr").exists():
        pytest.skip(f"MIT-BIH record {record} not found under {SHARED_DATA}")
    rec = wfdb.rdrecord(str(path), channels=[0])
    reference = reference_beats(wfdb.rdann(str(path), "atr"))
    found = pan_tompkins(rec.p_signal[:, 0], rec.fs)
    m = match_peaks(found, reference, round(0.15 * rec.fs))
    assert m.sensitivity >= 0.999 and m.ppv >= 0.999, m
