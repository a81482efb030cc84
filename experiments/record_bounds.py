"""Where the record-level rules sit against the real databases: amplitude bounds, rails, clipping.

``ecgbio.records`` and ``ecgbio.beats`` refuse a record whose median beat is outside
:data:`~ecgbio.records.AMPLITUDE_MV`, mark saturation rails (:func:`~ecgbio.records.find_rails`,
:data:`~ecgbio.records.RAIL_MIN_RUNS`, :data:`~ecgbio.records.RAIL_LONG_RUN_S`), drop the beats that
touch one and refuse a record where more than :data:`~ecgbio.beats.MAX_CLIPPED_SHARE` do. This recipe
runs the project's own code on every record of the shared databases and reports what those rules
see, so that the margins quoted for them are reproducible:

- ECG-ID (310 records, lead I), the PTB-XL subset (lead I, and all 12 leads), MIT-BIH (the first
  lead: MLII, V5 in 102 and 104) and CinC 2017 (all 8,528, its one lead ``ECG`` standing in for I);
- each record is read with :func:`~ecgbio.records.read_record` and cut with
  :func:`~ecgbio.beats.extract_beats` under the default :class:`~ecgbio.config.BeatConfig` (only
  ``normalize="none"`` and ``max_beats=0``, which act after every check, so that the beats returned
  are the ones :func:`~ecgbio.beats.check_amplitude` judged, in millivolts);
- ``amplitude_mv``: per lead, the median beat's peak-to-peak amplitude as ``check_amplitude``
  computes it (min, p1, p50, p99, max over records) and, per record, of its largest lead;
- ``refused``: records refused, by rule (the exception's message says which). A record refused by
  the clipping rule, or for too few beats, is cut again with that rule lifted (``MAX_CLIPPED_SHARE``
  set to 1 / ``min_beats`` 1) to learn whether the amplitude rule would refuse it too
  (``would_refuse``);
- ``rails``: the records where ``find_rails`` found a rail (with its description) and, for every
  record, the margin of the rule: how many runs of >= 2 identical samples hold a lead's extreme
  value and the longest such run (ms), at the record's own rate, on records without a rail;
- ``clipped_beats``: beats dropped for touching a rail (``Beats.clipped``).

The record is read once at its own rate and resampled with :func:`ecgbio.records.resample`, which is
what ``read_record(..., rate=...)`` does after finding the rails.

    python -m experiments.record_bounds [--threads 1] [--workers 2]
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ecgbio.config import BeatConfig
from ecgbio.provenance import SHARED_DATA
from experiments._common import base_parser, default_results, write_results

#: The default beat pipeline, with the two settings that act after every check made neutral.
BEAT = replace(BeatConfig(), normalize="none", max_beats=0)
PERCENTILES = (1, 50, 99)
#: (name, lead spec) per database; ``first`` = the header's first signal.
DATABASES = (
    ("ecg-id", "ecg-id-database-1.0.0", "I"),
    ("ptbxl-I", "ptb-xl-subset", "I"),
    ("ptbxl-12lead", "ptb-xl-subset", "all"),
    ("mitdb", "mitdb", "first"),
    ("cinc2017", "cinc2017", "ECG"),
)


def record_paths(folder: Path, name: str) -> list[Path]:
    if name.startswith("ptbxl"):
        return sorted((folder / "records100").rglob("*_lr.hea"))
    if name == "cinc2017":
        return sorted((folder / "training2017").glob("*.hea"))
    lines = (folder / "RECORDS").read_text().split()
    return [folder / f"{line}.hea" for line in lines if line.strip()]


def _extremes(rec) -> tuple[int, float]:
    """Most runs of >= 2 identical samples holding a lead's max or min, and the longest (ms)."""
    from ecgbio.records import _run_lengths

    runs, longest = 0, 0
    for x in rec.signal:
        for value in (x.max(), x.min()):
            lengths = _run_lengths(x == value)
            runs = max(runs, int((lengths >= 2).sum()))
            longest = max(longest, int(lengths.max()) if lengths.size else 0)
    return runs, 1000.0 * longest / rec.fs


def _cut(rec, config: BeatConfig, lift_clip: bool = False):
    import ecgbio.beats as beats

    saved = beats.MAX_CLIPPED_SHARE
    if lift_clip:
        beats.MAX_CLIPPED_SHARE = 1.0
    try:
        return beats.extract_beats(rec, config)
    finally:
        beats.MAX_CLIPPED_SHARE = saved


def _rule(exc: Exception) -> str:
    msg = str(exc)
    if "peak to peak" in msg:
        return "amplitude"
    if "saturation rail" in msg:
        return "clipped_share"
    if "usable beats" in msg:
        return "too_few_beats"
    return f"other ({type(exc).__name__})"


def measure_record(item: tuple[Path, str, str]) -> dict[str, Any]:
    from ecgbio.errors import EcgbioError
    from ecgbio.records import read_record, resample

    path, leads, record = item
    out: dict[str, Any] = {"record": record}
    try:
        if leads == "first":
            import wfdb

            leads = wfdb.rdheader(str(path.with_suffix(""))).sig_name[0]
        native = read_record(path, leads=leads, rate=None)
    except EcgbioError as exc:
        out["read_error"] = str(exc)
        return out
    out["leads"] = list(native.leads)
    if native.rails:
        out["rails"] = list(native.rails)
    else:
        out["extreme_runs"], out["extreme_longest_ms"] = _extremes(native)
    rec = native
    if abs(rec.fs - BEAT.rate) > 1e-9:
        rec = resample(rec, float(BEAT.rate))
    rec.signal = rec.signal.astype(np.float32)
    try:
        got = _cut(rec, BEAT)
    except EcgbioError as exc:
        out["refused"] = _rule(exc)
        out["message"] = str(exc)
        if out["refused"] not in ("clipped_share", "too_few_beats"):
            return out
        try:  # what the other rules would say with this one lifted
            got = _cut(rec, replace(BEAT, min_beats=1), lift_clip=out["refused"] == "clipped_share")
        except EcgbioError as again:
            out["would_refuse"] = _rule(again)
            return out
    out["beats"], out["clipped"] = len(got), got.clipped
    out["amplitude_mv"] = np.ptp(np.median(got.waves, axis=0), axis=1).round(4).tolist()
    return out


