"""From a :class:`~ecgbio.records.Recording` to aligned, quality-checked heartbeat windows.

Steps (each a plain function, so they can be tested and reused on their own):
clean (``neurokit2.ecg_clean``) -> detect R-peaks (``neurokit2.ecg_peaks``) -> refine each peak onto the
R wave -> cut fixed windows -> score every beat against the record's median beat and drop outliers ->
normalise amplitude. The result is deterministic: no randomness anywhere.

The default cleaning (``neurokit``) and the ``neurokit`` and ``rodrigues2021`` detectors run on
:mod:`ecgbio.neurokit_ports`, numpy ports that give neurokit2's R-peaks on real records
(``tests/test_neurokit_ports.py``) without importing it (~1 s of a cold ``ecgbio identify``); the
other methods import neurokit2 when they are used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ecgbio.config import BeatConfig
from ecgbio.errors import BeatError, ConfigError, LeadError, RecordError
from ecgbio.filters import using_reference
from ecgbio.neurokit_ports import (
    NEUROKIT_CLEAN_NAMES,
    ecg_clean_neurokit,
    findpeaks_neurokit,
    findpeaks_rodrigues,
)
from ecgbio.records import (
    AMPLITUDE_MV,
    Recording,
    normalize_lead_name,
    read_record,
    record_file,
)

#: R-peak detectors offered, each measured on all 48 MIT-BIH records by
#: ``experiments/rpeaks_mitdb.py`` (README): ecgbio's own Pan-Tompkins (:mod:`ecgbio.peaks`) and
#: ``neurokit2.ecg_peaks`` methods. ``christov2004`` (+P 54 %, 15 s a record) and ``emrich2023``
#: (needs the optional ``ts2vg`` package) are left out.
DETECTORS = (
    "ecgbio_pantompkins",
    "rodrigues2021",
    "neurokit",
    "pantompkins1985",
    "hamilton2002",
    "elgendi2010",
    "engzeemod2012",
    "kalidas2017",
    "nabian2018",
)
#: Seconds before / after the R-peak over which a beat's quality (correlation with the record's
#: median beat) is judged: the whole heartbeat, P wave to end of T, however short the cut window.
QUALITY_CONTEXT_S = (0.25, 0.45)
#: A record where more than this share of the beats touch a saturation rail
#: (:attr:`ecgbio.records.Recording.rail`) is refused as clipped; below it those beats are dropped.
#: A clean record has hardly a beat on a rail and a clipped one most of its beats, so the share
#: separates them with room either side:
#: measured by experiments/record_bounds.py (results/record-bounds.json).
MAX_CLIPPED_SHARE = 0.2
#: Detectors whose authors prescribe their own pre-filter (``neurokit2.ecg_clean`` method).
_DETECTOR_CLEAN = {
    "pantompkins1985": "pantompkins1985",
    "hamilton2002": "hamilton2002",
    "elgendi2010": "elgendi2010",
    "engzeemod2012": "engzeemod2012",
}
#: Detectors run by ecgbio's ports of neurokit2 (:mod:`ecgbio.neurokit_ports`), with the
#: ``neurokit`` pre-filter as neurokit2 applies it to them: same R-peaks, no neurokit2 import.
_PORTED_DETECTORS = {"neurokit": findpeaks_neurokit, "rodrigues2021": findpeaks_rodrigues}


@dataclass
class Beats:
    """Beat windows of one record.

    Attributes:
        waves: float32 (beats, leads, samples); R-peak at index ``config.samples_before``.
        peaks: int64 (beats,) R-peak sample positions in the resampled record.
        quality: float32 (beats,) correlation with the record's median beat (1 = identical shape).
        leads: lead names of the rows of ``waves``.
        fs: sampling rate of ``waves``.
        detected: R-peaks found before any rejection.
        rejected: beats dropped for quality, amplitude or clipping (windows cut off by the record's
            edges or a masked defect are not counted: they are not beats we could judge).
        clipped: of ``rejected``, the beats dropped because they touch a saturation rail.
    """

    waves: np.ndarray
    peaks: np.ndarray
    quality: np.ndarray
    leads: tuple[str, ...]
    fs: float
    detected: int
    rejected: int
    clipped: int = 0

    def __len__(self) -> int:
        return int(self.waves.shape[0])


def clean(signal: np.ndarray, fs: float, method: str = "neurokit") -> np.ndarray:
    """Band-limit each lead (baseline wander and powerline out), as ``neurokit2.ecg_clean`` does.

    ``neurokit`` (the default) runs :func:`ecgbio.neurokit_ports.ecg_clean_neurokit` on a finite
    (leads, samples) signal; every other case goes to neurokit2 itself.
    """
    x = np.asarray(signal)
    if (
        not using_reference()
        and isinstance(method, str)
        and method.lower() in NEUROKIT_CLEAN_NAMES
        and x.ndim == 2
        and np.isfinite(x).all()
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return np.asarray(ecg_clean_neurokit(x, int(round(fs))), dtype=np.float64)
            except ValueError as exc:  # what neurokit2 raises here (too short a signal)
                raise ConfigError(
                    f"cannot clean a {x.shape[-1]}-sample signal with {method!r}: {exc}"
                ) from exc
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = [
                nk.ecg_clean(lead, sampling_rate=int(round(fs)), method=method) for lead in signal
            ]
        except ValueError as exc:
            raise ConfigError(f"unknown cleaning method {method!r}: {exc}") from exc
    return np.asarray(out, dtype=np.float64)


def detect_rpeaks(signal: np.ndarray, fs: float, method: str = "neurokit") -> np.ndarray:
    """R-peak sample indices of a single-lead raw signal (mV), with the detector's own pre-filter.

    ``ecgbio_pantompkins`` is :func:`ecgbio.peaks.pan_tompkins`; the others are ``neurokit2``'s
    (``neurokit`` and ``rodrigues2021`` through :mod:`ecgbio.neurokit_ports`, the same peaks
    without importing neurokit2).

    Args:
        signal: 1-D raw lead in millivolts.
        fs: sampling rate in Hz.
        method: one of :data:`DETECTORS`.
    """
    if method not in DETECTORS:
        raise ConfigError(f"unknown R-peak detector {method!r}; choose from {', '.join(DETECTORS)}")
    if method == "ecgbio_pantompkins":
        from ecgbio.peaks import pan_tompkins

        try:
            return pan_tompkins(signal, fs)  # its own band-pass: no pre-filter
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    sr = int(round(fs))
    raw = np.asarray(signal, float)
    finder = _PORTED_DETECTORS.get(method)
    if finder is not None and not using_reference() and np.isfinite(raw).all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cleaned = ecg_clean_neurokit(raw, sr)
            try:
                found = finder(cleaned, sr)
            except (ValueError, IndexError, ZeroDivisionError):
                return np.zeros(0, dtype=np.int64)  # as neurokit2 fails on signals without beats
        peaks = np.asarray(found, dtype=np.int64)
        return np.unique(peaks[(peaks >= 0) & (peaks < len(signal))])
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.ecg_clean(
            np.asarray(signal, float),
            sampling_rate=sr,
            method=_DETECTOR_CLEAN.get(method, "neurokit"),
        )
        try:
            _, info = nk.ecg_peaks(cleaned, sampling_rate=sr, method=method)
        except (ValueError, IndexError, ZeroDivisionError):
            return np.zeros(0, dtype=np.int64)  # detectors fail on signals without beats
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
    return np.unique(peaks[(peaks >= 0) & (peaks < len(signal))])


def qrs_polarity(lead: np.ndarray, peaks: np.ndarray, fs: float) -> int:
    """+1 if the record's QRS complexes point up on this lead, -1 if down (e.g. aVR)."""
    if peaks.size == 0:
        return 1
    half = max(1, int(round(0.05 * fs)))
    ups, downs = [], []
    for p in peaks:
        seg = lead[max(0, p - half) : p + half + 1]
        if seg.size:
            ups.append(seg.max())
            downs.append(-seg.min())
    return 1 if np.median(ups) >= np.median(downs) else -1


