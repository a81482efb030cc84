"""beats: windows around R-peaks, alignment, quality gate, normalisation, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from ecgbio.beats import (
    amplitude_outliers,
    beat_quality,
    beats_from_file,
    cut_windows,
    detect_rpeaks,
    extract_beats,
    normalize_beats,
    refine_peaks,
)
from ecgbio.config import BeatConfig
from ecgbio.errors import BeatError, ConfigError
from ecgbio.records import read_record
from tests.conftest import simulate_ecg


def test_seed_window_is_expressible():
    seed = BeatConfig(rate=500, before_s=0.2, after_s=0.2)
    assert seed.window_samples == 200 and seed.samples_before == 100
    assert BeatConfig(rate=100, before_s=0.2, after_s=0.2).window_samples == 40


def test_windows_are_centred_on_the_r_wave(record_factory):
    # neurokit2's "simple" synthetic ECG throws rodrigues2021 (the default, best on real MIT-BIH
    # records) 80-120 ms off the apex; this test is about windowing, so it uses neurokit's detector
    config = BeatConfig(rate=500, before_s=0.2, after_s=0.4, peak_method="neurokit")
    beats = beats_from_file(record_factory("c", seconds=10, heart_rate=60), config)
    assert beats.waves.shape[1:] == (1, 300)
    assert 7 <= len(beats) <= 10
    # the R apex is the maximum of each (upright) beat and sits at samples_before
    assert np.all(np.abs(beats.waves[:, 0].argmax(axis=1) - config.samples_before) <= 1)
    assert np.all(np.diff(beats.peaks) > 0)


def test_multi_lead_windows(record_factory):
    config = BeatConfig(leads=("I", "II"), rate=250)
    beats = beats_from_file(record_factory("ml", seconds=8, fs=500, n_leads=2), config)
    assert beats.waves.shape[1:] == (2, config.window_samples)
    assert beats.leads == ("I", "II")


def test_extraction_is_deterministic(record_factory):
    path = record_factory("d", seconds=10, seed=3)
    a, b = beats_from_file(path), beats_from_file(path)
    np.testing.assert_array_equal(a.waves, b.waves)
    np.testing.assert_array_equal(a.peaks, b.peaks)


def test_corrupted_beat_is_rejected_for_quality(record_factory):
    config = BeatConfig(rate=500)  # the sample offsets below are at 500 Hz
    sig = simulate_ecg(10, 500, heart_rate=60, seed=1)
    rec = read_record(record_factory("q", signal=sig))
    clean_beats = extract_beats(rec, config)
    # replace one beat's neighbourhood with large-ish noise of similar amplitude
    p = int(clean_beats.peaks[4])
    rng = np.random.default_rng(0)
    sig[p - 150 : p + 220, 0] = rng.normal(scale=0.4, size=370)
    sig[p, 0] = 1.2  # keep a spike so that a peak is still detected there
    noisy = extract_beats(read_record(record_factory("q2", signal=sig)), config)
    assert noisy.rejected >= 1
    assert len(noisy) < len(clean_beats) + 1
    assert noisy.quality.min() >= BeatConfig().min_quality


def test_beat_quality_is_correlation_with_median():
    t = np.linspace(0, 1, 100)
    beat = np.exp(-((t - 0.5) ** 2) / 0.002)
    waves = np.stack([beat] * 5 + [-beat])[:, None, :].astype(np.float32)
    q = beat_quality(waves)
    assert q[:5] == pytest.approx(1.0, abs=1e-5)
    assert q[5] == pytest.approx(-1.0, abs=1e-5)


def test_amplitude_outliers():
    waves = np.ones((10, 1, 20), np.float32) * np.linspace(0, 1, 20)
    waves[3] *= 20
    out = amplitude_outliers(waves, 6.0)
    assert out.tolist() == [i == 3 for i in range(10)]
    assert not amplitude_outliers(waves, 0).any()


def test_cut_windows_skips_edges_and_masked_samples():
    signal = np.arange(100, dtype=float)[None, :]
    valid = np.ones(100, bool)
    valid[60:65] = False
    waves, kept = cut_windows(signal, np.array([2, 20, 50, 62, 97]), 5, 5, valid)
    assert kept.tolist() == [20, 50]
    assert waves.shape == (2, 1, 10)
    assert waves[0, 0, 5] == 20.0  # the peak sits at index `before`


def test_refine_moves_jittered_peaks_onto_the_apex():
    lead = np.zeros(1000)
    apexes = np.array([100, 300, 500, 700])
    lead[apexes] = 1.0
    lead[apexes + 1] = 0.5
    jittered = apexes + np.array([3, -4, 2, -1])
    np.testing.assert_array_equal(refine_peaks(lead, jittered, 500, 0.02), apexes)


def test_refine_follows_negative_polarity():
    lead = np.zeros(1000)
    apexes = np.array([100, 300, 500])
    lead[apexes] = -1.0
    lead[apexes + 5] = 0.3
    np.testing.assert_array_equal(refine_peaks(lead, apexes + 2, 500, 0.02), apexes)


@pytest.mark.parametrize("mode", ["none", "record", "beat"])
def test_normalisation(mode):
    rng = np.random.default_rng(0)
    waves = (rng.normal(size=(6, 2, 50)) * 3 + 1).astype(np.float32)
    out = normalize_beats(waves, mode)
    if mode == "none":
        assert out is waves
    elif mode == "beat":
        assert np.allclose(out.mean(axis=2), 0, atol=1e-5)
        assert np.allclose(out.std(axis=2), 1, atol=1e-4)
    else:
        scale = np.ptp(np.median(waves, axis=0), axis=1).mean()
        assert np.allclose(out, waves / scale)


def test_record_normalisation_keeps_relative_amplitude(record_factory):
    path = record_factory("n", seconds=10)
    raw = beats_from_file(path, BeatConfig(normalize="none"))
    rec = beats_from_file(path, BeatConfig(normalize="record"))
    ratio = raw.waves / np.where(rec.waves == 0, np.nan, rec.waves)
    assert np.nanstd(ratio) < 1e-3 * np.nanmean(np.abs(ratio))


def test_too_few_beats_names_file_and_counts(record_factory):
    path = record_factory("few", seconds=3, heart_rate=60)
    with pytest.raises(BeatError) as err:
        beats_from_file(path, BeatConfig(min_beats=10))
    msg = str(err.value)
    assert "few.hea: only" in msg and "usable beats (need 10;" in msg and "\n" not in msg


def test_noise_only_record_gives_a_beat_error(record_factory):
    noise = np.random.default_rng(2).normal(scale=0.05, size=(5000, 1))
    with pytest.raises(BeatError, match=r"noise\.hea: only \d+ usable beats"):
        beats_from_file(record_factory("noise", signal=noise), BeatConfig(min_beats=5))


def test_unknown_detector():
    with pytest.raises(ConfigError, match="unknown R-peak detector 'magic'"):
        detect_rpeaks(np.zeros(1000), 500, "magic")


def test_wrong_rate_is_refused(record_factory):
    rec = read_record(record_factory("w", seconds=4, fs=360))
    with pytest.raises(ConfigError, match="recording is at 360 Hz but the config expects 500 Hz"):
        extract_beats(rec, BeatConfig(rate=500))


def test_max_beats_keeps_the_first(record_factory):
    path = record_factory("mx", seconds=10)
    all_beats = beats_from_file(path)
    first = beats_from_file(path, BeatConfig(max_beats=3))
    np.testing.assert_array_equal(first.peaks, all_beats.peaks[:3])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rate": 10}, "rate must be between"),
        ({"before_s": 0.0, "after_s": 0.001}, "need at least 4"),
        ({"normalize": "loud"}, "normalize must be one of"),
        ({"leads": ()}, "leads must name at least one lead"),
        ({"leads": "I,all"}, "'all' cannot be combined"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BeatConfig(**kwargs)
