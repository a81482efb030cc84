"""R-peak detector accuracy on the 48 MIT-BIH Arrhythmia records (Se, +P at 150 ms and 50 ms).

Why: the pipeline cuts every beat around a detected R-peak, so the detector decides which beats
exist and how well they line up. This runs each detector in :data:`ecgbio.beats.DETECTORS` on the
first channel of every record (mostly MLII, as the field does), whole record, and scores it against
the cardiologists' beat annotations (``.atr``, beat symbols only) with
:func:`ecgbio.metrics.rpeaks.match_peaks`:

* windows of 150 ms (ANSI/AAMI EC57) and 50 ms (alignment on the R wave itself), whole records;
* EC57 scoring at 150 ms (``150ms_ec57``): the first 5 minutes (learning period) and the ventricular
  flutter/fibrillation episodes left out of both the reference and the detections, as the standard
  does (:func:`ecgbio.metrics.rpeaks.ec57_scored`);
* as detected, and after :func:`ecgbio.beats.refine_peaks` (0.04 s, on the ``neurokit``-cleaned
  lead), which is what the pipeline does before cutting windows;
* gross totals (summed TP/FP/FN over all reference beats) and one row per record;
* the lag of each detector's mark behind the annotation (median and 5th/95th percentiles of
  ``detected - reference`` over the pairs at 150 ms, in ms): a constant lag passes the 150 ms
  window yet fails the 50 ms one and shifts every beat window;
* wall time per detector. A detector that raises (or exceeds ``--timeout-s``) on a record counts
  as 0 detections there, and the error is reported.

``christov2004`` (+P 54 %, 15 s a record) and ``emrich2023`` (needs ``ts2vg``) are not offered by
:data:`ecgbio.beats.DETECTORS` after a first measurement with this script.

Usage (from the repository root)::

    .venv/bin/python experiments/rpeaks_mitdb.py
    .venv/bin/python experiments/rpeaks_mitdb.py --detectors neurokit,kalidas2017 --records 100,101

Data: MIT-BIH Arrhythmia Database 1.0.0 (Moody & Mark 2001, PhysioNet, ODC-By 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script without installing the package
    sys.path.insert(0, str(REPO))

from ecgbio.beats import DETECTORS, clean, detect_rpeaks, refine_peaks  # noqa: E402
from ecgbio.metrics.rpeaks import (  # noqa: E402
    EC57_LEARNING_S,
    PeakMatch,
    ec57_scored,
    match_peaks,
    pair_peaks,
    reference_beats,
    sum_matches,
    vf_spans,
)
from ecgbio.records import read_record  # noqa: E402

DATA_DEFAULT = REPO / ".." / "shared" / "data" / "mitdb"
OUT_DEFAULT = REPO / "experiments" / "results" / "rpeaks-mitdb.json"
DATA_SOURCE = "MIT-BIH Arrhythmia Database 1.0.0, PhysioNet, ODC-By"
#: Matching windows (half-widths), in seconds: EC57's 150 ms and a tight 50 ms.
WINDOWS_S = {"150ms": 0.150, "50ms": 0.050}
REFINE_WINDOW_S = 0.04
REFINE_CLEAN = "neurokit"
#: EC57 scoring: 150 ms, learning period and flutter/fibrillation episodes left out.
EC57_KEY = "150ms_ec57"
SCORINGS = (*WINDOWS_S, EC57_KEY)
VARIANTS = ("raw", "refined")
#: Window whose pairs give the lag statistics (the widest: every plausible pair).
LAG_WINDOW = "150ms"
DEFAULT_DETECTORS = DETECTORS  # every detector ecgbio offers (see ecgbio.beats.DETECTORS)


class DetectorTimeoutError(Exception):
    """A detector ran longer than ``--timeout-s`` on one record."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`DetectorTimeoutError` after ``seconds`` (POSIX main thread only; else no limit)."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def _expired(signum: int, frame: object) -> None:
        raise DetectorTimeoutError(f"exceeded {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA_DEFAULT,
        help="MIT-BIH root holding RECORDS and 100.hea/.dat/.atr ... "
        "(default: ../shared/data/mitdb)",
    )
    parser.add_argument(
        "--detectors",
        default=",".join(DEFAULT_DETECTORS),
        help=f"comma-separated detectors, from {','.join(DETECTORS)} (default: all)",
    )
    parser.add_argument(
        "--records",
        default="",
        help="comma-separated record names (default: every record in RECORDS)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=OUT_DEFAULT,
        help="JSON results file (default: experiments/results/rpeaks-mitdb.json)",
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=300.0,
        help="per detector and record; longer counts as a failure (0 = no limit)",
    )
    args = parser.parse_args(argv)
    args.detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = [d for d in args.detectors if d not in DETECTORS]
    if unknown or not args.detectors:
        parser.error(
            f"unknown detector(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(DETECTORS)}"
        )
    if not (args.data / "RECORDS").is_file() and not args.records:
        parser.error(f"{args.data}/RECORDS not found; pass --data or --records")
    args.records = (
        [r.strip() for r in args.records.split(",") if r.strip()]
        if args.records
        else (args.data / "RECORDS").read_text().split()
    )
    missing = [
        r
        for r in args.records
        if not (args.data / f"{r}.hea").is_file() or not (args.data / f"{r}.atr").is_file()
    ]
    if missing:
        parser.error(f"record(s) {', '.join(missing)} lack .hea or .atr under {args.data}")
    return args


