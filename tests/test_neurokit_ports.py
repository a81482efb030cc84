"""Issue #15: the numpy ports give neurokit2's and scipy's beats on real records.

The beats path (read -> resample -> clean -> R-peaks -> beats) runs on :mod:`ecgbio.filters` and
:mod:`ecgbio.neurokit_ports` so that a cold ``ecgbio identify`` need not import neurokit2 and
scipy.signal (~1.5 s on 2 cores). The issue allows that only if the beats are identical on real
records. Each test runs the same record both ways (the ports, and scipy/neurokit2 inside
:func:`ecgbio.filters.reference_implementations`) and requires:

* resampled signals identical bit for bit (the resampler keeps scipy's summation order);
* cleaned signals within ``CLEAN_ATOL_MV`` (the IIR filter runs blocked: float rounding only);
* R-peaks of both ported detectors (``neurokit``, ``rodrigues2021``, the default) identical;
* ``extract_beats``: identical peaks, counts and refusals, waves equal to a float32 rounding.

Records: all 310 of ECG-ID (lead I, 500 Hz and at the shipped model's 100 Hz), 100 PTB-XL
records spread over the subset (12 leads, 100 Hz), the first 3 minutes of all 48 MIT-BIH records
(2 leads, 360 Hz and 100 Hz). Data: PhysioNet (ECG-ID ODC-By 1.0, Lugovaya 2005; PTB-XL CC BY
4.0, Wagner et al. 2020; MIT-BIH ODC-By 1.0, Moody & Mark 2001).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecgbio.beats import Beats, clean, detect_rpeaks, extract_beats
from ecgbio.config import BeatConfig, from_dict
from ecgbio.errors import EcgbioError
from ecgbio.filters import reference_implementations
from ecgbio.records import Recording, read_record
from tests.conftest import REPO, shared, simulate_ecg, write_wfdb

#: Cleaned signals may differ from neurokit2's by this much (mV): the high-pass runs blocked
#: (ecgbio.filters.sosfilt), exact but for the order of float additions. Measured on these
#: records: <= 1.3e-10 mV (ECG-ID Person_76/rec_2, whose raw lead swings to 154 mV), ~1e-13 mV
#: on PTB-XL. 1e-8 mV leaves a hundredfold margin and is 1e-3 of the finest ADC step here (PTB-XL
#: 1 uV; MIT-BIH and ECG-ID 5 uV): nothing a beat could show.
CLEAN_ATOL_MV = 1e-8
#: extract_beats' waves are float32 copies of the cleaned signal: a difference of 1e-10 mV may
#: round one sample to the neighbouring float32, one unit in the last place (<= 2**-23 relative).
WAVE_RTOL = 2.0**-23
DETECTORS = ("neurokit", "rodrigues2021")
MITDB_SECONDS = 180


def both(run: Callable[[], Any]) -> tuple[Any, Any]:
    """``run()`` on the ports, then on scipy/neurokit2; an EcgbioError is returned as its text."""
    out = []
    for context in (nullcontext(), reference_implementations()):
        with context, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out.append(run())
            except EcgbioError as exc:
                out.append(f"{type(exc).__name__}: {exc}")
    return out[0], out[1]


class Tally:
    """What differed, and the largest differences, over a data set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records = 0
        self.detections = 0
        self.beat_sets = 0
        self.clean_max = 0.0
        self.wave_max = 0.0
        self.problems: list[str] = []

    def clean(self, where: str, signal: np.ndarray, fs: float) -> None:
        mine, ref = both(lambda: clean(signal, fs))
        diff = float(np.abs(mine - ref).max())
        self.clean_max = max(self.clean_max, diff)
        if not diff <= CLEAN_ATOL_MV:
            self.problems.append(f"{where}: cleaned signal differs by {diff:.3g} mV")

    def peaks(self, where: str, signal: np.ndarray, fs: float) -> None:
        for lead, row in enumerate(signal):
            for method in DETECTORS:
                mine, ref = both(lambda row=row, method=method: detect_rpeaks(row, fs, method))
                self.detections += 1
                if not np.array_equal(mine, ref):
                    extra = np.setxor1d(mine, ref)[:5].tolist()
                    self.problems.append(
                        f"{where} lead {lead} {method} @ {fs:g} Hz: {len(mine)} vs {len(ref)} "
                        f"peaks, differing at {extra}"
                    )

    def beats(self, where: str, recs: tuple[Recording, Recording], config: BeatConfig) -> None:
        out = []
        for rec, context in zip(recs, (nullcontext(), reference_implementations()), strict=True):
            with context, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    out.append(extract_beats(rec, config))
                except EcgbioError as exc:
                    out.append(f"{type(exc).__name__}: {exc}")
        mine, ref = out
        self.beat_sets += 1
        if not isinstance(mine, Beats) or not isinstance(ref, Beats):
            if mine != ref:
                self.problems.append(f"{where}: {mine!r} vs {ref!r}")
            return
        counts = (len(mine), mine.detected, mine.rejected, mine.clipped)
        ref_counts = (len(ref), ref.detected, ref.rejected, ref.clipped)
        if counts != ref_counts or not np.array_equal(mine.peaks, ref.peaks):
            self.problems.append(f"{where}: beats {counts} vs {ref_counts} or peaks differ")
            return
        if len(mine):
            diff = np.abs(mine.waves.astype(float) - ref.waves)
            self.wave_max = max(self.wave_max, float(diff.max()))
            bound = WAVE_RTOL * np.abs(ref.waves.astype(float)) + CLEAN_ATOL_MV
            if not (diff <= bound).all():
                self.problems.append(f"{where}: waves differ by {float(diff.max()):.3g} mV")
            if not np.allclose(mine.quality, ref.quality, rtol=0, atol=1e-6):
                self.problems.append(f"{where}: beat quality differs")

    def resampled(self, where: str, recs: tuple[Recording, Recording]) -> None:
        mine, ref = recs
        same = np.array_equal(mine.signal, ref.signal)
        for name in ("mask", "rail"):
            a, b = getattr(mine, name), getattr(ref, name)
            same &= (a is None and b is None) or (
                a is not None and b is not None and np.array_equal(a, b)
            )
        if not same:
            diff = float(np.abs(mine.signal.astype(float) - ref.signal).max())
            self.problems.append(f"{where}: resampled record differs (max {diff:.3g} mV)")

    def check(self) -> None:
        summary = (
            f"{self.name}: {self.records} records, {self.detections} detections, "
            f"{self.beat_sets} beat sets; max |clean diff| {self.clean_max:.2g} mV, "
            f"max |wave diff| {self.wave_max:.2g} mV"
        )
        print(summary)
        assert not self.problems, summary + "\n" + "\n".join(self.problems[:30])


