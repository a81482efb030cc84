"""neurokit2's ECG cleaning (``method="neurokit"``) and two of its R-peak detectors, in numpy.

Why: ``import neurokit2`` imports scipy.signal, pandas, matplotlib, sklearn, pywavelets..., which
costs a cold ``ecgbio identify`` more than all the rest of its work (issue #15;
``benchmarks/results/cold_cli.json``). These
ports run exactly what neurokit2 0.2.13 runs for the calls ecgbio makes, on :mod:`ecgbio.filters`
in place of scipy:

* :func:`ecg_clean_neurokit` is ``nk.ecg_clean(x, sampling_rate, method="neurokit")``: a 5th-order
  0.5 Hz Butterworth high-pass (``sosfiltfilt``), then the 50 Hz powerline moving average
  (``filtfilt``);
* :func:`findpeaks_neurokit` is ``nk.ecg_peaks(cleaned, sampling_rate, method="neurokit")``'s
  detector (``_ecg_findpeaks_neurokit``: QRS regions where the smoothed absolute gradient exceeds
  1.5 times its long average; in each, the most prominent local maximum);
* :func:`findpeaks_rodrigues` is ``method="rodrigues2021"`` (``_ecg_findpeaks_rodrigues``: the
  squared double difference, integrated, then a three-state machine with a decaying threshold),
  with its per-sample Python loop replaced by numpy searches over the same comparisons.

Everything a comparison decides on is computed with neurokit2's (and scipy's) own arithmetic, bit
for bit, except the Butterworth high-pass, which differs from scipy's by float rounding
(:func:`ecgbio.filters.sosfilt`); ``tests/test_neurokit_ports.py`` shows the R-peaks identical to
neurokit2's on every real record it runs. neurokit2 is MIT licensed.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ecgbio.filters import butter_sos, fir_filtfilt, sosfiltfilt, uniform_filter1d_nearest

#: ``ecg_clean`` method names that :func:`ecg_clean_neurokit` stands for (neurokit2 lowercases).
NEUROKIT_CLEAN_NAMES = ("nk", "nk2", "neurokit", "neurokit2")


@lru_cache(maxsize=32)
def _highpass(sampling_rate: int) -> np.ndarray:
    return butter_sos(5, 0.5, "highpass", sampling_rate)


def ecg_clean_neurokit(signal: np.ndarray, sampling_rate: int, powerline: float = 50) -> np.ndarray:
    """``neurokit2.ecg_clean(x, sampling_rate, method="neurokit")`` on each row of ``signal``.

    Args:
        signal: (samples,) or (leads, samples), finite (neurokit2 would interpolate NaNs first:
            callers send non-finite signals to neurokit2 itself).
        sampling_rate: integer Hz, as neurokit2 receives it.
        powerline: mains frequency of the moving-average notch (neurokit2's default, 50 Hz).

    Raises:
        ValueError: the signal is not longer than the filters' padding (18 samples for the
            high-pass), with scipy's message; a sampling rate with no room for 0.5 Hz.
    """
    x = np.asarray(signal)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    clean = sosfiltfilt(_highpass(sampling_rate), x)
    taps = np.ones(int(sampling_rate / powerline)) if sampling_rate >= 100 else np.ones(2)
    return fir_filtfilt(taps, len(taps), clean)


def _smooth_boxcar(signal: np.ndarray, size: int) -> np.ndarray:
    """``nk.signal_smooth(signal, kernel="boxcar", size=size)``."""
    size = int(size)
    if size > len(signal) or size < 1:
        raise TypeError(
            "NeuroKit error: signal_smooth(): 'size' should be between 1 and length of the signal."
        )
    return uniform_filter1d_nearest(signal, size)


def _most_prominent_maxima(x: np.ndarray, begs: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each segment ``x[beg:end]``, the index (in ``x``) of what neurokit2 picks there: of the
    local maxima ``scipy.signal.find_peaks(x[beg:end], prominence=(None, None))`` finds, the first
    of the most prominent; -1 where the segment has none.

    neurokit2 calls find_peaks once a segment; here the segments are laid end to end and searched
    at once. A local maximum of a segment is a run of equal samples (a sample, or the middle of a
    plateau) with a lower sample on either side within the segment. Its prominence is scipy's:
    the peak's height above the higher of the lowest points on either side before the signal
    rises above the peak or the segment ends (no window).
    """
    n_seg = len(begs)
    best = np.full(n_seg, -1, dtype=np.int64)
    if n_seg == 0:
        return best
    lengths = ends - begs
    seg_start = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    total = int(lengths.sum())
    # position in x of every sample of every segment
    where = np.arange(total) + np.repeat(begs - seg_start, lengths)
    values = x[where]
    new_run = np.empty(total, dtype=bool)
    new_run[0] = True
    np.not_equal(values[1:], values[:-1], out=new_run[1:])
    new_run[seg_start] = True
    run_start = np.flatnonzero(new_run)
    run_end = np.concatenate((run_start[1:] - 1, [total - 1]))
    run_value = values[run_start]
    run_seg = np.repeat(np.arange(n_seg), lengths)[run_start]
    r = np.arange(1, len(run_start) - 1)
    r = r[
        (run_seg[r - 1] == run_seg[r])
        & (run_seg[r + 1] == run_seg[r])
        & (run_value[r - 1] < run_value[r])
        & (run_value[r + 1] < run_value[r])
    ]
    if r.size == 0:
        return best
    seg = run_seg[r]
    peaks = (run_start[r] + run_end[r]) // 2  # in the laid-out segments
    prominence = np.empty(peaks.size)
    widths = lengths[seg]
    lo = 0
    while lo < peaks.size:  # candidates in chunks of at most ~1M window cells
        hi = lo + 1
        width = widths[lo]
        while hi < peaks.size and (hi - lo + 1) * max(width, widths[hi]) <= 1 << 20:
            width = max(width, widths[hi])
            hi += 1
        prominence[lo:hi] = _prominences(
            values, peaks[lo:hi], seg_start[seg[lo:hi]], widths[lo:hi], width
        )
        lo = hi
    # per segment, the first candidate with the largest prominence
    firsts = np.flatnonzero(np.concatenate(([True], seg[1:] != seg[:-1])))
    top = np.maximum.reduceat(prominence, firsts)
    counts = np.diff(np.concatenate((firsts, [seg.size])))
    is_top = prominence == np.repeat(top, counts)
    segs_top, first_top = np.unique(seg[is_top], return_index=True)
    best[segs_top] = where[peaks[np.flatnonzero(is_top)[first_top]]]
    return best


