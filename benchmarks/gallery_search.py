"""Gallery search speed: exact vs approximate FAISS indexes by gallery size, and identify latency.

Run: ``python -m benchmarks.gallery_search [--sizes 1000,100000,1000000] [--max-build-s 300]
[--model RUN_DIR --record REC.hea]``; writes ``benchmarks/results/gallery_search.json``.

1. Search: random unit vectors (dim 128) as templates, one thread, one query at a time (what
   ``identify`` does), for the index kinds the gallery ships with their shipped parameters
   (:mod:`ecgbio.gallery.index`) plus a sweep of the search-time knob (HNSW ``efSearch``, IVF
   ``nprobe``). Recall@1 is the approximate top-1 against the exact top-1, for two query sets:
   ``probe`` queries are gallery vectors plus noise (cosine ~0.75 to their source: a probe near
   its person's template, as in use) and ``random`` queries are fresh random vectors (the worst
   case: no structure, every vector almost equally far). Random data is the hardest case for
   approximate search; real embeddings cluster by person.
2. Identify: one 10 s record end to end (read + beats + embed + search) against a real
   :class:`~ecgbio.gallery.Gallery` of 100k templates, with each part timed alone and the model
   load and gallery open reported apart. Without ``--model``, an untrained model of the default
   architecture (``ModelConfig()``, the speed of a trained one) and a synthetic 500 Hz record are
   used; ``--model/--record`` adds a trained model and a real record.

A build whose estimated time (from the previous size) exceeds ``--max-build-s`` is skipped and
listed as such.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before FAISS (one OpenMP runtime)

from ecgbio.gallery import index as faiss_index
from ecgbio.provenance import provenance

DIM = 128
QUERIES = 200
PROBE_COSINE = 0.75
HNSW_EF = (16, 32, 64, 128, 256)
IVF_NPROBE = (1, 4, 16, 64, 128, 256)


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def probe_queries(rng: np.random.Generator, base: np.ndarray, n: int) -> np.ndarray:
    """Gallery vectors plus isotropic noise of norm s: cosine 1 / sqrt(1 + s^2) to the source."""
    s = np.sqrt(1.0 / PROBE_COSINE**2 - 1.0)
    src = base[rng.integers(0, len(base), n)]
    noise = rng.standard_normal(src.shape).astype(np.float32)
    noise *= s / np.linalg.norm(noise, axis=1, keepdims=True)
    q = src + noise
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def time_queries(
    index: Any, queries: np.ndarray, k: int = 1
) -> tuple[dict[str, float], np.ndarray]:
    """Per-query latency (ms, one query per call) and top-1 ids."""
    faiss_index.search(index, queries[:5], k)  # warm up
    times, ids = [], []
    for q in queries:
        start = time.perf_counter()
        _, found = faiss_index.search(index, q[None], k)
        times.append(time.perf_counter() - start)
        ids.append(found[0, 0])
    ms = np.array(times) * 1e3
    stats = {
        "median_ms": round(float(np.median(ms)), 4),
        "p95_ms": round(float(np.percentile(ms, 95)), 4),
    }
    return stats, np.array(ids)


def bench_size(
    n: int,
    base: np.ndarray,
    queries: dict[str, np.ndarray],
    previous: dict[str, Any] | None,
    max_build_s: float,
) -> dict[str, Any]:
    faiss = faiss_index.faiss_module()
    x, ids = base[:n], np.arange(n, dtype=np.int64)
    out: dict[str, Any] = {"templates": n, "vector_mb": round(x.nbytes / 1e6, 1)}

    before = rss_mb()
    start = time.perf_counter()
    flat = faiss_index.build(x, ids, "flat")
    out["flat"] = {
        "build_s": round(time.perf_counter() - start, 3),
        "memory_mb": round(rss_mb() - before, 1),
    }
    exact = {}
    for name, q in queries.items():
        stats, exact[name] = time_queries(flat, q)
        out["flat"][name] = stats
    del flat
    gc.collect()

    for kind in ("hnsw", "ivf"):
        if previous and kind in previous and "build_s" in previous[kind]:
            scale = n / previous["templates"]
            estimate = previous[kind]["build_s"] * scale * (1.15 if kind == "hnsw" else 1.0)
            if estimate > max_build_s:
                out[kind] = {
                    "skipped": f"build estimated at {estimate:.0f} s on one thread (from "
                    f"{previous[kind]['build_s']:.0f} s at {previous['templates']}), over "
                    f"--max-build-s {max_build_s:.0f}"
                }
                continue
        before = rss_mb()
        start = time.perf_counter()
        index = faiss_index.build(x, ids, kind)
        row: dict[str, Any] = {
            "build_s": round(time.perf_counter() - start, 2),
            "memory_mb": round(rss_mb() - before, 1),
        }
        if kind == "ivf":
            row["nlist"] = int(index.nlist)
        sweep = []
        if kind == "hnsw":
            knobs, shipped = list(HNSW_EF), faiss_index.HNSW_EF_SEARCH
        else:
            shipped = faiss_index.ivf_probes(index.nlist)
            knobs = sorted({min(k, index.nlist) for k in (*IVF_NPROBE, shipped)})
        for knob in knobs:
            if kind == "hnsw":
                faiss.downcast_index(index.index).hnsw.efSearch = knob
            else:
                index.nprobe = min(knob, index.nlist)
            point: dict[str, Any] = {"efSearch" if kind == "hnsw" else "nprobe": knob}
            for name, q in queries.items():
                stats, found = time_queries(index, q)
                point[name] = {**stats, "recall_at_1": float(np.mean(found == exact[name]))}
            sweep.append(point)
        row["shipped"] = next(p for p in sweep if shipped in p.values())
        row["sweep"] = sweep
        out[kind] = row
        del index
        gc.collect()
    print(
        json.dumps(
            {
                "templates": n,
                **{k: _short(v) for k, v in out.items() if k in ("flat", "hnsw", "ivf")},
            }
        ),
        flush=True,
    )
    return out


def _short(row: dict[str, Any]) -> Any:
    if "skipped" in row:
        return "skipped"
    shipped = row.get("shipped", row)
    return {
        "build_s": row["build_s"],
        "probe_ms": shipped["probe"]["median_ms"],
        "recall_probe": shipped["probe"].get("recall_at_1", 1.0),
        "recall_random": shipped["random"].get("recall_at_1", 1.0),
    }


# ------------------------------------------------------------------------------ identify


def default_model(tmp: Path) -> tuple[Path, Path, str]:
    """An untrained default-architecture run dir and a synthetic 10 s, 500 Hz record."""
    from ecgbio.config import BeatConfig, ModelConfig, TrainConfig
    from ecgbio.models import IdentityModel
    from ecgbio.runs import WEIGHTS_FILE, save_weights, write_run_config
    from ecgbio.sources.synthetic import write_synthetic_cohort

    torch.manual_seed(0)
    run = tmp / "run"
    run.mkdir()
    model_cfg, train_cfg, beat = ModelConfig(), TrainConfig(), BeatConfig()
    classes = [f"p{i}" for i in range(100)]
    model = IdentityModel(len(beat.leads), len(classes), model_cfg, train_cfg)
    write_run_config(run, beat, model_cfg, train_cfg, len(beat.leads), classes, {})
    save_weights(run / WEIGHTS_FILE, model)
    root = write_synthetic_cohort(
        tmp / "cohort",
        n_persons=1,
        records_per_person=1,
        duration_s=10.0,
        rate=500,
        n_leads=1,
        seed=0,
    )
    record = next(root.glob("records500/*/*.hea"))
    what = "untrained ModelConfig() (widths 32-64-128-256, dim 128), synthetic 10 s 500 Hz record"
    return run, record, what


def bench_identify(run: Path, record: Path, what: str, n: int, repeats: int) -> dict[str, Any]:
    from ecgbio.beats import beats_from_file
    from ecgbio.embed import Embedder
    from ecgbio.gallery import Gallery

    start = time.perf_counter()
    embedder = Embedder(run)
    load_s = time.perf_counter() - start
    tmp = Path(tempfile.mkdtemp(prefix="ecgbio-bench-gallery-"))
    try:
        gallery = Gallery.create(tmp / "g", embedder)
        rng = np.random.default_rng(1)
        vectors = unit_rows(rng, n, embedder.dim)
        start = time.perf_counter()
        store = gallery.store
        with store.write():  # one bulk transaction: the harness, not the enrolment path
            for i in range(0, n, 2):
                pid = store.add_person(f"person{i // 2:07d}")
                for row in vectors[i : i + 2]:
                    store.add_template(pid, f"record{i}", row, 10, 0.9)
        insert_s = time.perf_counter() - start
        size_mb = (tmp / "g" / "gallery.sqlite").stat().st_size / 1e6
        gallery.close()
        del vectors
        emb = embedder.embed_record(record)  # warm up torch before timing anything
        start = time.perf_counter()
        gallery = Gallery.open(tmp / "g", embedder)
        gallery.search(emb.template, 5)  # builds the index from SQLite
        open_s = time.perf_counter() - start
        parts: dict[str, list[float]] = {
            "read_and_beats": [],
            "embed": [],
            "search": [],
            "faiss_search": [],
            "identify_total": [],
        }
        beat_config = embedder.beat_config
        state = gallery.searcher.current()
        for _ in range(repeats):
            t0 = time.perf_counter()
            beats = beats_from_file(record, beat_config)
            t1 = time.perf_counter()
            waves = embedder.embed_waves(beats.waves)
            t2 = time.perf_counter()
            template = waves.mean(0)
            gallery.search(template / np.linalg.norm(template), 5)
            t3 = time.perf_counter()
            faiss_index.search(state.index, (template / np.linalg.norm(template))[None], 9)
            t4 = time.perf_counter()
            gallery.identify(record, threshold=0.5)
            t5 = time.perf_counter()
            for key, value in zip(
                parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True
            ):
                parts[key].append(value * 1e3)
        gallery.close()
        cold = cold_identify(run, tmp / "g", record)
        return {
            "model": what,
            "run": str(run),
            "record": str(record),
            "beats": int(len(beats.waves)),
            "gallery_templates": n,
            "gallery_file_mb": round(size_mb, 1),
            "model_load_s": round(load_s, 3),
            "gallery_bulk_insert_s": round(insert_s, 2),
            "gallery_open_and_index_build_s": round(open_s, 2),
            "median_ms": {k: round(statistics.median(v), 3) for k, v in parts.items()},
            "repeats": repeats,
            "cold_process": cold,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_COLD = """
