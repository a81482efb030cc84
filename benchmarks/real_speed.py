"""Speed on real data (issue #7 part 6): prepare, identify and training throughput, with the hardware.

Run from the repository root::

    python -m benchmarks.real_speed [--model default|RUN_DIR] [--ptbxl DIR] [--ecgid DIR] [--quick]

Writes ``benchmarks/results/real_speed.json`` (command, hardware, commit and versions included),
except with ``--quick`` (a smoke run on a few records) unless ``--out`` names a file.

1. prepare: :func:`ecgbio.prepare.prepare_store` over the PTB-XL subset (``ptbxl_records``, 100 Hz)
   and over ECG-ID (``folder_records``) with ``BeatConfig()`` (lead I, 100 Hz) and 2 worker
   processes, into a temporary directory: records/s and beats/s. The wall time is prepare's own:
   worker start-up (spawn) and writing the store included.
2. identify: every ECG-ID person is enrolled from their ``rec_1`` into a real
   :class:`~ecgbio.gallery.Gallery` (``embed_for_enrolment`` + ``enroll_embeddings``, as ``ecgbio
   enroll`` does). Then, with torch and FAISS on ONE thread, a 10 s record is identified end to end
   (``Gallery.identify(path)``, what ``ecgbio identify`` does once the model is loaded), and each
   part is timed alone: read + resample, clean + R-peaks + beats, embed, search (``Gallery.search``:
   generation check, FAISS query, person ranking) and the FAISS query alone. Median and p90 over
   ``--repeats`` after a warm-up. Model load, gallery open and the first search (which builds the
   index) are reported apart, and so is a cold process (interpreter + imports + model + gallery +
   one identify, :func:`benchmarks.gallery_search.cold_identify`). Probes:
   ``ecgid``: the first enrolled person's ``rec_2`` cropped to its first 10 s (500 Hz, both
   channels, so the read resamples to the model's rate and picks lead I), written to a temporary
   WFDB record: a genuine probe; ``ptbxl``: the first PTB-XL record (10 s, 100 Hz, 12 leads on
   file): a person who is not enrolled (same work, an "unknown" answer).
3. training: beats/s of :func:`ecgbio.training.train` (``ModelConfig()``, protocol ``general``, the
   default model's augmentation, 2 threads) for ``--epochs`` epochs on the PTB-XL store of step 1;
   the figure is ``TrainResult.beats_per_s`` (training steps only, validation excluded).

Goal (issue #7): identify a 10 s record in < 50 ms on one core, model load excluded.
Data: PTB-XL (CC BY 4.0, Wagner et al. 2020) and ECG-ID (ODC-By 1.0, Lugovaya 2005), PhysioNet.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before FAISS (one OpenMP runtime)

from ecgbio.config import DEFAULT_MODEL, BeatConfig, ModelConfig, TrainConfig, to_dict
from ecgbio.errors import EcgbioError
from ecgbio.provenance import REPO, SHARED_DATA, provenance
from ecgbio.sources import RecordSpec
from experiments._common import write_results

DATA = (
    "PTB-XL subset (ecg_id 1-1999, 100 Hz; CC BY 4.0, Wagner et al. 2020) and ECG-ID 1.0.0 "
    "(500 Hz; ODC-By 1.0, Lugovaya 2005), PhysioNet"
)
RESULTS = REPO / "benchmarks" / "results" / "real_speed.json"
GOAL_MS = 50.0
PROBE_SECONDS = 10.0
QUICK_RECORDS = 100
QUICK_PERSONS = 20
WORKERS = 2
TRAIN_THREADS = 2
PARTS = {
    "read": "read + resample",
    "beats": "clean + R-peaks + beats",
    "embed": "embed",
    "search": "search (Gallery.search)",
    "faiss": "FAISS query alone",
    "identify": "identify end to end",
}


def stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90 and min of timings in seconds, in ms."""
    ms = np.asarray(seconds, np.float64) * 1e3
    return {
        "median_ms": round(float(np.median(ms)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "min_ms": round(float(ms.min()), 3),
    }


def subset(specs: Sequence[RecordSpec], n: int) -> list[RecordSpec]:
    """At most ``n`` specs in the source's order: the records of persons with >= 2 records up to a
    quarter of ``n`` (the ``general`` protocol validates on them), then the first others."""
    if not n or len(specs) <= n:
        return list(specs)
    counts: dict[str, int] = {}
    for s in specs:
        counts[s.person] = counts.get(s.person, 0) + 1
    multi = [i for i, s in enumerate(specs) if counts[s.person] >= 2][: n // 4]
    if multi and specs[multi[-1]].person == specs[multi[0]].person:
        multi = []  # one person alone cannot be split into gallery and probes of two persons
    rest = [i for i in range(len(specs)) if i not in set(multi)][: n - len(multi)]
    return [specs[i] for i in sorted(multi + rest)]


# ------------------------------------------------------------------------------------- prepare


def bench_prepare(
    name: str, specs: Sequence[RecordSpec], out: Path, workers: int, source: dict[str, Any]
) -> dict[str, Any]:
    from ecgbio.prepare import prepare_store

    summary = prepare_store(
        specs, out, BeatConfig(), workers=workers, progress=False, source=source
    )
    row = {
        "source": name,
        "records": summary.records_total,
        "records_read": summary.records_read,
        "records_rejected": summary.records_rejected,
        "beats": summary.beats,
        "persons": summary.persons,
        "workers": workers,
        "wall_s": round(summary.wall_s, 2),
        "records_per_s": round(summary.records_per_s, 1),
        "beats_per_s": round(summary.beats / max(summary.wall_s, 1e-9), 1),
    }
    print(
        f"  prepare {name}: {row['records']} records, {row['beats']} beats in {row['wall_s']} s "
        f"({row['records_per_s']} records/s)",
        flush=True,
    )
    return row


# ------------------------------------------------------------------------------------ identify


def crop_record(src: Path, dst_dir: Path, seconds: float = PROBE_SECONDS) -> Path:
    """The first ``seconds`` of WFDB record ``src`` (all channels, digital values and header
    kept) written as a new record in ``dst_dir``; returns its path (no extension)."""
    import wfdb

    head = wfdb.rdheader(str(src))
    rec = wfdb.rdrecord(
        str(src), sampto=min(int(round(seconds * head.fs)), head.sig_len), physical=False
    )
    name = f"{src.parent.name}_{src.name}_{seconds:g}s"
    dst_dir.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=rec.fs,
        units=rec.units,
        sig_name=rec.sig_name,
        d_signal=rec.d_signal,
        fmt=rec.fmt,
        adc_gain=rec.adc_gain,
        baseline=rec.baseline,
        comments=rec.comments,
        write_dir=str(dst_dir),
    )
    return dst_dir / name


def enrol_records(ecgid: Path, persons: int) -> list[tuple[str, Path]]:
    """(person, rec_1) for each person folder of ``ecgid``, at most ``persons`` (0 = all)."""
    found = [(h.parent.name, h.with_suffix("")) for h in sorted(ecgid.glob("*/rec_1.hea"))]
    return found[:persons] if persons else found


def time_parts(
    gallery: Any, probe: Path, repeats: int, warmup: int
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Each part alone and the whole identify, interleaved, ``warmup`` untimed rounds first."""
    from ecgbio.beats import extract_beats
    from ecgbio.embed import record_templates
    from ecgbio.gallery import index as faiss_index
    from ecgbio.records import read_record

    embedder = gallery.embedder
    cfg = embedder.beat_config
    state = gallery.searcher.current()
    fetch = min(int(state.index.ntotal), state.most + 1)  # what identify's top-2 search fetches
    times: dict[str, list[float]] = {k: [] for k in PARTS}
    result = None
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        rec = read_record(probe, leads=cfg.leads, rate=cfg.rate, min_duration_s=cfg.min_duration_s)
        t1 = time.perf_counter()
        beats = extract_beats(rec, cfg)
        t2 = time.perf_counter()
        emb = embedder.embed_waves(beats.waves)
        _, template = record_templates(emb, np.zeros(len(emb), np.int64))
        t3 = time.perf_counter()
        gallery.search(template, 2)
        t4 = time.perf_counter()
        faiss_index.search(state.index, template, fetch)
        t5 = time.perf_counter()
        result = gallery.identify(probe)
        t6 = time.perf_counter()
        if i >= warmup:
            for key, dt in zip(
                PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True
            ):
                times[key].append(dt)
    assert result is not None
    best = result.candidates[0] if result.candidates else None
    facts = {
        "record_s": round(rec.duration_s, 2),
        "beats": len(beats),
        "answer": result.person or "unknown",
        "best_candidate": best.person if best else None,
        "best_score": round(float(best.score), 4) if best else None,
    }
    return {k: stats_ms(v) for k, v in times.items()}, facts


def bench_identify(
    model: str,
    ecgid: Path,
    probes: dict[str, tuple[Path, str]],
    persons: int,
    repeats: int,
    warmup: int,
    tmp: Path,
    cold_process: bool = True,
) -> dict[str, Any]:
    """Enrol ECG-ID rec_1s, then time identify of each probe on one thread (see module doc)."""
    import wfdb

    from benchmarks.gallery_search import cold_identify
    from ecgbio.embed import Embedder
    from ecgbio.gallery import Gallery, GalleryError, QualityGate, embed_for_enrolment
    from ecgbio.gallery import index as faiss_index
    from ecgbio.runs import model_dir

    lenient = QualityGate(min_beats=1, min_consistency=-1.0)
    torch.set_num_threads(1)
    faiss_index.faiss_module().omp_set_num_threads(1)

    start = time.perf_counter()
    embedder = Embedder(model)
    load_s = time.perf_counter() - start

    path = tmp / "gallery"
    start = time.perf_counter()
    refused: dict[str, str] = {}
    opened, _ = Gallery.open_or_create(path, embedder)
    with opened:
        for person, record in enrol_records(ecgid, persons):
            try:
                embeddings = embed_for_enrolment(embedder, person, [record])
            except GalleryError as exc:  # the quality gate: enrolled anyway, the size matters here
                refused[person] = str(exc)
                embeddings = embed_for_enrolment(embedder, person, [record], gate=lenient)
            opened.enroll_embeddings(person, embeddings)
        enrolled = len(opened)
        index_kind = opened.info()["index_in_use"]
    enrol_s = time.perf_counter() - start

    start = time.perf_counter()
    gallery = Gallery.open(path, embedder)
    open_s = time.perf_counter() - start
    start = time.perf_counter()
    gallery.search(np.ones(gallery.dim, np.float32) / np.sqrt(gallery.dim), 2)  # builds the index
    first_search_s = time.perf_counter() - start

    rows: dict[str, Any] = {}
    cold: dict[str, Any] = {}
    with gallery:
        for name, (probe, what) in probes.items():
            parts, facts = time_parts(gallery, probe, repeats, warmup)
            rate = float(wfdb.rdheader(str(probe)).fs)
            rows[name] = {"probe": what, "record": str(probe), "record_rate_hz": rate, **facts}
            rows[name]["ms"] = parts
            ms = parts["identify"]
            print(
                f"  identify {name}: median {ms['median_ms']:.1f} ms, p90 {ms['p90_ms']:.1f} ms "
                f"({facts['beats']} beats; answer {facts['answer']})",
                flush=True,
            )
    if cold_process:
        first = next(iter(probes.values()))[0]
        try:
            cold = cold_identify(model_dir(model), path, first)
        except Exception as exc:  # a figure apart; never lose the rest for it
            cold = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "threads": 1,
        "model": str(model),
        "model_run": str(embedder.run.root),
        "model_fingerprint": embedder.fingerprint[:12],
        "model_config": to_dict(embedder.run.model_config),
        "model_beat_config": to_dict(embedder.beat_config),
        "gallery_persons": enrolled,
        "gallery_index": index_kind,
        "enrolled_past_quality_gate": refused,
        "enrol_s": round(enrol_s, 2),
        "model_load_s": round(load_s, 3),
        "gallery_open_s": round(open_s, 4),
        "first_search_s": round(first_search_s, 4),
        "repeats": repeats,
        "warmup": warmup,
        "probes": rows,
        "cold_process": cold,
        "goal_ms": GOAL_MS,
    }


# ------------------------------------------------------------------------------------ training


def bench_training(store: Path, out: Path, epochs: int) -> dict[str, Any]:
    """Beats/s of a short ``train`` run with the default model's architecture and recipe."""
    from ecgbio.training import train

    model_config = ModelConfig()
    config = TrainConfig(
        protocol="general",
        epochs=epochs,
        patience=0,
        val_fraction=0.0,
        augment_stretch=0.08,  # the default model's recipe (experiments/train_default.py)
        augment_shift_s=0.02,
        threads=TRAIN_THREADS,
    )
    cpu0, start = time.process_time(), time.perf_counter()
    result = train(store, out, model_config, config, progress=False, echo=None)
    wall = time.perf_counter() - start
    row = {
        "epochs": result.epochs_run,
        "threads": TRAIN_THREADS,
        "train_identities": result.split.get("train_identities"),
        "train_beats_per_epoch": result.split.get("train_beats"),
        "beats_per_s": result.beats_per_s,
        "wall_s": round(wall, 2),
        "cores_used": round((time.process_time() - cpu0) / max(wall, 1e-9), 2),
        "model_config": to_dict(model_config),
        "train_config": to_dict(config),
    }
    print(f"  training: {row['beats_per_s']} beats/s ({row['wall_s']} s)", flush=True)
    return row


# --------------------------------------------------------------------------------------- output


def print_table(result: dict[str, Any]) -> None:
    hw = result["hardware"]
    print(
        f"\nhardware  {hw['cpu']}, {hw['cores']} cores, {hw['platform']}, Python {hw['python']}, "
        f"torch {torch.__version__}; load average before {result['load_avg_before']}, after "
        f"{result['load_avg_after']}"
    )
    if result.get("prepare"):
        print(f"\nprepare (BeatConfig(): lead I, 100 Hz; {WORKERS} workers)")
        print(
            f"  {'source':8} {'records':>8} {'rejected':>8} {'beats':>7} {'wall s':>7} "
            f"{'records/s':>9} {'beats/s':>8}"
        )
        for r in result["prepare"]:
            print(
                f"  {r['source']:8} {r['records']:>8} {r['records_rejected']:>8} {r['beats']:>7} "
                f"{r['wall_s']:>7.1f} {r['records_per_s']:>9.1f} {r['beats_per_s']:>8.0f}"
            )
    ident = result.get("identify")
    if ident:
        print(
            f"\nidentify (1 thread; model {ident['model']}, {ident['model_fingerprint']}; gallery "
            f"{ident['gallery_persons']} persons, {ident['gallery_index']} index)"
        )
        names = list(ident["probes"])
        print(f"  {'part':26}" + "".join(f" {n + ' median':>13} {'p90':>7}" for n in names))
        for key, label in PARTS.items():
            cells = "".join(
                f" {ident['probes'][n]['ms'][key]['median_ms']:>13.2f} "
                f"{ident['probes'][n]['ms'][key]['p90_ms']:>7.2f}"
                for n in names
            )
            print(f"  {label:26}{cells}  ms")
        for n in names:
            p = ident["probes"][n]
            print(f"  probe {n}: {p['probe']}; {p['beats']} beats; answer {p['answer']}")
        print(
            f"  apart: model load {ident['model_load_s']:.2f} s, gallery open "
            f"{ident['gallery_open_s'] * 1e3:.1f} ms, first search (index build) "
            f"{ident['first_search_s'] * 1e3:.1f} ms, enrolment of {ident['gallery_persons']} "
            f"persons {ident['enrol_s']:.1f} s"
        )
        if ident["enrolled_past_quality_gate"]:
            print(
                f"  enrolled below the quality gate (kept for the gallery's size): "
                f"{', '.join(ident['enrolled_past_quality_gate'])}"
            )
        cold = ident["cold_process"]
        if cold and "error" not in cold:
            print(
                f"  cold process: {cold['process_wall_s']:.2f} s (imports {cold['imports_s']:.2f}"
                f", model {cold['model_load_s']:.2f}, gallery {cold['gallery_open_s']:.2f}, "
                f"first identify {cold['first_identify_s']:.2f})"
            )
        first = ident["probes"][names[0]]["ms"]["identify"]["median_ms"]
        verdict = "met" if first < GOAL_MS else "NOT met"
        print(f"  goal < {GOAL_MS:g} ms on one core: {verdict} ({first:.1f} ms median, {names[0]})")
    tr = result.get("training")
    if tr:
        print(
            f"\ntraining ({tr['epochs']} epochs, ModelConfig(), general, {tr['threads']} threads): "
            f"{tr['beats_per_s']:.0f} beats/s; {tr['train_beats_per_epoch']} beats/epoch, "
            f"{tr['train_identities']} identities, {tr['wall_s']:.1f} s with validation, "
            f"{tr['cores_used']:.2f} cores used"
        )
    for part, why in result.get("skipped", {}).items():
        print(f"\nskipped {part}: {why}")


# ------------------------------------------------------------------------------------------ main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.real_speed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="'default' (the shipped model) or a run directory"
    )
    parser.add_argument("--ptbxl", type=Path, default=SHARED_DATA / "ptb-xl-subset")
    parser.add_argument("--ecgid", type=Path, default=SHARED_DATA / "ecg-id-database-1.0.0")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_RECORDS} records a source, {QUICK_PERSONS} persons enrolled, "
        "5 repeats, 1 epoch; writes no results file unless --out",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed identifies (30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed identifies first")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (2)")
    parser.add_argument(
        "--no-cold", action="store_true", help="skip the cold-process identify (a subprocess)"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"results JSON (default {RESULTS})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    has_ptbxl, has_ecgid = args.ptbxl.is_dir(), args.ecgid.is_dir()
    if not has_ptbxl and not has_ecgid:
        print(f"skipped: no real data ({args.ptbxl} and {args.ecgid} are absent)")
        return 0
    from ecgbio.runs import model_dir

    try:  # before anything slow: the default model may not be installed yet
        model_dir(args.model)
    except EcgbioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    quick = args.quick
    limit = QUICK_RECORDS if quick else 0
    repeats = args.repeats or (5 if quick else 30)
    epochs = args.epochs or (1 if quick else 2)

    result: dict[str, Any] = {
        "hardware": provenance()["hardware"],
        "load_avg_before": [round(v, 2) for v in os.getloadavg()],
        "quick": quick,
        "roots": {"ptbxl": str(args.ptbxl), "ecgid": str(args.ecgid)},
        "prepare": [],
        "skipped": {},
    }
    print(f"real_speed: {'quick smoke run' if quick else 'full run'} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="ecgbio-real-speed-") as tmp_name:
        tmp = Path(tmp_name)
        jobs: list[tuple[str, Callable[[], list[RecordSpec]], dict[str, Any]]] = []
        if has_ptbxl:
            from ecgbio.sources.ptbxl import ptbxl_records

            jobs.append(
                (
                    "ptbxl",
                    lambda: ptbxl_records(args.ptbxl, rate=100),
                    {"kind": "ptbxl", "root": str(args.ptbxl)},
                )
            )
        else:
            result["skipped"]["prepare ptbxl, training"] = f"{args.ptbxl} absent"
        if has_ecgid:
            from ecgbio.sources.folder import folder_records

            jobs.append(
                (
                    "ecgid",
                    lambda: folder_records(args.ecgid),
                    {"kind": "folder", "root": str(args.ecgid)},
                )
            )
        else:
            result["skipped"]["prepare ecgid, identify"] = f"{args.ecgid} absent"
        for name, specs, source in jobs:
            result["prepare"].append(
                bench_prepare(name, subset(specs(), limit), tmp / name, WORKERS, source)
            )

        if has_ecgid:
            probes: dict[str, tuple[Path, str]] = {}
            people = enrol_records(args.ecgid, QUICK_PERSONS if quick else 0)
            rec2 = next(
                (r.with_name("rec_2") for _, r in people if r.with_name("rec_2.hea").is_file()),
                None,
            )
            if rec2 is not None:
                probes["ecgid"] = (
                    crop_record(rec2, tmp / "probe"),
                    f"ECG-ID {rec2.parent.name}/{rec2.name} cropped to its first "
                    f"{PROBE_SECONDS:g} s (enrolled person)",
                )
            if has_ptbxl:
                first = next(iter(ptbxl_records(args.ptbxl, rate=100)))
                probes["ptbxl"] = (
                    Path(first.path),
                    f"PTB-XL record {first.record} ({Path(first.path).name}, not enrolled)",
                )
            if probes:
                result["identify"] = bench_identify(
                    args.model,
                    args.ecgid,
                    probes,
                    QUICK_PERSONS if quick else 0,
                    repeats,
                    args.warmup,
                    tmp,
                    cold_process=not args.no_cold,
                )
            else:
                result["skipped"]["identify"] = "no rec_2 to probe with and no PTB-XL record"
        if has_ptbxl:
            result["training"] = bench_training(tmp / "ptbxl", tmp / "run", epochs)
    result["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    print_table(result)
    out = args.out or (None if quick else RESULTS)
    if out is not None:  # adds command, hardware, commit, versions, data, beat config, wall time
        write_results(out, result, started, DATA, BeatConfig())
    print(f"\nwall time {result['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
