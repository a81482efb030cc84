"""Numbers the user gives that no record could make sense of: a negative ``--max-beats``, a
NaN or unbounded beat window or quality bound, and a record long enough that comparing every
pair of its beats would not fit in memory. Each is refused with one line (or, for the long
record, costs what a bounded sample costs), in the library so that the Python API and the
service get the same answer as the CLI.
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ecgbio.embed
from ecgbio.cli import app
from ecgbio.config import MAX_WINDOW_SIDE_S, BeatConfig, from_dict
from ecgbio.embed import CONSISTENCY_BEATS, Embedder, RecordEmbedding
from ecgbio.errors import ConfigError
from tests.cli_checks import one_line_error
from tests.conftest import simulate_ecg, write_wfdb

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _record(directory: Path, name: str = "rec", seed: int = 1) -> Path:
    return Path(str(write_wfdb(directory, name, simulate_ecg(20.0, 500, seed=seed), 500)) + ".hea")


# --max-beats ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> tuple[Path, Path]:
    """(a gallery enrolled with the shipped model, a probe record)."""
    tmp = tmp_path_factory.mktemp("max-beats")
    enrolled = run("enroll", "--gallery", tmp / "g", "--id", "alice", _record(tmp, "a", seed=1))
    assert enrolled.exit_code == 0, enrolled.output
    return tmp / "g", _record(tmp, "probe", seed=2)


@pytest.mark.parametrize("max_beats", ["-24", "-1000"])
@pytest.mark.parametrize("command", [["identify"], ["verify", "--claim", "alice"]])
def test_negative_max_beats_is_refused_by_identify_and_verify(gallery, command, max_beats):
    directory, probe = gallery
    result = run(*command, "--gallery", directory, f"--max-beats={max_beats}", probe)
    one_line_error(result, "--max-beats must be >= 0", max_beats, only_output=True)


def test_negative_max_beats_is_refused_by_the_library(gallery):
    _, probe = gallery
    embedder = Embedder("default")
    with pytest.raises(ConfigError, match="--max-beats must be >= 0"):
        embedder.embed_record(probe, max_beats=-1)
    with pytest.raises(ConfigError, match="whole number"):
        embedder.embed_record(probe, max_beats=2.5)  # type: ignore[arg-type]
    assert embedder.embed_record(probe, max_beats=5).n_beats == 5


@pytest.mark.parametrize("limit", [math.nan, math.inf, -1.0])
def test_read_limit_must_be_finite(limit):
    with pytest.raises(ConfigError, match="read limit"):
        Embedder("default", read_limit_s=limit)


# consistency on long records -------------------------------------------------------------------


def _clustered_beats(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors scattered about one direction: beats of one person."""
    rng = np.random.default_rng(seed)
    beats = rng.normal(size=dim) + 0.5 * rng.normal(size=(n, dim))
    return (beats / np.linalg.norm(beats, axis=1, keepdims=True)).astype(np.float32)


def _embedding(beats: np.ndarray) -> RecordEmbedding:
    return RecordEmbedding(
        path="rec", beats=beats, template=beats[0], quality=np.ones(len(beats)), detected=len(beats)
    )


def _every_pair(beats: np.ndarray) -> float:
    sims = beats @ beats.T
    return float(np.median(sims[np.triu_indices(len(beats), 1)]))


def test_consistency_is_exact_for_ordinary_records():
    beats = _clustered_beats(CONSISTENCY_BEATS)
    assert _embedding(beats).consistency() == _every_pair(beats)
    assert _embedding(beats[:1]).consistency() == 1.0


def test_consistency_of_a_long_record_costs_a_bounded_sample():
    """Three times the cap: every pair would allocate some hundreds of megabytes (a Holter day
    asked for tens of gigabytes); the sample stays within what the cap itself needs."""
    beats = _clustered_beats(3 * CONSISTENCY_BEATS)
    tracemalloc.start()
    try:
        value = _embedding(beats).consistency()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    cap_pairs = CONSISTENCY_BEATS * (CONSISTENCY_BEATS - 1) // 2
    assert peak < 8 * CONSISTENCY_BEATS**2 + 24 * cap_pairs, peak
    assert abs(value - _every_pair(beats)) < 0.01


def test_consistency_samples_evenly_beyond_the_cap(monkeypatch):
    """With a small cap, a record whose second half is noise is judged on both halves."""
    monkeypatch.setattr(ecgbio.embed, "CONSISTENCY_BEATS", 100)
    clean, noisy = _clustered_beats(5000, seed=1), _clustered_beats(5000, seed=2)
    noisy = np.random.default_rng(3).permutation(noisy.ravel()).reshape(noisy.shape)
    beats = np.concatenate([clean, noisy / np.linalg.norm(noisy, axis=1, keepdims=True)])
    value = _embedding(beats).consistency()
    assert -1.0 <= value < _embedding(clean).consistency() - 0.1


# the beat window and quality bound -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("before_s", math.nan, "before_s must be a finite number"),
        ("after_s", math.inf, "after_s must be a finite number"),
        ("before_s", 1e300, "before_s must be between 0 and"),
        ("after_s", MAX_WINDOW_SIDE_S + 0.5, "after_s must be between 0 and"),
        ("before_s", -0.1, "before_s must be between 0 and"),
        ("refine_window_s", math.nan, "refine_window_s must be a finite number"),
        ("min_quality", math.nan, "min_quality must be a finite number"),
        ("min_quality", 5.0, "min_quality must be a correlation"),
        ("max_amplitude_z", math.inf, "max_amplitude_z must be a finite number"),
        ("min_duration_s", math.nan, "min_duration_s must be a finite number"),
    ],
)
def test_beat_config_refuses_numbers_no_window_can_use(field, value, problem):
    with pytest.raises(ConfigError, match=problem):
        BeatConfig(**{field: value})


def test_beat_config_refuses_a_lead_named_twice():
    """It would be cut twice and fed to the model as two leads."""
    for leads in ("I,I", ("II", "I", "II")):
        with pytest.raises(ConfigError, match="is named twice"):
            BeatConfig(leads=leads)


def test_beat_config_keeps_every_sane_window():
    widest = BeatConfig(before_s=MAX_WINDOW_SIDE_S, after_s=MAX_WINDOW_SIDE_S, min_quality=-1)
    assert widest.window_samples == 2 * round(MAX_WINDOW_SIDE_S * widest.rate)
    assert from_dict(BeatConfig, BeatConfig(before_s=0.25, after_s=0.45).to_dict()).after_s == 0.45


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--before", "nan", "before_s must be a finite number"),
        ("--after", "inf", "after_s must be a finite number"),
        ("--before", "1e300", "before_s must be between 0 and"),
        ("--min-quality", "nan", "min_quality must be a finite number"),
        ("--leads", "I,I", "lead I is named twice"),
    ],
)
def test_beats_and_prepare_refuse_them_in_one_line(tmp_path, option, value, problem):
    record = _record(tmp_path)
    one_line_error(run("beats", option, value, record), problem, only_output=True)
    out = tmp_path / "store"
    prepared = run("prepare", "wfdb", "--root", tmp_path, "--out", out, option, value, "--quiet")
    one_line_error(prepared, problem)
    assert not out.exists()
