"""ecgbio.filters and ecgbio.neurokit_ports against scipy and neurokit2 on synthetic edge cases.

The ports replace scipy.signal / neurokit2 on the beats path only because they give the same
numbers (issue #15): bit for bit where scipy's arithmetic order is kept (filter design, FIR
filtering, moving average, resampling), to float rounding for the IIR filter. The real-record
equivalence is tests/test_neurokit_ports.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

from ecgbio import filters
from ecgbio.beats import clean, detect_rpeaks
from ecgbio.errors import ConfigError
from ecgbio.filters import reference_implementations
from ecgbio.neurokit_ports import (
    _most_prominent_maxima,
    ecg_clean_neurokit,
    findpeaks_neurokit,
    findpeaks_rodrigues,
)
from tests.conftest import simulate_ecg

RATES = (50, 64, 99, 100, 128, 250, 257, 300, 360, 500, 1000)
#: The IIR filter runs blocked (filters.sosfilt): this far from scipy at most, relative to the
#: signal's largest magnitude. Measured: <= 5.5e-12 on these signals, < 1e-12 on real records.
IIR_RTOL = 1e-10


def random_walk(n: int, seed: int = 0, leads: int | None = None) -> np.ndarray:
    """Baseline-wandering test signal: a random walk around 5 (a DC offset to remove)."""
    rng = np.random.default_rng(seed)
    shape = (n,) if leads is None else (leads, n)
    return np.cumsum(rng.normal(size=shape), axis=-1) * 0.05 + 5.0


@pytest.mark.parametrize("fs", (*RATES, 2000, 10_000))
@pytest.mark.parametrize(
    "order, cutoff, btype",
    [
        (5, 0.5, "highpass"),
        (1, 0.5, "highpass"),
        (2, 4.0, "highpass"),
        (4, 20.0, "lowpass"),
        (3, 20.0, "lowpass"),
        (2, (5.0, 15.0), "bandpass"),
        (3, (8.0, 20.0), "bandpass"),
    ],
)
def test_butter_sos_is_scipys_bit_for_bit(fs, order, cutoff, btype):
    try:
        want = scipy.signal.butter(order, cutoff, btype=btype, output="sos", fs=fs)
    except ValueError as exc:  # a cutoff above Nyquist: the same refusal
        with pytest.raises(ValueError, match="critical frequencies"):
            filters.butter_sos(order, cutoff, btype, fs)
        assert "critical frequencies" in str(exc)
        return
    got = filters.butter_sos(order, cutoff, btype, fs)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(filters.sosfilt_zi(got), scipy.signal.sosfilt_zi(want))


def test_butter_sos_refuses_what_scipy_refuses():
    with pytest.raises(ValueError, match="Wn < fs/2"):
        filters.butter_sos(5, 0.5, "highpass", 1)
    with pytest.raises(ValueError, match="greater than 0"):
        filters.butter_sos(5, 0.0, "highpass", 100)
    with pytest.raises(ValueError, match="invalid bandtype"):
        filters.butter_sos(5, 0.5, "notch", 100)


@pytest.mark.parametrize("fs", (100, 360, 500, 1000))
@pytest.mark.parametrize(
    # around the pad length (18 for the order-5 high-pass), the blocks, groups and chunks
    "n",
    (19, 20, 37, 63, 64, 65, 1023, 1024, 1025, 16_383, 16_384, 16_385, 40_000),
)
def test_sosfiltfilt_matches_scipy(fs, n):
    sos = scipy.signal.butter(5, 0.5, btype="highpass", output="sos", fs=fs)
    x = random_walk(n, seed=n)
    want = scipy.signal.sosfiltfilt(sos, x)
    got = filters.sosfiltfilt(sos, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=IIR_RTOL * np.abs(x).max())


def test_sosfiltfilt_pads_as_scipy_at_the_shortest_lengths():
    sos = scipy.signal.butter(5, 0.5, btype="highpass", output="sos", fs=500)
    for n in (1, 5, 18):  # not longer than the pad length: scipy's refusal, word for word
        with pytest.raises(ValueError) as want:
            scipy.signal.sosfiltfilt(sos, np.ones(n))
        with pytest.raises(ValueError) as got:
            filters.sosfiltfilt(sos, np.ones(n))
        assert str(got.value) == str(want.value)
    x = random_walk(19)
    np.testing.assert_allclose(
        filters.sosfiltfilt(sos, x), scipy.signal.sosfiltfilt(sos, x), rtol=0, atol=1e-12
    )


def test_sosfiltfilt_multi_lead_and_float32_match_scipy():
    sos = scipy.signal.butter(5, 0.5, btype="highpass", output="sos", fs=360)
    x = random_walk(5000, leads=3)
    np.testing.assert_allclose(
        filters.sosfiltfilt(sos, x), scipy.signal.sosfiltfilt(sos, x), rtol=0, atol=1e-10
    )
    # scipy pads a float32 signal in float32, then filters in float64: so does the port
    x32 = x.astype(np.float32)
    want = scipy.signal.sosfiltfilt(sos, x32)
    got = filters.sosfiltfilt(sos, x32)
    assert got.dtype == want.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_sosfilt_with_initial_state_matches_scipy_across_chunks():
    sos = scipy.signal.butter(4, (5.0, 15.0), btype="bandpass", output="sos", fs=250)
    x = random_walk(3 * filters.CHUNK + 17, leads=2)
    zi = np.random.default_rng(1).normal(size=(2, sos.shape[0], 2))
    want, _ = scipy.signal.sosfilt(sos, x, zi=zi.transpose(1, 0, 2))
    np.testing.assert_allclose(filters.sosfilt(sos, x, zi), want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("taps", (2, 3, 5, 7, 10, 20))
@pytest.mark.parametrize("n", (7, 31, 61, 1000))
def test_fir_filtfilt_is_scipys_bit_for_bit(taps, n):
    b = np.ones(taps)
    x = random_walk(n, seed=taps)
    try:
        want = scipy.signal.filtfilt(b, [len(b)], x, method="pad")
    except ValueError as exc:
        with pytest.raises(ValueError) as got:
            filters.fir_filtfilt(b, len(b), x)
        assert str(got.value) == str(exc)
        return
    np.testing.assert_array_equal(filters.fir_filtfilt(b, len(b), x), want)
    x2 = np.stack([x, -2 * x])
    np.testing.assert_array_equal(
        filters.fir_filtfilt(b, len(b), x2), scipy.signal.filtfilt(b, [len(b)], x2, method="pad")
    )


@pytest.mark.parametrize("size", (1, 2, 3, 10, 36, 75, 270))
def test_uniform_filter1d_nearest_is_ndimages_bit_for_bit(size):
    x = np.abs(np.gradient(random_walk(1000, seed=size)))
    want = scipy.ndimage.uniform_filter1d(x, size, mode="nearest")
    np.testing.assert_array_equal(filters.uniform_filter1d_nearest(x, size), want)


def test_kaiser_window_and_firwin_are_scipys_bit_for_bit():
    for m in (1, 2, 21, 101, 361, 5141):
        np.testing.assert_array_equal(filters.kaiser(m, 5.0), scipy.signal.windows.kaiser(m, 5.0))
    for up_down in (2, 5, 18, 257):
        numtaps = 20 * up_down + 1
        np.testing.assert_array_equal(
            filters.firwin_lowpass_kaiser(numtaps, 1.0 / up_down, 5.0),
            scipy.signal.firwin(numtaps, 1.0 / up_down, window=("kaiser", 5.0)),
        )


@pytest.mark.parametrize(
    "source, target",
    [
        (500, 100),
        (360, 100),
        (257, 100),
        (128, 100),
        (300, 100),
        (1000, 100),
        (250, 100),
        (100, 500),
        (360, 500),
        (250, 360),
        (100, 128),
    ],
)
@pytest.mark.parametrize("n", (1, 2, 3, 10, 999, 7777))
@pytest.mark.parametrize("padtype", ("line", "constant"))
def test_resample_poly_is_scipys_bit_for_bit(source, target, n, padtype):
    from fractions import Fraction

    ratio = Fraction(target / source).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    x = random_walk(n, seed=n, leads=2)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        want = scipy.signal.resample_poly(x, up, down, axis=1, padtype=padtype)
        got = filters.resample_poly(x, up, down, axis=1, padtype=padtype)
        np.testing.assert_array_equal(got, want)
        # one lead along axis 0 (as the CSV reader calls it), and float32 kept float32
        np.testing.assert_array_equal(
            filters.resample_poly(x[0], up, down, padtype=padtype),
            scipy.signal.resample_poly(x[0], up, down, padtype=padtype),
        )
        got32 = filters.resample_poly(x[0].astype(np.float32), up, down, padtype=padtype)
        want32 = scipy.signal.resample_poly(x[0].astype(np.float32), up, down, padtype=padtype)
    assert got32.dtype == want32.dtype == np.float32
    np.testing.assert_array_equal(got32, want32)


def test_resample_poly_identity_and_refusals():
    x = random_walk(50)
    out = filters.resample_poly(x, 3, 3)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    with pytest.raises(ValueError, match="not ported"):
        filters.resample_poly(x, 1, 2, padtype="mean")
    with pytest.raises(ValueError, match=">= 1"):
        filters.resample_poly(x, 0, 2)


# neurokit2's cleaning and detectors ------------------------------------------------------------
def nk_clean(x: np.ndarray, fs: int) -> np.ndarray:
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.stack([nk.ecg_clean(row, sampling_rate=fs, method="neurokit") for row in x])


def nk_peaks(cleaned: np.ndarray, fs: int, method: str) -> np.ndarray:
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.ecg_peaks(cleaned, sampling_rate=fs, method=method)
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


@pytest.mark.parametrize("fs", RATES)
def test_clean_and_detectors_match_neurokit2_at_odd_rates(fs):
    ecg = simulate_ecg(seconds=12, fs=fs, heart_rate=75, seed=fs, n_leads=2).T
    ecg = ecg + random_walk(ecg.shape[1], seed=fs, leads=2) * 0.2  # baseline wander
    want = nk_clean(ecg, fs)
    got = ecg_clean_neurokit(ecg, fs)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    for method, finder in (
        ("neurokit", findpeaks_neurokit),
        ("rodrigues2021", findpeaks_rodrigues),
    ):
        for lead in want:
            np.testing.assert_array_equal(finder(lead, fs), nk_peaks(lead, fs, method))


def test_clean_of_float32_records_matches_neurokit2():
    ecg = simulate_ecg(seconds=10, fs=500, seed=3).T.astype(np.float32) + np.float32(3.0)
    np.testing.assert_allclose(clean(ecg, 500), nk_clean(ecg, 500), rtol=0, atol=1e-10)


def test_detectors_on_noise_flat_and_quantised_signals_match_neurokit2():
    rng = np.random.default_rng(7)
    signals = {
        "noise": rng.normal(size=5000),
        "flat": np.zeros(5000),
        "quantised": np.round(simulate_ecg(seconds=10, fs=500, seed=4)[:, 0] * 20) / 20,
        "steps": np.repeat(rng.integers(0, 3, size=500), 10).astype(float),
    }
    for name, x in signals.items():
        for method, finder in (
            ("neurokit", findpeaks_neurokit),
            ("rodrigues2021", findpeaks_rodrigues),
        ):
            np.testing.assert_array_equal(
                finder(x, 500), nk_peaks(x, 500, method), err_msg=f"{name} {method}"
            )


def test_short_signals_fail_as_neurokit2_does():
    fs = 500
    x = simulate_ecg(seconds=10, fs=fs)[: fs // 2, 0]  # shorter than the 0.75 s average
    with pytest.raises(TypeError, match="signal_smooth"):
        findpeaks_neurokit(x, fs)
    with pytest.raises(ValueError):
        findpeaks_rodrigues(x[:10], fs)  # nothing left to integrate
    # detect_rpeaks: the same answer either way (nothing, or neurokit2's own exception)
    for method in ("neurokit", "rodrigues2021"):
        for n in (5, 12, 30, 200):
            outcomes = []
            for reference in (False, True):
                try:
                    if reference:
                        with reference_implementations():
                            outcomes.append(detect_rpeaks(x[:n], fs, method).tolist())
                    else:
                        outcomes.append(detect_rpeaks(x[:n], fs, method).tolist())
                except Exception as exc:  # whatever neurokit2 raises, the port must too
                    outcomes.append(type(exc).__name__)
            assert outcomes[0] == outcomes[1], (method, n, outcomes)
    # clean: too short for the filters' padding is neurokit2's ValueError, as a ConfigError
    with pytest.raises(ConfigError, match="padlen"):
        clean(x[None, :18], fs)
    with reference_implementations(), pytest.raises(ConfigError, match="padlen"):
        clean(x[None, :18], fs)


def test_non_finite_signals_go_to_neurokit2():
    x = simulate_ecg(seconds=10, fs=250, seed=5)[:, 0]
    x[100:110] = np.nan  # neurokit2 interpolates; the ports leave such signals to it
    with reference_implementations():
        want = detect_rpeaks(x, 250, "rodrigues2021")
        want_clean = clean(x[None], 250)
    np.testing.assert_array_equal(detect_rpeaks(x, 250, "rodrigues2021"), want)
    np.testing.assert_array_equal(clean(x[None], 250), want_clean)


def test_most_prominent_maxima_is_find_peaks_per_segment():
    rng = np.random.default_rng(1)
    for _ in range(500):
        n = int(rng.integers(3, 300))
        step = rng.choice([0.5, 1.0, 3.0, 10.0])  # coarse steps: plateaus and ties
        x = np.round(np.cumsum(rng.normal(size=n)) * step) / step
        k = int(rng.integers(1, 8))
        cuts = np.sort(rng.choice(np.arange(n + 1), size=min(n, 2 * k), replace=False))
        begs, ends = cuts[0::2], cuts[1::2]
        m = min(len(begs), len(ends))
        begs, ends = begs[:m], ends[:m]
        got = _most_prominent_maxima(x, begs, ends)
        for i, (b, e) in enumerate(zip(begs, ends, strict=True)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loc, props = scipy.signal.find_peaks(x[b:e], prominence=(None, None))
            want = b + loc[np.argmax(props["prominences"])] if loc.size else -1
            assert got[i] == want, (x[b:e], got[i], want)


def test_empty_and_integer_inputs_behave_as_scipy_and_neurokit2():
    """Edge cases the pipeline does not reach today but a caller of the ports may: empty arrays
    come back empty (as scipy's), integer signals are read as floats (as find_peaks reads them)."""
    import neurokit2 as nk

    from ecgbio.neurokit_ports import findpeaks_neurokit

    assert filters.uniform_filter1d_nearest(np.zeros(0), 3).shape == (0,)
    assert scipy.ndimage.uniform_filter1d(np.zeros(0), 3, mode="nearest").shape == (0,)
    for shape in ((0,), (0, 2)):
        ours = filters.resample_poly(np.zeros(shape), 1, 5, padtype="line")
        theirs = scipy.signal.resample_poly(np.zeros(shape), 1, 5, padtype="line")
        assert ours.shape == theirs.shape
    wave = (np.sin(np.linspace(0, 60, 5000)) * 1000).astype(np.int16)
    expected = nk.ecg_findpeaks(wave, 500, method="neurokit")["ECG_R_Peaks"]
    assert np.array_equal(findpeaks_neurokit(wave, 500), expected)
