"""What differs between two records of one person (another session), measured on PTB-XL.

The shipped model trains on persons seen in one session and must recognise them on another day, so
its augmentation should imitate what really changes between one person's records. This recipe
measures it on the patients with >= 2 records: each patient's earliest record against every later
one (``cross_session``), and, as the same-session reference, the first against the second half of
one record (``within_record``, every record of the root by default). ``cross_session_halves`` pairs
the earlier record's first half with the later record's second half, so that its templates rest on
as few beats as the within-record ones: the gap between those two is what is session-specific.

Beats are cut by the project's own pipeline (:func:`ecgbio.beats.extract_beats`, leads I and II,
millivolts, the shipped model's rate); the window is widened to the whole heartbeat
(``QUALITY_CONTEXT_S``, over which beat quality is judged anyway) for the measures that need the T
wave, and everything the model reads is measured on its own 0.2 s / 0.2 s lead-I window.

Quantities (each pair: later vs earlier; each record: second vs first half):

- ``gain_ptp`` / ``gain_r``: log ratio of the lead-I median beat's peak-to-peak amplitude (model
  window) and of the median R-peak amplitude; ``gain_vector``: of the largest frontal QRS vector
  (from I and II), the amplitude change that is not an axis turn;
- ``axis_deg``: signed change of the frontal QRS axis, ``atan2(net QRS area of (2 II - I)/sqrt(3),
  net QRS area of I)`` on the median beats (Einthoven);
- ``turn_deg``: the turn of :func:`ecgbio.training.augment.rotate_lead_axis` that best maps the
  earlier lead-I median beat onto the later one (model window), as an axis change;
- ``hr``: log ratio of the median RR interval; ``stretch``: log of the time scale about the R peak
  that best maps the earlier median beats (I and II, whole heartbeat) onto the later ones, as
  :func:`~ecgbio.training.augment.warp_beats` stretches (``stretch_model``: fitted on the model's
  window only, where the T wave hardly shows); ``rt``: log ratio of the R-to-T-peak time;
  ``qrs_ms``: change of the QRS width (spatial velocity above a quarter of its peak), in ms;
- ``noise``: log ratio of the beat-to-beat residual (each beat minus its segment's median beat,
  offset and linear ramp removed: the part the augmentation's Gaussian noise imitates), relative to
  the beat's standard deviation as :func:`~ecgbio.training.augment.augment_beats` scales it;
  ``noise_add``: the noise (in beat SDs) to add to the cleaner segment to match the noisier;
- ``wander``: log ratio of the raw lead I's low-frequency (< 0.5 Hz) RMS (the baseline wander the
  cleaning filter removes before the model sees it);
- ``shape``: 1 - correlation of the lead-I median beats on the model's window (gain and offset
  free), also after undoing the best turn (``shape_turned``) and the best stretch and turn
  fitted together (``shape_turned_stretched``): what augmentation of those kinds could at best
  explain (both are fitted, so they shrink the within-record reference too).

    python -m experiments.session_drift --root ../shared/data/ptb-xl-subset
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ecgbio.beats import QUALITY_CONTEXT_S
from ecgbio.config import BeatConfig
from ecgbio.provenance import SHARED_DATA
from experiments._common import base_parser, default_results, write_results

#: The shipped model's beat window (lead I, 0.2 s either side of the R peak).
MODEL_BEAT = BeatConfig()
#: Percentiles of |change| reported for every quantity.
PERCENTILES = (10, 25, 50, 75, 90)
#: Augmentation ranges are set to cover this percentile of the cross-session |changes|.
COVER = 90
QRS_HALF_S = 0.06  # net QRS area: R +- 60 ms
PR_BASELINE_S = (-0.10, -0.06)  # isoelectric reference before the QRS
T_SEARCH_S = (0.12, 0.45)  # where the T peak is looked for
WANDER_HZ = 0.5
STRETCH_GRID = np.exp(np.linspace(-0.35, 0.35, 281))  # time scales tried (-30 % to +42 %)
TURN_GRID_DEG = np.arange(-90.0, 90.5, 0.5)
#: Quantities that are log ratios (reported as % in the table).
LOG_RATIOS = (
    "gain_ptp",
    "gain_r",
    "gain_vector",
    "hr",
    "stretch",
    "stretch_model",
    "rt",
    "noise",
    "wander",
)
TABLE = (
    ("gain_ptp", "gain p2p (%)"),
    ("gain_r", "R amplitude (%)"),
    ("gain_vector", "QRS vector (%)"),
    ("axis_deg", "QRS axis (deg)"),
    ("turn_deg", "fitted turn (deg)"),
    ("hr", "RR interval (%)"),
    ("stretch", "fitted stretch (%)"),
    ("stretch_model", "stretch, model win (%)"),
    ("rt", "R-T peak time (%)"),
    ("qrs_ms", "QRS width (ms)"),
    ("noise", "noise/SD (%)"),
    ("noise_add", "noise to add (SD)"),
    ("wander", "baseline wander (%)"),
    ("shape", "1-corr"),
    ("shape_turned", "1-corr, turn undone"),
    ("shape_turned_stretched", "1-corr, turn+stretch"),
)


def measure_config(rate: int) -> BeatConfig:
    """The shipped model's beat pipeline with leads I and II and the whole heartbeat cut."""
    return BeatConfig(
        leads=("I", "II"),
        rate=rate,
        before_s=QUALITY_CONTEXT_S[0],
        after_s=QUALITY_CONTEXT_S[1],
        normalize="none",
    )