def _init(threads: int) -> None:
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)


def measure_all(items: Sequence[tuple[Path, str, str]], workers: int, threads: int) -> list[dict]:
    if workers <= 1:
        return [measure_record(i) for i in items]
    import multiprocessing as mp

    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init,
        initargs=(threads,),
    ) as pool:
        return list(pool.map(measure_record, items, chunksize=16))


def spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, float)
    out = {"n": int(a.size), "min": round(float(a.min()), 4)}
    out.update({f"p{p}": round(float(np.percentile(a, p)), 4) for p in PERCENTILES})
    out["max"] = round(float(a.max()), 4)
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from ecgbio.records import AMPLITUDE_MV

    per_lead: dict[str, list[float]] = {}
    largest, lowest = [], []
    for r in rows:
        amps = r.get("amplitude_mv")
        if not amps:
            continue
        for lead, a in zip(r["leads"], amps, strict=True):
            per_lead.setdefault(lead, []).append(a)
        largest.append((max(amps), r["record"]))
        lowest.append((min(amps), r["record"]))
    refused: dict[str, int] = {}
    for r in rows:
        if "read_error" in r:
            refused["read_error"] = refused.get("read_error", 0) + 1
        elif "refused" in r:
            refused[r["refused"]] = refused.get(r["refused"], 0) + 1
    would = [
        {"record": r["record"], "refused": r["refused"], "then": r["would_refuse"]}
        for r in rows
        if "would_refuse" in r
    ]
    low, high = AMPLITUDE_MV
    clean = [r for r in rows if "extreme_runs" in r]
    runs = [r["extreme_runs"] for r in clean]
    return {
        "records": len(rows),
        "measured": len(largest),
        "amplitude_mv": {lead: spread(v) for lead, v in sorted(per_lead.items())},
        "amplitude_largest_lead_mv": spread([a for a, _ in largest]),
        "extremes": {
            "lowest": sorted(lowest)[:3],
            "highest": sorted(largest)[-3:],
        },
        "amplitude_margin": {
            "bounds_mv": list(AMPLITUDE_MV),
            "largest_lead_below_low": sum(a < low for a, _ in largest),
            "any_lead_above_high": sum(a > high for a, _ in largest),
            "factor_low": round(min(a for a, _ in largest) / low, 2) if largest else None,
            "factor_high": round(high / max(a for a, _ in largest), 2) if largest else None,
        },
        "refused": refused,
        "refusals": {r["record"]: r["message"] for r in rows if "refused" in r},
        "read_errors": {r["record"]: r["read_error"] for r in rows if "read_error" in r},
        "would_refuse": would,
        "rails": {
            "records_with_rail": sum("rails" in r for r in rows),
            "found": {r["record"]: r["rails"] for r in rows if "rails" in r},
            "clean_records": len(clean),
            "extreme_runs_max": max(runs) if runs else None,
            "records_per_extreme_runs": {str(k): runs.count(k) for k in sorted(set(runs))},
            "extreme_longest_ms_max": round(max(r["extreme_longest_ms"] for r in clean), 1)
            if clean
            else None,
        },
        "clipped_beats": sum(r.get("clipped", 0) for r in rows),
        "records_with_clipped_beats": {r["record"]: r["clipped"] for r in rows if r.get("clipped")},
        "beats_kept": sum(r.get("beats", 0) for r in rows),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__, SHARED_DATA)
    parser.add_argument("--only", default="", help="comma-separated database names (default all)")
    parser.add_argument("--limit", type=int, default=0, help="first N records per database (test)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    echo = None if args.quiet else print
    _init(args.threads)
    only = {s for s in args.only.split(",") if s}
    figures: dict[str, Any] = {}
    for name, folder, leads in DATABASES:
        if only and name not in only:
            continue
        root = args.root / folder
        if not root.exists():
            if echo:
                echo(f"{name}: {root} absent, skipped")
            continue
        t0 = time.perf_counter()
        paths = record_paths(root, name)
        if args.limit:
            paths = paths[: args.limit]
        items = [(p, leads, p.relative_to(root).with_suffix("").as_posix()) for p in paths]
        rows = measure_all(items, args.workers, args.threads)
        figures[name] = summarize(rows)
        figures[name]["wall_time_s"] = round(time.perf_counter() - t0, 1)
        if echo:
            s = figures[name]
            echo(
                f"{name}: {s['records']} records, largest lead {s['amplitude_largest_lead_mv']}, "
                f"refused {s['refused']}, rails {s['rails']['records_with_rail']}, "
                f"clipped beats {s['clipped_beats']} ({s['wall_time_s']} s)"
            )
    payload = {
        "what": "median-beat amplitude, rails and clipping on every record, by ecgbio's own code",
        "databases": figures,
    }
    out = default_results(args, "record-bounds") if not (only or args.limit) else args.results
    if out is not None:
        write_results(out, payload, started, str(args.root), BEAT)
    return payload


if __name__ == "__main__":
    main()