def _prominences(
    x: np.ndarray, peaks: np.ndarray, begs: np.ndarray, widths: np.ndarray, width: int
) -> np.ndarray:
    """scipy's ``_peak_prominences`` (no window) of each peak within its segment."""
    cols = np.arange(width)
    window = x[np.minimum(begs[:, None] + cols, x.shape[0] - 1)]
    window[cols[None, :] >= widths[:, None]] = np.inf  # past the segment: the search stops
    q = (peaks - begs)[:, None]
    top = x[peaks][:, None]
    higher = window > top
    j = np.where(higher & (cols < q), cols, -1).max(axis=1)[:, None]
    left_min = np.where((cols > j) & (cols <= q), window, np.inf).min(axis=1)
    k = np.where(higher & (cols > q), cols, width).min(axis=1)[:, None]
    right_min = np.where((cols >= q) & (cols < k), window, np.inf).min(axis=1)
    return x[peaks] - np.maximum(left_min, right_min)


def findpeaks_neurokit(
    signal: np.ndarray,
    sampling_rate: int,
    smoothwindow: float = 0.1,
    avgwindow: float = 0.75,
    gradthreshweight: float = 1.5,
    minlenweight: float = 0.4,
    mindelay: float = 0.3,
) -> np.ndarray:
    """R-peaks of a cleaned ECG by neurokit2's own detector (``ecg_peaks(method="neurokit")``).

    Raises:
        TypeError: the signal is shorter than the 0.75 s gradient average (as neurokit2 does).
    """
    signal = np.asarray(signal)
    if not np.issubdtype(signal.dtype, np.floating):
        signal = signal.astype(np.float64)  # as scipy's find_peaks reads it (integers overflow)
    absgrad = np.gradient(signal)
    np.abs(absgrad, out=absgrad)
    smooth_kernel = int(np.rint(smoothwindow * sampling_rate))
    avg_kernel = int(np.rint(avgwindow * sampling_rate))
    smoothgrad = _smooth_boxcar(absgrad, smooth_kernel)
    gradthreshold = _smooth_boxcar(smoothgrad, avg_kernel)
    gradthreshold *= gradthreshweight  # the same product as gradthreshweight * avggrad
    min_delay = int(np.rint(sampling_rate * mindelay))

    qrs = np.greater(smoothgrad, gradthreshold).view(np.int8)
    edges = np.diff(qrs)
    beg_qrs = np.flatnonzero(edges == 1)  # not QRS, then QRS
    end_qrs = np.flatnonzero(edges == -1)  # QRS, then not
    if len(beg_qrs) == 0:
        return np.array([])
    end_qrs = end_qrs[end_qrs > beg_qrs[0]]
    num_qrs = min(beg_qrs.size, end_qrs.size)
    if num_qrs == 0:
        return np.zeros(0, dtype=int)
    begs, ends = beg_qrs[:num_qrs], end_qrs[:num_qrs]
    min_len = np.mean(ends - begs) * minlenweight
    long_enough = ~((ends - begs) < min_len)  # neurokit2 skips a QRS shorter than min_len
    candidates = _most_prominent_maxima(signal, begs[long_enough], ends[long_enough])
    peaks = [0]
    for peak in candidates.tolist():
        if peak >= 0 and peak - peaks[-1] > min_delay:  # enforce the minimum delay
            peaks.append(peak)
    peaks.pop(0)
    return np.asarray(peaks).astype(int)