import json, sys, time
t0 = time.perf_counter()
import torch
from ecgbio.embed import Embedder
from ecgbio.gallery import Gallery
torch.set_num_threads(1)
t1 = time.perf_counter()
embedder = Embedder(sys.argv[1])
t2 = time.perf_counter()
gallery = Gallery.open(sys.argv[2], embedder)
t3 = time.perf_counter()
gallery.identify(sys.argv[3], threshold=0.5)
t4 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "model_load_s": t2 - t1, "gallery_open_s": t3 - t2,
                  "first_identify_s": t4 - t3}))
"""


def cold_identify(run: Path, gallery: Path, record: Path) -> dict[str, float]:
    """What one ``ecgbio identify`` process pays: interpreter, imports, model, gallery, identify."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _COLD, str(run), str(gallery), str(record)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    wall = time.perf_counter() - start
    parts = json.loads(done.stdout.strip().splitlines()[-1])
    return {**{k: round(v, 3) for k, v in parts.items()}, "process_wall_s": round(wall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--max-build-s", type=float, default=300.0)
    parser.add_argument("--identify-templates", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--model", type=Path, help="a trained run dir, with --record")
    parser.add_argument("--record", type=Path, help="a 10 s WFDB record for --model")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results/gallery_search.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    faiss = faiss_index.faiss_module()
    faiss.omp_set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    base = unit_rows(rng, max(sizes))
    rows: list[dict[str, Any]] = []
    for n in sizes:
        queries = {
            "probe": probe_queries(rng, base[:n], QUERIES),
            "random": unit_rows(rng, QUERIES),
        }
        rows.append(bench_size(n, base, queries, rows[-1] if rows else None, args.max_build_s))
    del base
    gc.collect()

    identify = []
    with tempfile.TemporaryDirectory(prefix="ecgbio-bench-model-") as tmp:
        run, record, what = default_model(Path(tmp))
        identify.append(bench_identify(run, record, what, args.identify_templates, args.repeats))
        print(json.dumps(identify[-1]), flush=True)
    if args.model and args.record:
        what = f"trained run {args.model.name}, real record {args.record.name}"
        identify.append(
            bench_identify(args.model, args.record, what, args.identify_templates, args.repeats)
        )
        print(json.dumps(identify[-1]), flush=True)
    result = {
        **provenance(),
        "threads": 1,
        "dim": DIM,
        "queries": QUERIES,
        "probe_cosine": PROBE_COSINE,
        "shipped": {
            "hnsw": {
                "M": faiss_index.HNSW_M,
                "efConstruction": faiss_index.HNSW_EF_CONSTRUCTION,
                "efSearch": faiss_index.HNSW_EF_SEARCH,
            },
            "ivf": {
                "nlist": "round(sqrt(n))",
                "nprobe": f"max({faiss_index.IVF_MIN_PROBES}, nlist / "
                f"{faiss_index.IVF_SCAN_FRACTION})",
                "train_sample": "64 * nlist",
            },
            "auto_approx_at": faiss_index.AUTO_APPROX_AT,
            "approx_min": faiss_index.APPROX_MIN,
        },
        "search": rows,
        "identify": identify,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