def refine_peaks(lead: np.ndarray, peaks: np.ndarray, fs: float, window_s: float) -> np.ndarray:
    """Move each peak to the dominant extremum within ``+-window_s``: beats align on the R wave.

    Detectors mark a fiducial that can sit a few samples off the R apex and differently from beat to
    beat; that jitter blurs templates, so every beat is snapped to the same landmark. The polarity is
    decided once per record so that RS-shaped complexes don't alternate between R and S.
    """
    half = int(round(window_s * fs))
    if half < 1 or peaks.size == 0:
        return peaks
    sign = qrs_polarity(lead, peaks, fs)
    out = np.empty_like(peaks)
    for i, p in enumerate(peaks):
        lo, hi = max(0, p - half), min(len(lead), p + half + 1)
        out[i] = lo + int(np.argmax(sign * lead[lo:hi]))
    return np.unique(out)


def cut_windows(
    signal: np.ndarray, peaks: np.ndarray, before: int, after: int, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``signal[:, p-before : p+after]``; peaks too close to an edge or a defect are skipped."""
    n = signal.shape[1]
    keep = (peaks - before >= 0) & (peaks + after <= n)
    if valid is not None and not valid.all():
        bad = np.concatenate(([0], np.cumsum(~valid)))  # prefix count of invalid samples
        lo, hi = np.clip(peaks - before, 0, n), np.clip(peaks + after, 0, n)
        keep &= (bad[hi] - bad[lo]) == 0
    peaks = peaks[keep]
    if peaks.size == 0:
        return np.zeros((0, signal.shape[0], before + after), np.float32), peaks
    idx = peaks[:, None] + np.arange(-before, after)[None, :]  # (beats, samples)
    waves = signal[:, idx].transpose(1, 0, 2)  # (beats, leads, samples)
    return np.ascontiguousarray(waves, dtype=np.float32), peaks


def context_windows(signal: np.ndarray, peaks: np.ndarray, before: int, after: int) -> np.ndarray:
    """Windows ``signal[:, p-before : p+after]`` for every peak, the record's edges repeated where
    a window runs past them (for judging a beat, never for the model's input)."""
    padded = np.pad(signal, ((0, 0), (before, after)), mode="edge")
    idx = peaks[:, None] + np.arange(after + before)[None, :]  # shifted by the padding
    return np.ascontiguousarray(padded[:, idx].transpose(1, 0, 2), dtype=np.float32)


def beat_quality(waves: np.ndarray) -> np.ndarray:
    """Pearson correlation of every beat with the record's median beat, averaged over leads."""
    if len(waves) == 0:
        return np.zeros(0, np.float32)
    waves = np.asarray(waves, dtype=np.float64)  # float32 squares overflow on absurd amplitudes
    template = np.median(waves, axis=0)  # (leads, samples)
    x = waves - waves.mean(axis=2, keepdims=True)
    t = template - template.mean(axis=1, keepdims=True)
    num = (x * t[None]).sum(axis=2)
    den = np.sqrt((x**2).sum(axis=2) * (t**2).sum(axis=1)[None]) + 1e-12
    return (num / den).mean(axis=1).astype(np.float32)


def amplitude_outliers(waves: np.ndarray, max_z: float) -> np.ndarray:
    """True for beats whose peak-to-peak amplitude is > ``max_z`` robust SDs from the median."""
    if max_z <= 0 or len(waves) < 3:
        return np.zeros(len(waves), bool)
    ptp = np.ptp(waves, axis=2).mean(axis=1)
    med = np.median(ptp)
    mad = 1.4826 * np.median(np.abs(ptp - med)) + 1e-6 * max(med, 1e-6)
    return np.abs(ptp - med) / mad > max_z


def normalize_beats(waves: np.ndarray, mode: str) -> np.ndarray:
    """Amplitude normalisation: ``none`` (mV), ``record`` (/ median-beat amplitude), ``beat`` (z)."""
    if mode == "none" or len(waves) == 0:
        return waves
    if mode == "record":
        scale = float(np.ptp(np.median(waves, axis=0), axis=1).mean())
        return waves / max(scale, 1e-6)
    if mode == "beat":
        mean = waves.mean(axis=2, keepdims=True)
        std = waves.std(axis=2, keepdims=True)
        return (waves - mean) / np.maximum(std, 1e-6)
    raise ConfigError(f"unknown normalisation {mode!r}")


def extract_beats(recording: Recording, config: BeatConfig = BeatConfig()) -> Beats:
    """Clean, detect, align, cut, score and normalise the beats of ``recording``.

    The recording must already be at ``config.rate`` (``read_record(..., rate=config.rate)``).

    Raises:
        BeatError: fewer than ``config.min_beats`` usable beats (message names the file and counts).
    """
    if abs(recording.fs - config.rate) > 1e-6:
        raise ConfigError(
            f"recording is at {recording.fs:g} Hz but the config expects {config.rate} Hz"
        )
    fs = recording.fs
    hea = record_file(recording.path)
    if not np.isfinite(recording.signal).all():
        raise RecordError("signal holds NaN or infinite values", hea)
    cleaned = clean(recording.signal, fs, config.clean_method)
    det = _detection_lead(recording, config)
    peaks = detect_rpeaks(recording.signal[det], fs, config.peak_method)
    detected = int(peaks.size)
    if config.refine_peaks:
        peaks = refine_peaks(cleaned[det], peaks, fs, config.refine_window_s)
    waves, peaks = cut_windows(
        cleaned, peaks, config.samples_before, config.samples_after, recording.mask
    )
    # Quality is judged on the whole heartbeat (P wave to end of T) whatever window the model
    # reads: on a short window, R-aligned noise correlates with its own median well enough to pass.
    context = (
        max(config.samples_before, round(QUALITY_CONTEXT_S[0] * fs)),
        max(config.samples_after, round(QUALITY_CONTEXT_S[1] * fs)),
    )
    quality = beat_quality(context_windows(cleaned, peaks, *context))
    keep = np.ones(len(waves), bool)
    if config.min_quality > 0:
        keep &= quality >= config.min_quality
    keep &= ~amplitude_outliers(waves, config.max_amplitude_z)
    on_rail = touches(recording.rail, peaks, config.samples_before, config.samples_after)
    if len(waves) and on_rail.mean() > MAX_CLIPPED_SHARE:
        raise BeatError(
            f"{int(on_rail.sum())} of {len(waves)} beats ({100 * on_rail.mean():.0f}%) touch a "
            f"saturation rail: the signal is clipped ({'; '.join(recording.rails)}); record it "
            f"again with a lower gain or a wider input range",
            hea,
        )
    clipped = int((keep & on_rail).sum())
    keep &= ~on_rail
    rejected = int((~keep).sum())
    # a wrong unit is the more useful message, even when it also leaves too few beats
    check_amplitude(waves[keep] if keep.any() else waves, recording, hea)
    waves, peaks, quality = waves[keep], peaks[keep], quality[keep]
    if len(waves) < config.min_beats:
        why = f"{rejected - clipped} rejected for quality" + (
            f", {clipped} for clipping" if clipped else ""
        )
        raise BeatError(
            f"only {len(waves)} usable beats (need {config.min_beats}; {detected} R-peaks detected, "
            f"{why})",
            hea,
        )
    if config.max_beats:
        waves, peaks, quality = (a[: config.max_beats] for a in (waves, peaks, quality))
    waves = normalize_beats(waves, config.normalize).astype(np.float32)
    return Beats(
        waves, peaks.astype(np.int64), quality, recording.leads, fs, detected, rejected, clipped
    )


def touches(flags: np.ndarray | None, peaks: np.ndarray, before: int, after: int) -> np.ndarray:
    """True for each peak whose window ``[p-before, p+after)`` holds a flagged sample."""
    if flags is None or peaks.size == 0:
        return np.zeros(peaks.size, bool)
    count = np.concatenate(([0], np.cumsum(flags)))
    lo = np.clip(peaks - before, 0, flags.size)
    hi = np.clip(peaks + after, 0, flags.size)
    return (count[hi] - count[lo]) > 0


def check_amplitude(waves: np.ndarray, recording: Recording, header: str) -> None:
    """Refuse a record whose median beat (mV) is above :data:`AMPLITUDE_MV` on any lead, or
    below it on every lead: one lead can be nearly isoelectric (aVL, III, or lead I of a vertical
    heart) in a body, but a units or gain error shrinks every lead alike."""
    if len(waves) == 0:
        return
    amplitude = np.ptp(np.median(waves, axis=0), axis=1)  # (leads,) median-beat peak to peak
    low, high = AMPLITUDE_MV
    largest = int(np.argmax(amplitude))
    suspects = [i for i, amp in enumerate(amplitude) if amp > high]
    if amplitude[largest] < low:
        suspects = [largest]
    for i in suspects:
        lead, amp = recording.leads[i], float(amplitude[i])
        side = "below" if amp < low else "above"
        where = (
            f"lead {lead}" if amp > high or len(amplitude) == 1 else f"every lead ({lead} largest)"
        )
        raise RecordError(
            f"median beat on {where} is {amp:.3g} mV peak to peak, {side} what a body "
            f"produces ({low:g}-{high:g} mV): are the header's units and gain right? "
            f"(a unit or gain 1000x off, e.g. V or uV for mV, gives this)",
            header,
        )


def beats_from_file(
    path,
    config: BeatConfig = BeatConfig(),
    max_duration_s: float | None = None,
    fs: float | None = None,
    lead: str | None = None,
) -> Beats:
    """Read ``path`` (a record path or an :class:`~ecgbio.records.Signal`) with ``config``'s
    leads and rate (at most its first ``max_duration_s`` seconds; ``fs``: the rate of a CSV
    without a time column), then :func:`extract_beats`. ``lead``: the record's lead read in place
    of each of ``config``'s (a stand-in, :func:`reading_leads`)."""
    rec = read_record(
        path,
        leads=reading_leads(config, lead),
        rate=config.rate,
        min_duration_s=config.min_duration_s,
        max_duration_s=max_duration_s,
        fs=fs,
    )
    return extract_beats(rec, config)


def reading_leads(config: BeatConfig, lead: str | None = None) -> tuple[str, ...]:
    """The leads to read for ``config``: its own, or ``lead`` standing in for each of them (a
    Holter's ``ECG1``, AliveCor's ``ECG`` for a model of lead I; as MIT-BIH's MLII in prepare).
    The recording keeps the name of what was read."""
    if not lead:
        return config.leads
    if config.all_leads or "," in lead:
        raise ConfigError(
            f"--lead {lead}: one lead of the record stands in for the model's named lead(s) "
            f"(here {','.join(config.leads)}); it cannot stand in for all leads or be several"
        )
    return (lead.strip(),) * len(config.leads)


def _detection_lead(recording: Recording, config: BeatConfig) -> int:
    if not config.detect_lead:
        return 0
    names = [normalize_lead_name(n) for n in recording.leads]
    if len(set(names)) == 1:  # one lead, or a stand-in read for every lead: all are the same
        return 0
    key = normalize_lead_name(config.detect_lead)
    if key not in names:
        raise LeadError(
            f"detection lead {config.detect_lead!r} is not among the kept leads "
            f"({', '.join(recording.leads)})",
            record_file(recording.path),
        )
    return names.index(key)