# --------------------------------------------------------------------------------------------
# Measuring one segment (a record or half a record)
# --------------------------------------------------------------------------------------------


def model_window(r_index: int, fs: float) -> slice:
    """Indices of the shipped model's window inside a beat whose R peak sits at ``r_index``."""
    before = round(MODEL_BEAT.before_s * fs)
    after = round(MODEL_BEAT.after_s * fs)
    return slice(r_index - before, r_index + after)


def vertical(lead_i: np.ndarray, lead_ii: np.ndarray) -> np.ndarray:
    """The heart vector's vertical (aVF-direction) component, ``(2 II - I) / sqrt(3)``."""
    return (2 * lead_ii - lead_i) / math.sqrt(3)


def qrs_axis(template: np.ndarray, r_index: int, fs: float) -> float:
    """Frontal QRS axis in degrees from the net QRS areas of I and (2 II - I)/sqrt(3)."""
    h = _baselined(template, r_index, fs)
    half = max(1, round(QRS_HALF_S * fs))
    qrs = slice(r_index - half, r_index + half + 1)
    x = float(h[0, qrs].sum())
    y = float(h[1, qrs].sum())
    return math.degrees(math.atan2(y, x))


def _baselined(template: np.ndarray, r_index: int, fs: float) -> np.ndarray:
    """Heart vector ``(Hx = I, Hy)`` of a (2, samples) I/II template, PR segment at zero."""
    h = np.stack([template[0], vertical(template[0], template[1])])
    lo = max(0, r_index + round(PR_BASELINE_S[0] * fs))
    hi = max(lo + 1, r_index + round(PR_BASELINE_S[1] * fs))
    return h - h[:, lo:hi].mean(axis=1, keepdims=True)


def qrs_vector(template: np.ndarray, r_index: int, fs: float) -> float:
    """Largest frontal heart-vector magnitude within the QRS (mV): amplitude free of the axis."""
    h = _baselined(template, r_index, fs)
    half = max(1, round(QRS_HALF_S * fs))
    return float(np.hypot(*h[:, r_index - half : r_index + half + 1]).max())


def qrs_width_ms(template: np.ndarray, r_index: int, fs: float, level: float = 0.25) -> float:
    """Span around the R peak where the heart vector's speed exceeds ``level`` of its peak, in ms.

    Crossings are interpolated between samples, so a change smaller than a sample shows.
    """
    h = np.stack([template[0], vertical(template[0], template[1])])
    speed = np.hypot(*np.diff(h, axis=1))  # speed[k] between samples k and k+1
    half = round(0.1 * fs)
    lo, hi = max(0, r_index - half), min(len(speed), r_index + half)
    seg = speed[lo:hi]
    if seg.size < 3 or seg.max() <= 0:
        return float("nan")
    thr = level * seg.max()
    above = np.flatnonzero(seg >= thr)
    first, last = int(above[0]), int(above[-1])
    start = first - (_frac(seg, first - 1, first, thr) if first > 0 else 0.0)
    end = last + (_frac(seg, last + 1, last, thr) if last + 1 < seg.size else 0.0)
    return float((end - start + 1) / fs * 1000)