def read_both(path: Path, **kwargs: Any) -> tuple[Recording, Recording]:
    recs = both(lambda: read_record(path, **kwargs))
    for rec in recs:
        assert isinstance(rec, Recording), rec
    return recs[0], recs[1]


@pytest.mark.realdata
def test_ecg_id_every_record_gives_neurokit2s_peaks_and_beats():
    root = shared("ecg-id-database-1.0.0")
    tally = Tally("ECG-ID")
    model = BeatConfig()  # lead I at 100 Hz, rodrigues2021: the shipped model's
    for hea in sorted(root.glob("Person_*/rec_*.hea")):
        path, where = hea.with_suffix(""), f"{hea.parent.name}/{hea.stem}"
        native = read_record(path, leads=("I",))  # 500 Hz: no resampling
        tally.records += 1
        tally.clean(where, native.signal, native.fs)
        tally.peaks(where, native.signal, native.fs)
        at_model_rate = read_both(path, leads=model.leads, rate=model.rate)
        tally.resampled(where, at_model_rate)
        tally.peaks(where, at_model_rate[0].signal, model.rate)
        tally.beats(where, at_model_rate, model)
        tally.beats(where, (native, native), BeatConfig(rate=500, peak_method="neurokit"))
    assert tally.records == 310
    tally.check()


