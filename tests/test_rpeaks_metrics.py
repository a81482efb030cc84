"""R-peak accuracy metrics: hand-made cases, then the default detector on MIT-BIH record 100."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ecgbio.errors import ConfigError
from ecgbio.metrics.rpeaks import (
    BEAT_SYMBOLS,
    PeakMatch,
    ec57_scored,
    match_peaks,
    pair_peaks,
    reference_beats,
    sum_matches,
    vf_spans,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
REF = np.array([100, 400, 700, 1000])


def test_perfect_detection() -> None:
    m = match_peaks(REF, REF, 5)
    assert (m.tp, m.fp, m.fn) == (4, 0, 0)
    assert m.sensitivity == m.ppv == m.f1 == 1.0


def test_offsets_within_tolerance_match() -> None:
    m = match_peaks(REF + np.array([3, -5, 0, 4]), REF, 5)
    assert (m.tp, m.fp, m.fn) == (4, 0, 0)


def test_missed_beat_is_false_negative() -> None:
    m = match_peaks(REF[[0, 1, 3]], REF, 5)
    assert (m.tp, m.fp, m.fn) == (3, 0, 1)
    assert m.sensitivity == pytest.approx(0.75)
    assert m.ppv == 1.0
    assert m.f1 == pytest.approx(6 / 7)


def test_extra_detection_is_false_positive() -> None:
    m = match_peaks(np.array([100, 250, 400, 700, 1000]), REF, 5)
    assert (m.tp, m.fp, m.fn) == (4, 1, 0)
    assert m.ppv == pytest.approx(0.8)


def test_duplicates_within_tolerance_count_once() -> None:
    det = np.array([98, 100, 102, 400, 400, 700, 1000])  # beat 100 marked 3x, beat 400 twice
    m = match_peaks(det, REF, 5)
    assert (m.tp, m.fp, m.fn) == (4, 3, 0)


def test_one_detection_cannot_serve_two_close_beats() -> None:
    m = match_peaks(np.array([105]), np.array([100, 110]), 5)  # equidistant from both
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)


def test_matching_is_maximal_not_nearest_first() -> None:
    # 104 is nearest to 105 but must go to 100 (its only candidate) so that 109 can take 105;
    # a greedy nearest-pair rule would give 1 TP here.
    m = match_peaks(np.array([104, 109]), np.array([100, 105]), 4)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)


def test_tolerance_edge_is_inclusive() -> None:
    assert match_peaks(np.array([105]), np.array([100]), 5).tp == 1
    assert match_peaks(np.array([95]), np.array([100]), 5).tp == 1
    assert match_peaks(np.array([106]), np.array([100]), 5).tp == 0
    assert match_peaks(np.array([100]), np.array([100]), 0).tp == 1


def test_input_order_does_not_matter_and_is_not_modified() -> None:
    det = np.array([1000, 100, 700, 400])
    m = match_peaks(det, REF[::-1].copy(), 5)
    assert (m.tp, m.fp, m.fn) == (4, 0, 0)
    assert det.tolist() == [1000, 100, 700, 400]


def test_empty_inputs() -> None:
    m = match_peaks(np.array([], dtype=int), REF, 5)
    assert (m.tp, m.fp, m.fn) == (0, 0, 4)
    assert m.sensitivity == 0.0 and math.isnan(m.ppv) and m.f1 == 0.0
    m = match_peaks(REF, np.array([], dtype=int), 5)
    assert (m.tp, m.fp, m.fn) == (0, 4, 0)
    assert math.isnan(m.sensitivity) and m.ppv == 0.0
    m = match_peaks([], [], 5)
    assert (m.tp, m.fp, m.fn) == (0, 0, 0)
    assert math.isnan(m.sensitivity) and math.isnan(m.ppv) and math.isnan(m.f1)
    assert m.as_dict()["sensitivity"] is None


@pytest.mark.parametrize(
    ("detected", "reference", "tolerance"),
    [
        (np.zeros((2, 2)), REF, 5),
        (REF, np.array([1.0, np.nan]), 5),
        (np.array(["a"]), REF, 5),
        (REF, REF, -1),
        (REF, REF, float("inf")),
    ],
)
def test_invalid_input_is_refused(detected: object, reference: object, tolerance: float) -> None:
    with pytest.raises(ConfigError):
        match_peaks(detected, reference, tolerance)  # type: ignore[arg-type]


def test_pairs_give_the_detection_lag() -> None:
    det = np.array([1010, 108, 707, 250])  # unsorted, one stray detection at 250
    d, r = pair_peaks(det, REF, 10)
    assert r.tolist() == [0, 2, 3]
    assert (det[d] - REF[r]).tolist() == [8, 7, 10]
    d, r = pair_peaks([], REF, 10)
    assert d.size == r.size == 0 and d.dtype == np.int64


def test_gross_statistics_sum_counts() -> None:
    a = PeakMatch.from_counts(90, 10, 10)
    b = PeakMatch.from_counts(10, 0, 0)
    total = sum_matches([a, b])
    assert (total.tp, total.fp, total.fn) == (100, 10, 10)
    assert total.sensitivity == pytest.approx(100 / 110)  # not the mean of 0.9 and 1.0


def test_reference_beats_keep_beat_symbols_only() -> None:
    ann = SimpleNamespace(
        sample=np.array([5, 18, 40, 77, 90, 120, 150]), symbol=["+", "N", "~", "V", "|", "/", "!"]
    )
    assert reference_beats(ann).tolist() == [18, 77, 120]
    assert {"+", "~", "|", "!", '"', "x"}.isdisjoint(BEAT_SYMBOLS)
    assert len(BEAT_SYMBOLS) == 19
    with pytest.raises(ConfigError):
        reference_beats(SimpleNamespace(sample=np.array([1, 2]), symbol=["N"]))
    with pytest.raises(ConfigError):
        reference_beats(object())


def _record_100() -> Path:
    for path in (DATA / "mitdb" / "100", DATA / "wfdb-samples" / "100"):
        if path.with_suffix(".hea").is_file() and path.with_suffix(".atr").is_file():
            return path
    pytest.skip("MIT-BIH record 100 not found under ../shared/data (mitdb/ or wfdb-samples/)")


def test_ec57_leaves_out_flutter_episodes_and_the_learning_period() -> None:
    ann = SimpleNamespace(
        sample=np.array([10, 20, 30, 35, 40, 50, 60, 70, 80]),
        symbol=["N", "[", "!", "!", "]", "N", "[", "!", "N"],  # the second episode never closes
    )
    spans = vf_spans(ann)
    assert spans.tolist() == [[20, 40], [60, 80]]
    peaks = np.array([5, 10, 25, 33, 45, 50, 65, 90])
    assert ec57_scored(peaks, spans).tolist() == [5, 10, 45, 50, 90]
    assert ec57_scored(peaks, spans, start=8).tolist() == [10, 45, 50, 90]
    assert vf_spans(SimpleNamespace(sample=np.array([1]), symbol=["N"])).shape == (0, 2)


@pytest.mark.realdata
def test_default_detector_on_mitdb_record_100() -> None:
    """The shipped default detector finds >= 99.5 % of the 2,273 beats at the tight 50 ms window."""
    wfdb = pytest.importorskip("wfdb")
    from ecgbio.beats import clean, detect_rpeaks, refine_peaks
    from ecgbio.config import BeatConfig
    from ecgbio.records import read_record

    path = _record_100()
    rec = read_record(path, leads="all")
    ann = wfdb.rdann(str(path), "atr")
    assert rec.signal.shape[1] == 650_000  # nothing cropped: annotation indices still line up
    reference = reference_beats(ann)
    assert reference.size == 2273
    config = BeatConfig()
    peaks = detect_rpeaks(rec.signal[0], rec.fs, config.peak_method)
    refined = refine_peaks(
        clean(rec.signal[:1], rec.fs, config.clean_method)[0], peaks, rec.fs, config.refine_window_s
    )  # what the pipeline cuts windows around
    for found in (peaks, refined):
        m = match_peaks(found, reference, round(0.050 * rec.fs))
        assert m.sensitivity >= 0.995, m
        assert m.ppv >= 0.995, m