def _frac(seg: np.ndarray, outside: int, inside: int, thr: float) -> float:
    """How far past ``inside`` (towards ``outside``, in samples) the level ``thr`` is crossed."""
    a, b = seg[inside], seg[outside]
    return float((a - thr) / (a - b)) if a != b else 0.0


def rt_time_s(template: np.ndarray, r_index: int, fs: float) -> float:
    """R peak to T peak (largest heart-vector magnitude in ``T_SEARCH_S``), parabola-refined."""
    h = _baselined(template, r_index, fs)
    mag = np.hypot(h[0], h[1])
    lo = r_index + round(T_SEARCH_S[0] * fs)
    hi = min(mag.size, r_index + round(T_SEARCH_S[1] * fs) + 1)
    if hi - lo < 3:
        return float("nan")
    k = lo + int(np.argmax(mag[lo:hi]))
    offset = 0.0
    if lo < k < hi - 1:
        a, b, c = mag[k - 1], mag[k], mag[k + 1]
        den = a - 2 * b + c
        offset = 0.5 * (a - c) / den if den else 0.0
    return float((k + offset - r_index) / fs)


def median_rr_s(peaks: np.ndarray, fs: float) -> float:
    """Median RR from the kept beats' R peaks; a gap left by a rejected beat counts as k RRs."""
    if peaks.size < 2:
        return float("nan")
    diffs = np.diff(np.sort(peaks)).astype(float)
    guess = np.median(diffs)
    beats = np.maximum(1, np.round(diffs / guess))
    return float(np.median(diffs / beats) / fs)


def residual_levels(lead_i: np.ndarray, template_i: np.ndarray) -> dict[str, float]:
    """Each beat minus the median beat, split into offset + linear ramp + the rest (the noise).

    ``lead_i``: (beats, samples) on the model window; levels are relative to each beat's standard
    deviation (as the augmentation scales them) and summarised by their median over beats.
    """
    n = lead_i.shape[1]
    ramp = np.linspace(-1, 1, n)
    design = np.stack([np.ones(n), ramp], axis=1)  # (samples, 2)
    residual = lead_i - template_i[None]
    coef, *_ = np.linalg.lstsq(design, residual.T, rcond=None)  # (2, beats)
    rest = residual - (design @ coef).T
    noise = np.sqrt((rest**2).mean(axis=1))
    std = lead_i.std(axis=1) + 1e-9
    return {
        "noise": float(np.median(noise / std)),
        "noise_mv": float(np.median(noise)),
        "offset": float(np.median(np.abs(coef[0]) / std)),
        "drift": float(np.median(np.abs(coef[1]) / std)),
    }


def segment_features(
    waves: np.ndarray, peaks: np.ndarray, fs: float, r_index: int, wander: float = float("nan")
) -> dict[str, Any]:
    """Everything compared between two segments, from their (beats, [I, II], samples) beats.

    ``wander``: the segment's raw low-frequency RMS (:func:`wander_rms`), carried along.
    """
    waves = np.asarray(waves, dtype=np.float64)
    template = np.median(waves, axis=0)  # (2, samples)
    mw = model_window(r_index, fs)
    return {
        "beats": int(len(waves)),
        "template": template,
        "r_index": int(r_index),
        "fs": float(fs),
        "ptp": float(np.ptp(template[0, mw])),
        "qrs_vector": qrs_vector(template, r_index, fs),
        "r_amp": float(np.median(waves[:, 0, r_index])),
        "axis_deg": qrs_axis(template, r_index, fs),
        "rr_s": median_rr_s(peaks, fs),
        "rt_s": rt_time_s(template, r_index, fs),
        "qrs_ms": qrs_width_ms(template, r_index, fs),
        "wander": float(wander),
        **residual_levels(waves[:, 0, mw], template[0, mw]),
    }


def wander_rms(lead: np.ndarray, fs: float, spans: Sequence[slice] = ()) -> list[float]:
    """RMS of the raw lead's < ``WANDER_HZ`` component (record mean removed), over each span
    (the whole record when none is given)."""
    from scipy.signal import butter, sosfiltfilt

    x = np.asarray(lead, dtype=np.float64)
    x = x - x.mean()
    low = sosfiltfilt(butter(2, WANDER_HZ, fs=fs, output="sos"), x) if x.size > 30 else x
    return [float(np.sqrt(np.mean(low[s] ** 2))) for s in (spans or [slice(None)])]