def findpeaks_rodrigues(signal: np.ndarray, sampling_rate: int) -> np.ndarray:
    """R-peaks of a cleaned ECG by ``ecg_peaks(method="rodrigues2021")`` (Rodrigues et al. 2021,
    as neurokit2 implements it).

    neurokit2 walks its state machine one sample at a time in Python; here each state's scan is a
    numpy search that finds the same sample: the first maximum of the window (state 1), the end of
    the refractory wait (state 2), and the first sample at or above the threshold, whose sequence
    of values is built by the same repeated multiplication (state 3).

    Raises:
        ValueError: the signal is too short to differentiate (neurokit2's ``lfilter`` raises too).
    """
    signal = np.array(signal)
    n_win = int(np.clip(np.round(3 * sampling_rate / 128), 2, None))
    nd = n_win - 1
    pth = (0.7 * sampling_rate) / 128 + 2.7
    r_min = 0.26

    diff_ecg = signal[nd:] - signal[: len(signal) - nd] if len(signal) > nd else signal[:0]
    ddiff_ecg = diff_ecg[1:] - diff_ecg[:-1]
    squar = np.square(np.asarray(ddiff_ecg, dtype=np.float64))
    # scipy.signal.lfilter(ones(N), [1], squar) is np.convolve(ones(N), squar), cut to length
    processed = np.convolve(np.ones(n_win), squar)[: len(squar)]
    tf = len(processed)
    decay = np.exp(-pth / sampling_rate)

    rpeaks: list[int] = []
    i = 1
    r_amp_total: float = 0
    rpeakpos = 0
    chunk = max(16, int(sampling_rate))
    steps = np.full(chunk, decay)
    thresholds = np.empty(chunk)
    below = np.empty(chunk, dtype=bool)
    while i < tf:
        # state 1: the window's maximum (the first of equal ones; none if nothing is > 0).
        # Python's round() is numpy's np.round on a float: to the nearest, ties to even.
        tf1 = float(round(i + r_min * sampling_rate))
        stop = max(i, min(math.ceil(tf1), tf))
        r_peak_amp: float = 0
        if stop > i:
            window = processed[i:stop]
            j = int(window.argmax())
            if window[j] > r_peak_amp:
                r_peak_amp = window[j]
                rpeakpos = i + j + 1
            i = stop
        r_amp_total = (19 / 20) * r_amp_total + (1 / 20) * r_peak_amp
        rpeaks.append(rpeakpos)
        # state 2: wait
        d = tf1 - rpeakpos
        tf2 = i + float(round(0.2 * 2 - d))
        if i <= tf2:
            i = math.floor(tf2) + 1
        # state 3: the threshold decays by `decay` a sample until a sample reaches it
        thr = r_amp_total
        while i < tf:
            span = min(chunk, tf - i)
            steps[0] = thr
            np.cumprod(steps[:span], out=thresholds[:span])  # thr, thr*decay, ...
            np.less(processed[i : i + span], thresholds[:span], out=below[:span])
            if not below[:span].all():
                i += int(below[:span].argmin())
                break
            thr = thresholds[span - 1] * decay
            i += span
    return np.array(rpeaks, dtype="int")
