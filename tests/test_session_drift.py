"""The session-drift measures recover known changes from synthetic beats (no real data needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.session_drift import (
    compare,
    implied_ranges,
    qrs_axis,
    segment_features,
    summarize,
    summarize_group,
    wander_rms,
)

FS = 100.0
BEFORE, AFTER = 25, 45  # the recipe's window at 100 Hz: R peak at index 25


def _wave(t: np.ndarray, parts: list[tuple[float, float, float]]) -> np.ndarray:
    return sum(a * np.exp(-0.5 * ((t - c) / w) ** 2) for a, c, w in parts)


def heart_vector(scale: float = 1.0) -> np.ndarray:
    """(2, samples): the frontal heart vector (Hx, Hy-down) of one beat, time slowed by ``scale``."""
    t = np.arange(-BEFORE, AFTER) / FS
    hx = _wave(t, [(0.10, -0.16, 0.025), (1.0, 0.0, 0.015), (-0.25, 0.035, 0.012)])
    hx = hx + _wave(t, [(0.25, 0.28 * scale, 0.05 * scale)])
    hy = _wave(t, [(0.08, -0.16, 0.025), (0.6, 0.008, 0.015), (0.2, 0.30 * scale, 0.05 * scale)])
    return np.stack([hx, hy])


def leads(h: np.ndarray, turn_deg: float = 0.0, gain: float = 1.0) -> np.ndarray:
    """Leads I and II of heart vector ``h`` turned by ``turn_deg`` (towards +90, aVF)."""
    a = math.radians(turn_deg)
    x = h[0] * math.cos(a) - h[1] * math.sin(a)
    y = h[0] * math.sin(a) + h[1] * math.cos(a)
    return gain * np.stack([x, 0.5 * x + math.sqrt(3) / 2 * y])


def segment(wave: np.ndarray, rr: int = 80, n: int = 8, noise: float = 0.01, seed: int = 0):
    rng = np.random.default_rng(seed)
    waves = wave[None] + noise * rng.standard_normal((n, *wave.shape))
    peaks = 50 + rr * np.arange(n)
    return segment_features(waves, peaks, FS, BEFORE, wander=0.05)


def test_axis_of_a_known_vector():
    base = leads(heart_vector())
    assert qrs_axis(leads(heart_vector(), 30.0), BEFORE, FS) == pytest.approx(
        qrs_axis(base, BEFORE, FS) + 30.0, abs=0.5
    )


def test_gain_and_axis_turn_are_recovered():
    h = heart_vector()
    a = segment(leads(h), seed=1)
    b = segment(leads(h, turn_deg=25.0, gain=1.3), seed=2)
    change = compare(a, b)
    assert change["axis_deg"] == pytest.approx(25.0, abs=1.5)
    assert change["turn_deg"] == pytest.approx(25.0, abs=2.0)
    assert change["shape_turned"] < 0.002 < change["shape"]
    # a turn changes lead I's amplitude too: same heart, same turn, gain alone differs
    c = segment(leads(h, turn_deg=25.0), seed=3)
    assert compare(c, b)["gain_ptp"] == pytest.approx(math.log(1.3), abs=0.02)
    assert compare(c, b)["gain_r"] == pytest.approx(math.log(1.3), abs=0.02)
    assert abs(compare(c, b)["axis_deg"]) < 1.0 and compare(c, b)["shape"] < 0.002


def test_heart_rate_stretch_and_noise_are_recovered():
    a = segment(leads(heart_vector()), rr=80, noise=0.01, seed=4)
    b = segment(leads(heart_vector(scale=1.12)), rr=96, noise=0.03, seed=5)
    change = compare(a, b)
    assert change["hr"] == pytest.approx(math.log(96 / 80), abs=1e-9)
    assert change["rt"] == pytest.approx(math.log(1.12), abs=0.03)
    assert change["stretch"] == pytest.approx(math.log(1.12), abs=0.04)
    assert change["noise"] == pytest.approx(math.log(3), abs=0.4)
    assert change["noise_add"] > 0 and abs(change["gain_ptp"]) < 0.03


def test_identical_segments_change_nothing():
    a = segment(leads(heart_vector()), noise=0.0)
    change = compare(a, a)
    for key in ("gain_ptp", "gain_r", "axis_deg", "turn_deg", "hr", "stretch", "rt", "qrs_ms"):
        assert change[key] == pytest.approx(0.0, abs=1e-9), key
    assert change["shape"] == pytest.approx(0.0, abs=1e-9)


def test_wander_and_summaries():
    t = np.arange(1000) / FS
    slow = 0.3 * np.sin(2 * np.pi * 0.2 * t)
    fast = 0.3 * np.sin(2 * np.pi * 10 * t)
    assert wander_rms(slow, FS)[0] == pytest.approx(0.3 / math.sqrt(2), rel=0.2)
    assert wander_rms(fast, FS)[0] < 0.01
    s = summarize([-2.0, 1.0, float("nan"), 3.0])
    assert s["n"] == 3 and s["median_signed"] == 1.0 and s["abs"]["p50"] == 2.0
    cross = summarize_group([{"gain_ptp": math.log(1.5)}, {"gain_ptp": -math.log(1.5)}])
    within = summarize_group([{"gain_ptp": 0.0}])
    ranges = implied_ranges(cross, within, cross)
    assert ranges["gain_pct"] == pytest.approx(50.0)
    assert ranges["gain_pct_session_specific"] == pytest.approx(50.0)