# --------------------------------------------------------------------------------------------
# Comparing two segments
# --------------------------------------------------------------------------------------------


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis (broadcasting)."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    return np.where(den > 0, (a * b).sum(axis=-1) / np.where(den > 0, den, 1.0), 0.0)


def turn_lead_i(template: np.ndarray, degrees: float | np.ndarray) -> np.ndarray:
    """Lead I of ``template`` (2, samples) after the heart's frontal axis turned by ``degrees``
    (an array of turns gives one row each).

    :func:`~ecgbio.training.augment.rotate_lead_axis` reads the lead at angle ``t``; a heart turned
    by ``+d`` reads on lead I what the lead at ``t = -d`` reads.
    """
    t = np.radians(-np.asarray(degrees, dtype=float))[..., None]
    return template[0] * np.cos(t) + vertical(template[0], template[1]) * np.sin(t)


def fit_turn(earlier: np.ndarray, later_i: np.ndarray, window: slice) -> tuple[float, float]:
    """The axis turn (degrees) that best maps ``earlier``'s lead I onto ``later_i`` on ``window``,
    and the correlation it reaches."""
    c = _corr(turn_lead_i(earlier, TURN_GRID_DEG)[:, window], later_i[window])
    k = int(np.argmax(c))
    return float(TURN_GRID_DEG[k]), float(c[k])


def stretch(template: np.ndarray, r_index: int, scale: float | np.ndarray) -> np.ndarray:
    """``template`` (leads, samples) slowed by ``scale`` about the R peak (> 1: longer), linear
    interpolation with clamped edges as :func:`~ecgbio.training.augment.warp_beats` does (an
    array of scales gives (scales, leads, samples))."""
    n = template.shape[-1]
    scales = np.asarray(scale, dtype=float)
    pos = np.clip(r_index + (np.arange(n) - r_index) / scales[..., None], 0, n - 1)
    lo = np.minimum(np.floor(pos).astype(int), n - 2)
    frac = pos - lo
    left, right = template[:, lo], template[:, lo + 1]  # (leads, ..., samples)
    out = left + (right - left) * frac
    return np.moveaxis(out, 0, -2)


def fit_stretch(
    earlier: np.ndarray, later: np.ndarray, r_index: int, window: slice = slice(None)
) -> tuple[float, float]:
    """The time scale about the R peak that best maps ``earlier`` onto ``later`` (both leads, on
    ``window`` of the stretched beat, each lead's gain free), and the correlation it reaches."""
    warped = stretch(earlier, r_index, STRETCH_GRID)[..., window]
    c = _corr(warped, later[None, :, window]).mean(axis=-1)
    k = int(np.argmax(c))
    return float(STRETCH_GRID[k]), float(c[k])


def fit_stretch_turn(
    earlier: np.ndarray, later_i: np.ndarray, r_index: int, window: slice
) -> float:
    """Best correlation on ``window`` of lead I over a stretch (every 5th of ``STRETCH_GRID``)
    and an axis turn fitted together."""
    scales = STRETCH_GRID[::5]
    warped = stretch(earlier, r_index, scales)[..., window]  # (scales, 2, window)
    t = np.radians(-TURN_GRID_DEG)[:, None, None]
    lead_i = warped[None, :, 0] * np.cos(t) + vertical(warped[:, 0], warped[:, 1])[None] * np.sin(t)
    return float(_corr(lead_i, later_i[window]).max())


def _log_ratio(b: float, a: float) -> float:
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0 or b <= 0:
        return float("nan")
    return math.log(b / a)