@pytest.mark.realdata
def test_ptbxl_records_give_neurokit2s_peaks_and_beats():
    root = shared("ptb-xl-subset")
    records = sorted((root / "records100").glob("*/*.hea"))
    spread = records[:: max(1, len(records) // 100)][:100]
    tally = Tally("PTB-XL")
    twelve = BeatConfig(leads=("all",), peak_method="neurokit", detect_lead="II")
    for hea in spread:
        path, where = hea.with_suffix(""), hea.stem
        rec = read_record(path, leads=("all",))
        tally.records += 1
        tally.clean(where, rec.signal, rec.fs)
        tally.peaks(where, rec.signal, rec.fs)
        tally.beats(where, (rec, rec), twelve)
        lead_i = read_record(path, leads=("I",))
        tally.beats(where, (lead_i, lead_i), BeatConfig())
    assert tally.records == 100
    tally.check()


@pytest.mark.realdata
def test_mitdb_first_minutes_give_neurokit2s_peaks_and_beats():
    root = shared("mitdb")
    tally = Tally(f"MIT-BIH (first {MITDB_SECONDS} s)")
    every_lead = BeatConfig(leads=("all",))
    for hea in sorted(root.glob("*.hea")):
        path, where = hea.with_suffix(""), hea.stem
        rec = read_record(path, leads=("all",), max_duration_s=MITDB_SECONDS)  # 360 Hz
        tally.records += 1
        tally.clean(where, rec.signal, rec.fs)
        tally.peaks(where, rec.signal, rec.fs)
        tally.beats(where, (rec, rec), BeatConfig(leads=("all",), rate=360, peak_method="neurokit"))
        at_100 = read_both(path, leads=("all",), rate=100, max_duration_s=MITDB_SECONDS)
        tally.resampled(where, at_100)
        tally.peaks(where, at_100[0].signal, 100)
        tally.beats(where, at_100, every_lead)
    assert tally.records == 48
    tally.check()


# The cold path imports neither neurokit2 nor scipy.signal -------------------------------------
COLD_PATH = """
import json, sys
from ecgbio.records import read_record
from ecgbio.beats import extract_beats
from ecgbio.config import BeatConfig, from_dict

config = from_dict(BeatConfig, json.loads(sys.argv[2]))
recording = read_record(sys.argv[1], leads=config.leads, rate=config.rate)
beats = extract_beats(recording, config)
heavy = ("neurokit2", "scipy", "scipy.signal", "scipy.ndimage", "matplotlib", "sklearn")
print(json.dumps({"beats": len(beats), "imported": [m for m in heavy if m in sys.modules]}))
"""


def shipped_beat_config() -> dict[str, Any]:
    """The ``beat`` section of the shipped model's config (what ``ecgbio identify`` cuts)."""
    config = json.loads((REPO / "ecgbio" / "models" / "default" / "config.json").read_text())
    from_dict(BeatConfig, config["beat"])  # it must load
    return config["beat"]


def cold_run(record: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [sys.executable, "-c", COLD_PATH, str(record), json.dumps(shipped_beat_config())],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_beats_path_imports_neither_neurokit2_nor_scipy(tmp_path):
    """A 500 Hz two-lead record read at the shipped model's rate (resampled), cleaned, its
    R-peaks found by the shipped detector: no neurokit2, scipy.signal or scipy.ndimage."""
    ecg = simulate_ecg(seconds=20, fs=500, heart_rate=70, seed=1, n_leads=2)
    record = write_wfdb(tmp_path, "probe", ecg, 500, leads=["I", "II"])
    out = cold_run(record)
    assert out["beats"] >= 10
    assert out["imported"] == [], out


@pytest.mark.realdata
def test_an_ecg_id_record_runs_without_neurokit2_or_scipy():
    record = shared("ecg-id-database-1.0.0") / "Person_01" / "rec_1"
    out = cold_run(record)
    assert out["beats"] >= 10
    assert out["imported"] == [], out
