"""The beats path on ecgbio's numpy ports against neurokit2 and scipy (issue #15 part 3).

Run from the repository root::

    python -m benchmarks.beats_path [--data ../shared/data] [--repeats 15] [--quick]

Writes ``benchmarks/results/beats_path.json`` (command, hardware, commit and versions included),
unless ``--quick`` (fewer repeats, nothing written unless ``--out`` names a file). Prints JSON.

1. compute: cleaning + R-peaks as :func:`ecgbio.extract_beats` runs them (``clean`` of the record,
   then ``detect_rpeaks`` of the detection lead) at the record's own rate, for a 10 s and a
   10-minute stretch of MIT-BIH record 100 (360 Hz, MLII) and a 10 s stretch of ECG-ID Person_01
   rec_1 (500 Hz, lead I); both ported detectors (``rodrigues2021``, the default, and
   ``neurokit``), the ports against neurokit2 (already imported: compute only). Also the
   resampling to 100 Hz (ports against ``scipy.signal.resample_poly``) and ``extract_beats`` at
   the shipped model's 100 Hz. Best and median of ``--repeats`` runs after a warm-up (the
   machine is shared: the best is the steadiest figure).
2. cold: fresh interpreters (median of ``--cold`` runs): importing ``ecgbio.beats`` and
   ``ecgbio.records``; reading ECG-ID Person_01 rec_1 at 100 Hz and cutting its beats with the
   shipped model's ``BeatConfig``, on the ports and on neurokit2/scipy
   (:func:`ecgbio.filters.reference_implementations`); importing neurokit2 and scipy.signal alone.

Data: MIT-BIH Arrhythmia (ODC-By 1.0, Moody & Mark 2001) and ECG-ID (ODC-By 1.0, Lugovaya 2005),
PhysioNet.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ecgbio.beats import clean, detect_rpeaks, extract_beats
from ecgbio.config import BeatConfig
from ecgbio.filters import reference_implementations
from ecgbio.provenance import REPO, SHARED_DATA, provenance
from ecgbio.records import read_record, resample

RESULTS = REPO / "benchmarks" / "results" / "beats_path.json"
DATA = (
    "MIT-BIH Arrhythmia record 100 (360 Hz; ODC-By 1.0, Moody & Mark 2001) and ECG-ID Person_01 "
    "rec_1 (500 Hz; ODC-By 1.0, Lugovaya 2005), PhysioNet"
)


def timed(run: Callable[[], object], repeats: int) -> dict[str, float]:
    """Best and median milliseconds of ``repeats`` runs after one warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return {"best_ms": round(min(times), 2), "median_ms": round(statistics.median(times), 2)}


def both(run: Callable[[], object], repeats: int) -> dict[str, Any]:
    """``run`` on the ports and on neurokit2/scipy; ``speedup``: reference best / ports best."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ports = timed(run, repeats)
        with reference_implementations():
            reference = timed(run, repeats)
    return {
        "ports": ports,
        "neurokit2_scipy": reference,
        "speedup": round(reference["best_ms"] / ports["best_ms"], 2),
    }


def compute(data: Path, repeats: int) -> list[dict[str, Any]]:
    mitdb = read_record(data / "mitdb" / "100", leads=("MLII",), max_duration_s=600)
    ecgid = read_record(data / "ecg-id-database-1.0.0" / "Person_01" / "rec_1", leads=("I",))
    stretches = [
        ("MIT-BIH 100, MLII", mitdb, 10),
        ("MIT-BIH 100, MLII", mitdb, 600),
        ("ECG-ID Person_01 rec_1, lead I", ecgid, 10),
    ]
    rows = []
    for name, rec, seconds in stretches:
        signal = rec.signal[:, : int(seconds * rec.fs)]
        for method in ("rodrigues2021", "neurokit"):

            def clean_and_peaks(signal: np.ndarray = signal, fs: float = rec.fs, m: str = method):
                clean(signal, fs)
                detect_rpeaks(signal[0], fs, m)

            rows.append(
                {
                    "task": "clean + R-peaks",
                    "record": name,
                    "seconds": seconds,
                    "fs": rec.fs,
                    "detector": method,
                    **both(clean_and_peaks, repeats),
                }
            )
        part = replace(rec, signal=signal.astype(np.float64), mask=None, rail=None)
        rows.append(
            {
                "task": "resample to 100 Hz",
                "record": name,
                "seconds": seconds,
                "fs": rec.fs,
                **both(lambda part=part: resample(part, 100.0), repeats),
            }
        )
        at_100 = resample(part, 100.0)
        at_100.signal = at_100.signal.astype(np.float32)
        rows.append(
            {
                "task": "extract_beats at 100 Hz (shipped BeatConfig)",
                "record": name,
                "seconds": seconds,
                "fs": 100.0,
                **both(lambda rec=at_100: extract_beats(rec, BeatConfig()), repeats),
            }
        )
    return rows


_COLD = """
import sys, time, json
start = time.perf_counter()
if sys.argv[1] == "import":
    from ecgbio.beats import extract_beats
    from ecgbio.records import read_record
elif sys.argv[1] in ("ports", "reference"):
    from contextlib import nullcontext
    from ecgbio.beats import extract_beats
    from ecgbio.config import BeatConfig
    from ecgbio.filters import reference_implementations
    from ecgbio.records import read_record
    context = reference_implementations() if sys.argv[1] == "reference" else nullcontext()
    with context:
        config = BeatConfig()
        rec = read_record(sys.argv[2], leads=config.leads, rate=config.rate)
        extract_beats(rec, config)
else:
    __import__(sys.argv[1])
print(json.dumps({"s": time.perf_counter() - start}))
"""


def cold(what: str, record: Path, runs: int) -> dict[str, float]:
    """Median seconds (inside the process, interpreter start-up excluded) and process wall."""
    inner, wall = [], []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _COLD, what, str(record)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        wall.append(time.perf_counter() - start)
        inner.append(json.loads(done.stdout.strip().splitlines()[-1])["s"])
    return {
        "median_s": round(statistics.median(inner), 3),
        "process_wall_median_s": round(statistics.median(wall), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cold", type=int, default=5, help="fresh processes per cold figure")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 1 cold run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.cold = 3, 1
    for folder in ("mitdb", "ecg-id-database-1.0.0"):
        if not (args.data / folder).exists():
            raise SystemExit(f"no {folder} under {args.data}")
    record = args.data / "ecg-id-database-1.0.0" / "Person_01" / "rec_1"
    rows = compute(args.data, args.repeats)
    cold_rows = {
        "import ecgbio.beats + ecgbio.records": cold("import", record, args.cold),
        "read ECG-ID rec_1 at 100 Hz + extract_beats, ports": cold("ports", record, args.cold),
        "read ECG-ID rec_1 at 100 Hz + extract_beats, neurokit2/scipy": cold(
            "reference", record, args.cold
        ),
        "import neurokit2": cold("neurokit2", record, args.cold),
        "import scipy.signal": cold("scipy.signal", record, args.cold),
    }
    out = {
        **provenance(),
        "data": DATA,
        "repeats": args.repeats,
        "compute": rows,
        "cold": cold_rows,
    }
    for row in rows:
        print(json.dumps(row))
    print(json.dumps(cold_rows, indent=1))
    path = args.out if args.out is not None else (None if args.quick else RESULTS)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"results -> {path}")


if __name__ == "__main__":
    main()