def _wrap_deg(d: float) -> float:
    return (d + 180.0) % 360.0 - 180.0


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Changes from segment ``a`` (earlier / first half) to segment ``b`` (later / second half)."""
    r, fs = a["r_index"], a["fs"]
    mw = model_window(r, fs)
    ta, tb = a["template"], b["template"]
    turn, fitted_turn_corr = fit_turn(ta, tb[0], mw)
    scale, _ = fit_stretch(ta, tb, r)
    scale_model, _ = fit_stretch(ta, tb, r, mw)
    turned_stretched = fit_stretch_turn(ta, tb[0], r, mw)
    na, nb = a["noise"], b["noise"]
    return {
        "gain_ptp": _log_ratio(b["ptp"], a["ptp"]),
        "gain_r": _log_ratio(abs(b["r_amp"]), abs(a["r_amp"])),
        "gain_vector": _log_ratio(b["qrs_vector"], a["qrs_vector"]),
        "axis_deg": _wrap_deg(b["axis_deg"] - a["axis_deg"]),
        "turn_deg": turn,
        "hr": _log_ratio(b["rr_s"], a["rr_s"]),
        "stretch": math.log(scale),
        "stretch_model": math.log(scale_model),
        "rt": _log_ratio(b["rt_s"], a["rt_s"]),
        "qrs_ms": b["qrs_ms"] - a["qrs_ms"],
        "noise": _log_ratio(nb, na),
        "noise_add": math.sqrt(abs(nb**2 - na**2)),
        "wander": _log_ratio(b["wander"], a["wander"]),
        "shape": 1 - float(_corr(ta[0, mw], tb[0, mw])),
        "shape_turned": 1 - fitted_turn_corr,
        "shape_turned_stretched": 1 - turned_stretched,
    }


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """``n``, the signed median, and percentiles of |change| over the finite values."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if x.size == 0:
        return {"n": 0}
    q = np.percentile(np.abs(x), PERCENTILES)
    return {
        "n": int(x.size),
        "median_signed": float(np.median(x)),
        "abs": {f"p{p}": float(v) for p, v in zip(PERCENTILES, q, strict=True)},
    }


def summarize_group(changes: Sequence[dict[str, float]]) -> dict[str, Any]:
    keys = list(changes[0]) if changes else []
    return {k: summarize(c[k] for c in changes) for k in keys}