def load_record(
    path: Path,
) -> tuple[np.ndarray, float, str, np.ndarray, np.ndarray, np.ndarray]:
    """Channel 0 (mV), rate, lead name, its neurokit-cleaned version, reference beat samples and
    the ventricular flutter/fibrillation spans."""
    import wfdb

    rec = read_record(path, leads="all")
    expected = int(wfdb.rdheader(str(path)).sig_len)
    if rec.signal.shape[1] != expected:  # read_record cropped a defect: annotations would shift
        raise RuntimeError(
            f"{path}: {expected} samples in header but {rec.signal.shape[1]} read "
            f"({'; '.join(rec.notes)}); annotation indices would not line up"
        )
    lead = np.asarray(rec.signal[0], dtype=np.float64)
    cleaned = clean(lead[None, :], rec.fs, REFINE_CLEAN)[0]
    annotation = wfdb.rdann(str(path), "atr")
    return lead, rec.fs, rec.leads[0], cleaned, reference_beats(annotation), vf_spans(annotation)


def score(
    peaks: np.ndarray, reference: np.ndarray, fs: float, spans: np.ndarray
) -> dict[str, PeakMatch]:
    out = {name: match_peaks(peaks, reference, round(w * fs)) for name, w in WINDOWS_S.items()}
    start = round(EC57_LEARNING_S * fs)
    out[EC57_KEY] = match_peaks(
        ec57_scored(peaks, spans, start),
        ec57_scored(reference, spans, start),
        round(WINDOWS_S["150ms"] * fs),
    )
    return out


def lags_ms(peaks: np.ndarray, reference: np.ndarray, fs: float) -> np.ndarray:
    """``detected - reference`` in ms over the pairs at :data:`LAG_WINDOW`."""
    d, r = pair_peaks(peaks, reference, round(WINDOWS_S[LAG_WINDOW] * fs))
    return (peaks[d] - reference[r]).astype(np.float64) * 1000.0 / fs


def lag_summary(lags: np.ndarray) -> dict[str, float | None]:
    if lags.size == 0:
        return {"median": None, "p5": None, "p95": None}
    p5, med, p95 = np.percentile(lags, [5, 50, 95])
    return {"median": round(float(med), 2), "p5": round(float(p5), 2), "p95": round(float(p95), 2)}


def run_one(
    detector: str,
    lead: np.ndarray,
    fs: float,
    cleaned: np.ndarray,
    reference: np.ndarray,
    spans: np.ndarray,
    timeout_s: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Detect, refine and score one detector on one record: (JSON row, PeakMatch objects)."""
    error = None
    t0 = time.perf_counter()
    try:
        with time_limit(timeout_s):
            peaks = detect_rpeaks(lead, fs, detector)
    except Exception as exc:  # a crash is a result: 0 detections, reported
        peaks = np.zeros(0, dtype=np.int64)
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    refined = refine_peaks(cleaned, peaks, fs, REFINE_WINDOW_S)
    refine_seconds = time.perf_counter() - t1
    matches: dict[str, Any] = {
        "raw": score(peaks, reference, fs, spans),
        "refined": score(refined, reference, fs, spans),
    }
    lags = {"raw": lags_ms(peaks, reference, fs), "refined": lags_ms(refined, reference, fs)}
    row: dict[str, Any] = {
        "detector": detector,
        "error": error,
        "seconds": round(seconds, 4),
        "refine_seconds": round(refine_seconds, 4),
        "detected": int(peaks.size),
        "after_refine": int(refined.size),
    }
    for variant, by_window in matches.items():
        row[variant] = {w: m.as_dict() for w, m in by_window.items()}
        row[variant]["lag_ms"] = lag_summary(lags[variant])
        matches[variant]["lags"] = lags[variant]
    return row, matches


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_available": affinity,
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    out = {}
    for name in ("numpy", "scipy", "neurokit2", "wfdb"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # a missing version is not worth failing the run
            out[name] = "unknown"
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def totals(
    detectors: list[str], rows: list[dict[str, Any]], matches: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Gross statistics per detector from summed counts, and its timing and failures."""
    out: dict[str, Any] = {}
    for det in detectors:
        mine = [r for r in rows if r["detector"] == det]
        n = len(mine)
        seconds = sum(r["seconds"] for r in mine)
        entry: dict[str, Any] = {
            "records": n,
            "reference_beats": sum(r["reference_beats"] for r in mine),
            "detected": sum(r["detected"] for r in mine),
            "seconds": round(seconds, 3),
            "s_per_record": round(seconds / n, 4) if n else None,
            "records_per_s": round(n / seconds, 4) if seconds > 0 else None,
            "refine_seconds": round(sum(r["refine_seconds"] for r in mine), 3),
            "failures": [{"record": r["record"], "error": r["error"]} for r in mine if r["error"]],
        }
        for variant in VARIANTS:
            entry[variant] = {
                w: sum_matches(m[variant][w] for m in matches[det]).as_dict() for w in SCORINGS
            }
            lags = [m[variant]["lags"] for m in matches[det]]
            entry[variant]["lag_ms"] = lag_summary(np.concatenate(lags) if lags else np.zeros(0))
        out[det] = entry
    return out


def table(summary: dict[str, Any]) -> str:
    """Markdown table of the totals (percentages)."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}"

    head = (
        "| detector | Se 150 | +P 150 | Se 50 | +P 50 | Se 150 ref | +P 150 ref | Se 50 ref "
        "| +P 50 ref | Se EC57 ref | +P EC57 ref | lag ms | lag ms ref | s/record | failures |"
    )
    lines = [head, "|" + "---|" * 15]
    for det, t in summary.items():
        cells = [det]
        for variant in VARIANTS:
            for w in WINDOWS_S:
                m = t[variant][w]
                cells += [pct(m["sensitivity"]), pct(m["ppv"])]
        m = t["refined"][EC57_KEY]
        cells += [pct(m["sensitivity"]), pct(m["ppv"])]
        for variant in VARIANTS:
            med = t[variant]["lag_ms"]["median"]
            cells.append("-" if med is None else f"{med:+.1f}")
        cells += [
            f"{t['s_per_record']:.2f}" if t["s_per_record"] is not None else "-",
            str(len(t["failures"])),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    args = parse_args(argv)
    started = time.perf_counter()
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    meta: dict[str, Any] = {
        "command": command,
        "data": {"path": str(args.data), "source": DATA_SOURCE},
        "hardware": hardware(),
        "versions": versions(),
        "git_commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "protocol": {
            "lead": "channel 0 of every record (its name in each per-record row)",
            "span": "whole record; no learning period skipped",
            "ec57": f"{EC57_KEY}: 150 ms, reference and detections before "
            f"{EC57_LEARNING_S:g} s (learning period) or inside ventricular flutter/fibrillation "
            "episodes ('[' to ']') left out",
            "reference": "beat annotations only (ecgbio.metrics.rpeaks.BEAT_SYMBOLS)",
            "windows_s": WINDOWS_S,
            "matching": "one-to-one maximum matching, |detected - reference| <= window (inclusive)",
            "refine": f"refine_peaks(window {REFINE_WINDOW_S} s) on clean(method "
            f"{REFINE_CLEAN!r}) of the same lead",
            "totals": "gross: Se and +P from TP/FP/FN summed over all records",
            "lag": f"detected - reference (ms) over the pairs at {LAG_WINDOW}: median, p5, p95",
            "timeout_s": args.timeout_s,
        },
        "detectors": args.detectors,
        "records": args.records,
    }
    rows: list[dict[str, Any]] = []
    matches: dict[str, list[dict[str, Any]]] = {d: [] for d in args.detectors}
    record_errors: list[dict[str, str]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def write(complete: bool) -> None:
        result = {
            **meta,
            "complete": complete,
            "wall_time_s": round(time.perf_counter() - started, 1),
            "record_errors": record_errors,
            "totals": totals(args.detectors, rows, matches),
            "per_record": rows,
        }
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(args.out)

    bar = tqdm(total=len(args.records) * len(args.detectors), unit="run", dynamic_ncols=True)
    for name in args.records:
        try:
            lead, fs, lead_name, cleaned, reference, spans = load_record(args.data / name)
        except Exception as exc:  # an unreadable record is reported, not scored
            record_errors.append({"record": name, "error": f"{type(exc).__name__}: {exc}"})
            bar.update(len(args.detectors))
            continue
        for det in args.detectors:
            bar.set_postfix_str(f"{name} {det}")
            row, by_variant = run_one(det, lead, fs, cleaned, reference, spans, args.timeout_s)
            rows.append(
                {"record": name, "lead": lead_name, "reference_beats": int(reference.size), **row}
            )
            matches[det].append(by_variant)
            bar.update(1)
        write(complete=False)
    bar.close()
    write(complete=True)
    summary = totals(args.detectors, rows, matches)
    print(table(summary))
    for det, t in summary.items():
        if t["failures"]:
            first = t["failures"][0]
            print(
                f"{det}: failed on {len(t['failures'])} record(s), e.g. {first['record']}: "
                f"{first['error']}"
            )
    for err in record_errors:
        print(f"record {err['record']} skipped: {err['error']}")
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 1 if record_errors else 0


if __name__ == "__main__":
    sys.exit(main())