def level_summary(features: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-record levels (not changes): noise, offset and drift in beat SDs, wander in mV."""
    out = {}
    for key in ("noise", "offset", "drift", "noise_mv", "wander", "ptp", "qrs_ms", "rt_s", "rr_s"):
        x = np.asarray([f[key] for f in features if np.isfinite(f[key])], float)
        if x.size:
            out[key] = {
                f"p{p}": float(v)
                for p, v in zip(PERCENTILES, np.percentile(x, PERCENTILES), strict=True)
            }
    return out


def _q(summary: dict[str, Any], key: str, p: int = COVER) -> float:
    return summary.get(key, {}).get("abs", {}).get(f"p{p}", float("nan"))


def implied_ranges(
    cross: dict[str, Any], within: dict[str, Any], cross_halves: dict[str, Any]
) -> dict[str, Any]:
    """Augmentation ranges that cover ``COVER`` % of the cross-session changes, and the part of
    each that is session-specific (matched-halves cross-session beyond within-record, in
    quadrature)."""

    def excess(key: str) -> float:
        c, w = _q(cross_halves, key), _q(within, key)
        return math.sqrt(max(c * c - w * w, 0.0)) if np.isfinite(c) and np.isfinite(w) else math.nan

    def pct(log_value: float) -> float:
        return 100 * (math.exp(log_value) - 1)

    return {
        "cover_percentile": COVER,
        "gain_pct": pct(_q(cross, "gain_ptp")),
        "gain_pct_session_specific": pct(excess("gain_ptp")),
        "gain_pct_from_r_amplitude": pct(_q(cross, "gain_r")),
        "gain_pct_qrs_vector": pct(_q(cross, "gain_vector")),
        "gain_pct_qrs_vector_session_specific": pct(excess("gain_vector")),
        "axis_deg_qrs": _q(cross, "axis_deg"),
        "axis_deg_qrs_session_specific": excess("axis_deg"),
        "axis_deg_fitted_turn": _q(cross, "turn_deg"),
        "axis_deg_fitted_turn_session_specific": excess("turn_deg"),
        "stretch_pct_fitted": pct(_q(cross, "stretch")),
        "stretch_pct_fitted_session_specific": pct(excess("stretch")),
        "stretch_pct_model_window": pct(_q(cross, "stretch_model")),
        "stretch_pct_model_window_session_specific": pct(excess("stretch_model")),
        "stretch_pct_rt": pct(_q(cross, "rt")),
        "rr_pct": pct(_q(cross, "hr")),
        "noise_sd_to_add": _q(cross, "noise_add"),
        "noise_sd_to_add_within_record": _q(within, "noise_add"),
        "noise_level_ratio_pct": pct(_q(cross, "noise")),
        "wander_ratio_pct": pct(_q(cross, "wander")),
    }


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def measure_record(path: Path, config: BeatConfig) -> dict[str, Any]:
    """Features of the whole record and of its two halves (halves: None if one has < 3 beats)."""
    from ecgbio.beats import extract_beats
    from ecgbio.errors import EcgbioError
    from ecgbio.records import read_record

    try:
        rec = read_record(path, leads=config.leads, rate=config.rate)
        beats = extract_beats(rec, config)
    except EcgbioError as exc:
        return {"error": str(exc)}
    fs, r = beats.fs, config.samples_before
    n = rec.signal.shape[1]
    mid = n // 2
    w_full, w_first, w_second = wander_rms(
        rec.signal[0], fs, [slice(None), slice(0, mid), slice(mid, n)]
    )
    out: dict[str, Any] = {
        "full": segment_features(beats.waves, beats.peaks, fs, r, w_full),
        "halves": None,
    }
    first = beats.peaks < mid
    if min(first.sum(), (~first).sum()) >= config.min_beats:
        out["halves"] = (
            segment_features(beats.waves[first], beats.peaks[first], fs, r, w_first),
            segment_features(beats.waves[~first], beats.peaks[~first], fs, r, w_second),
        )
    return out


def _measure(item: tuple[Path, BeatConfig]) -> dict[str, Any]:
    return measure_record(*item)


def measure_all(
    paths: Sequence[Path], config: BeatConfig, workers: int, echo: Callable[[str], None] | None
) -> list[dict[str, Any]]:
    items = [(p, config) for p in paths]
    if workers <= 1:
        return [_measure(i) for i in items]
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        out = list(pool.map(_measure, items, chunksize=16))
    if echo:
        echo(f"measured {len(out)} records with {workers} workers")
    return out


def _flipped(a: dict[str, Any], b: dict[str, Any]) -> int:
    """1 when the lead-I R peak points the other way (a QRS that turned across lead I's normal)."""
    return int(np.sign(a["r_amp"]) != np.sign(b["r_amp"]))


def _days(a: str, b: str) -> float:
    try:
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() / 86400
    except ValueError:
        return float("nan")


def _fmt(key: str, value: float) -> str:
    if not np.isfinite(value):
        return "-"
    if key in LOG_RATIOS:
        return f"{100 * (math.exp(value) - 1):.1f}"
    if key.startswith("shape") or key == "noise_add":
        return f"{value:.3f}"
    return f"{value:.1f}"


def print_table(groups: dict[str, dict[str, Any]], names: Sequence[str]) -> None:
    """|change| p50 / p90 per quantity and group (log ratios as % change)."""
    head = f"{'|change| p50 / p90':<26}" + "".join(f"{n:>26}" for n in names)
    print(head)
    print("-" * len(head))
    print("(ratios as % = exp(|log ratio|) - 1; noise to add in beat SDs; shape as 1 - corr)")
    for key, label in TABLE:
        cells = []
        for name in names:
            s = groups[name].get(key, {})
            p50, p90 = _q(groups[name], key, 50), _q(groups[name], key, 90)
            cells.append(f"{_fmt(key, p50)} / {_fmt(key, p90)}  (n={s.get('n', 0)})")
        print(f"{label:<26}" + "".join(f"{c:>26}" for c in cells))


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__, SHARED_DATA / "ptb-xl-subset")
    parser.add_argument(
        "--within",
        choices=("all", "multi"),
        default="all",
        help="records whose halves give the within-record reference: every record, or only those "
        "of the patients with >= 2 records",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    echo = None if args.quiet else print
    from ecgbio.sources.ptbxl import ptbxl_records

    config = measure_config(args.rate)
    specs = ptbxl_records(args.root, rate=args.rate)
    by_person: dict[str, list] = defaultdict(list)
    for spec in specs:
        by_person[spec.person].append(spec)
    multi = {p: sorted(v, key=lambda s: s.order) for p, v in by_person.items() if len(v) >= 2}
    multi_ids = {s.record for v in multi.values() for s in v}
    chosen = specs if args.within == "all" else [s for s in specs if s.record in multi_ids]
    if echo:
        echo(
            f"{len(chosen)} records ({len(multi)} patients with >= 2 records, {len(multi_ids)} records)"
        )
    measured = dict(
        zip(
            (s.record for s in chosen),
            measure_all([s.path for s in chosen], config, args.workers, echo),
            strict=True,
        )
    )
    errors = {rid: m["error"] for rid, m in measured.items() if "error" in m}

    within = [compare(*m["halves"]) for m in measured.values() if m.get("halves")]
    within_multi = [compare(*measured[r]["halves"]) for r in multi_ids if measured[r].get("halves")]
    cross, cross_halves, cross_day, gaps, flip_pairs = [], [], [], [], []
    patients = set()
    for person, records in multi.items():
        first = measured[records[0].record]
        if "error" in first:
            continue
        for later_spec in records[1:]:
            later = measured[later_spec.record]
            if "error" in later:
                continue
            patients.add(person)
            change = compare(first["full"], later["full"])
            flip_pairs.append((first["full"], later["full"]))
            cross.append(change)
            days = _days(records[0].extra["recording_date"], later_spec.extra["recording_date"])
            gaps.append(days)
            if later_spec.session != records[0].session:
                cross_day.append(change)
            if first["halves"] and later["halves"]:
                cross_halves.append(compare(first["halves"][0], later["halves"][1]))

    edge = float(np.log(STRETCH_GRID[-1])) - 1e-9
    flips = sum(_flipped(a, b) for a, b in flip_pairs)
    groups = {
        "cross_session": summarize_group(cross),
        "cross_session_halves": summarize_group(cross_halves),
        "within_record": summarize_group(within),
        "within_record_multi": summarize_group(within_multi),
        "cross_day": summarize_group(cross_day),
    }
    ranges = implied_ranges(
        groups["cross_session"], groups["within_record"], groups["cross_session_halves"]
    )
    full = [m["full"] for m in measured.values() if "full" in m]
    figures = {
        "what": "changes later vs earlier record of one patient, vs second vs first half of one record",
        "records_measured": len(chosen),
        "records_failed": len(errors),
        "failures": dict(list(errors.items())[:20]),
        "patients": len(patients),
        "pairs": {
            "cross_session": len(cross),
            "cross_session_halves": len(cross_halves),
            "cross_day": len(cross_day),
            "within_record": len(within),
            "within_record_multi": len(within_multi),
        },
        "days_between": summarize(gaps)["abs"] if gaps else None,
        "r_polarity_flips": {
            "cross_session": flips,
            "within_record": sum(
                _flipped(*m["halves"]) for m in measured.values() if m.get("halves")
            ),
        },
        "stretch_grid_edge": {
            name: sum(abs(c["stretch"]) >= edge or abs(c["stretch_model"]) >= edge for c in changes)
            for name, changes in (("cross_session", cross), ("within_record", within))
        },
        "units": {
            "log_ratios": list(LOG_RATIOS),
            "axis_deg, turn_deg": "degrees",
            "qrs_ms": "milliseconds",
            "noise_add": "beat standard deviations (augment_beats' noise unit)",
            "shape*": "1 - Pearson correlation of lead-I median beats, model window",
        },
        "groups": groups,
        "levels_per_record": level_summary(full),
        "implied_augmentation": ranges,
        "current_default_augmentation": {
            "gain_pct": 20,
            "offset_sd": 0.05,
            "drift_sd": 0.05,
            "noise_sd": 0.02,
            "stretch_pct": 8,
            "shift_s": 0.02,
            "axis_deg": 0,
        },
        "measure_beat_config": config.to_dict(),
        "model_window": {"before_s": MODEL_BEAT.before_s, "after_s": MODEL_BEAT.after_s},
    }
    if echo:
        print_table(groups, ("within_record", "cross_session_halves", "cross_session"))
        print("implied ranges (cover p90 of cross-session):")
        for key, value in ranges.items():
            print(
                f"  {key:<42} {value:.3g}" if isinstance(value, float) else f"  {key:<42} {value}"
            )
    path = default_results(args, "session-drift")
    if path:
        write_results(path, figures, started, f"PTB-XL at {args.root} (CC BY 4.0)", config)
    return figures


if __name__ == "__main__":
    main()
