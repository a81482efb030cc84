"""Run named variants of the default-model recipe side by side and rank them on validation.

Each variant is one ``python -m experiments.train_default`` run with its own options (the table
``VARIANTS``); they run as parallel processes (``--jobs``), each on ``--device`` (a GPU is shared
by all of them), and write ``experiments/results/default-model-<name>.json`` unless ``--results-dir``
says elsewhere. The summary ranks them by the paired difference from the shipped model on the same
(earlier, later) record pairs of the validation persons, with its 95 % interval over persons:
only a difference whose interval excludes 0 counts. Fold variants (``name-fN``) are pooled: the
folds' pair scores, each against the shipped model's on the same persons, are concatenated so
the pooled comparison covers every multi-record person once.

    python -m experiments.default_sweep --device cuda --jobs 12            # the whole table
    python -m experiments.default_sweep --only base,cinc --epochs 1        # a quick check
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ecgbio.evaluate import CI_BOOT
from ecgbio.io import atomic_write_text
from ecgbio.metrics.pairs import PairScores, load_pair_scores, paired_difference
from ecgbio.provenance import SHARED_DATA, provenance
from ecgbio.training.loop import VAL_PAIRS_FILE
from experiments._common import RESULTS, WORK
from experiments.train_default import SHIPPED_PAIRS_FILE

CINC = ["--cinc", str(SHARED_DATA / "cinc2017")]
FOLDS = 5
#: name -> train_default options (beside --device, --threads, --quiet, --name, --results).
VARIANTS: dict[str, list[str]] = {
    "base": [],
    "base-s1": ["--seed", "1"],
    "cinc": [*CINC, "--epochs", "40", "--patience", "8"],
    "cinc-s1": [*CINC, "--epochs", "40", "--patience", "8", "--seed", "1"],
    "cinc-wide": [*CINC, "--epochs", "40", "--patience", "8", "--widths", "64,128,256,512"],
    "cinc-sub": [*CINC, "--epochs", "40", "--patience", "8", "--metric-loss", "subcenter-arcface"],
    # the metric head: a smaller ArcFace margin, a triplet term, wider and larger embeddings
    "m11": ["--margin", "11.5"],
    "m20": ["--margin", "20"],
    "triplet": ["--metric-loss", "arcface+triplet"],
    "wide256": ["--widths", "64,128,256,512", "--embedding-dim", "256"],
    "emb256": ["--embedding-dim", "256"],
    # augmentation as wide as what changes between one person's records (session-drift.json:
    # about 75 % of the cross-session gain and stretch changes)
    "aug": ["--gain", "0.35", "--stretch", "0.15"],
    "cinc-aug": [*CINC, "--epochs", "40", "--patience", "8", "--gain", "0.35", "--stretch", "0.15"],
    # the multi-record persons train too: five folds, each validating on the persons it left out
    **{f"kfold-f{k}": ["--folds", str(FOLDS), "--fold", str(k)] for k in range(FOLDS)},
    **{
        f"triplet-kfold-f{k}": [
            *("--metric-loss", "arcface+triplet", "--folds", str(FOLDS), "--fold", str(k))
        ]
        for k in range(FOLDS)
    },
    **{
        f"wide256-kfold-f{k}": [
            *("--widths", "64,128,256,512", "--embedding-dim", "256"),
            *("--folds", str(FOLDS), "--fold", str(k)),
        ]
        for k in range(FOLDS)
    },
    **{
        f"wide256-kfold-s{seed}-f{k}": [
            *("--widths", "64,128,256,512", "--embedding-dim", "256", "--seed", str(seed)),
            *("--folds", str(FOLDS), "--fold", str(k)),
        ]
        for seed in (1, 2)
        for k in range(FOLDS)
    },
    **{
        f"cinc-kfold-f{k}": [
            *CINC,
            *("--epochs", "40", "--patience", "8", "--folds", str(FOLDS), "--fold", str(k)),
        ]
        for k in range(FOLDS)
    },
}


def run_variant(name: str, args: argparse.Namespace) -> dict:
    """One train_default run in its own process; its results JSON, or the failure."""
    results = args.results_dir / f"default-model-{name}.json"
    cmd = [
        sys.executable,
        "-m",
        "experiments.train_default",
        *VARIANTS[name],
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--work",
        str(args.work),
        "--name",
        f"default-{name}",
        "--results",
        str(results),
        "--quiet",
    ]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    started = time.perf_counter()
    log = args.work / f"sweep-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        done = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, check=False)
    out = {"name": name, "returncode": done.returncode, "wall_s": time.perf_counter() - started}
    if done.returncode == 0 and results.is_file():
        out["results"] = json.loads(results.read_text())
    else:
        out["log_tail"] = log.read_text()[-2000:]
    print(f"{name}: exit {done.returncode} after {out['wall_s']:.0f} s", flush=True)
    return out


def finished_variant(name: str, args: argparse.Namespace) -> dict:
    """A variant's outcome from the results JSON an earlier run left (``--from-runs``)."""
    results = args.results_dir / f"default-model-{name}.json"
    if not results.is_file():
        return {"name": name, "returncode": None, "log_tail": f"no {results}"}
    return {"name": name, "returncode": 0, "results": json.loads(results.read_text())}


def fold_group(name: str) -> str | None:
    """The variant a fold run belongs to (``wide256-kfold-s1-f3`` -> ``wide256-kfold-s1``)."""
    return re.sub(r"-f\d+$", "", name) if re.search(r"kfold(-s\d+)?-f\d+$", name) else None


def pooled_folds(work: Path, names: list[str]) -> dict:
    """The fold runs' pair scores concatenated, against the shipped model's on the same pairs."""
    new, old = [], []
    for name in names:
        run = work / f"run-default-{name}"
        if not (run / VAL_PAIRS_FILE).is_file() or not (run / SHIPPED_PAIRS_FILE).is_file():
            return {}
        new.append(load_pair_scores(run / VAL_PAIRS_FILE))
        old.append(load_pair_scores(run / SHIPPED_PAIRS_FILE))
    return paired_difference(_concat(new), _concat(old), CI_BOOT)


def at_common_epoch(work: Path, names: list[str], outcomes: dict[str, dict]) -> dict:
    """The fold runs judged at one epoch for all, the median of their selected epochs.

    Each fold run picks its best epoch on its own validation fold (about 21 persons), the very
    persons its pooled figures are then measured on: with so few persons that choice flatters
    it more than the shipped model's choice on all 105 flattered that model. One epoch for all
    folds takes the choice away; the means are over folds, each against the shipped model on
    the same fold's persons (history rows, so no interval).
    """
    best = [int(outcomes[n]["best_epoch"]) for n in names]
    epoch = int(np.median(best))
    rank1, eer, shipped_rank1, shipped_eer = [], [], [], []
    for name in names:
        with open(work / f"run-default-{name}" / "history.csv") as handle:
            history = list(csv.DictReader(handle))
        row = next((r for r in history if int(r["epoch"]) == epoch), history[-1])
        rank1.append(float(row["val_pairs_rank1"]))
        eer.append(float(row["val_pairs_eer"]))
        shipped = outcomes[name]["shipped_same_persons"]["pairs"]
        shipped_rank1.append(shipped["rank1"])
        shipped_eer.append(shipped["eer"])
    return {
        "epoch": epoch,
        "selected_epochs": best,
        "rank1_mean": float(np.mean(rank1)),
        "eer_mean": float(np.mean(eer)),
        "shipped_rank1_mean": float(np.mean(shipped_rank1)),
        "shipped_eer_mean": float(np.mean(shipped_eer)),
        "rank1_diff": float(np.mean(rank1) - np.mean(shipped_rank1)),
        "eer_diff": float(np.mean(eer) - np.mean(shipped_eer)),
    }


def _concat(parts: list[PairScores]) -> PairScores:
    fields = PairScores.__dataclass_fields__
    return PairScores(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in fields})


def summary_rows(outcomes: list[dict], work: Path) -> list[dict]:
    """One row per variant (fold variants pooled), best paired selection-score gain first. The
    pooled fold row mixes five models' scores in one EER (each fold's own threshold would do
    better), so it understates the fold variants' EER."""
    rows, fold_groups = [], {}
    for o in outcomes:
        res = o.get("results")
        if not res:
            rows.append({"name": o["name"], "failed": True})
            continue
        base = fold_group(o["name"])
        if base:
            fold_groups.setdefault(base, []).append(o["name"])
            continue
        val = res["validation"]
        rows.append(
            {
                "name": o["name"],
                "rank1": val.get("pairs_rank1"),
                "eer": val.get("pairs_eer"),
                "best_epoch": res.get("best_epoch"),
                "train_wall_s": res.get("train_wall_s"),
                "versus_shipped": res.get("versus_shipped", {}),
            }
        )
    results = {o["name"]: o["results"] for o in outcomes if o.get("results")}
    for base, names in fold_groups.items():
        names = sorted(names)
        rows.append(
            {
                "name": base,
                "folds": names,
                "command": results[names[0]].get("command"),
                "git_commit": results[names[0]].get("git_commit"),
                "ran_on": results[names[0]].get("device"),
                "train_wall_s": [results[n].get("train_wall_s") for n in names],
                "versus_shipped": pooled_folds(work, names),
                "at_common_epoch": at_common_epoch(work, names, results),
            }
        )
    # the replacement rule's figure: rank-1 minus EER, against the shipped model on the same pairs
    return sorted(rows, key=lambda r: -(r.get("versus_shipped") or {}).get("score_diff", -9))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="variants run at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per variant")
    parser.add_argument("--epochs", type=int, default=0, help="override every variant's epochs")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--summary", default="default-sweep", help="summary file name under --results-dir"
    )
    parser.add_argument(
        "--from-runs",
        action="store_true",
        help="train nothing: summarise the variants' results JSONs and run directories as they are",
    )
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    started = time.perf_counter()
    if args.from_runs:
        outcomes = [finished_variant(n, args) for n in names]
    else:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes = list(pool.map(lambda n: run_variant(n, args), names))
    rows = summary_rows(outcomes, args.work)
    summary = {
        **provenance(),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "device": args.device,
        "jobs": args.jobs,
        "rows": rows,
        "failures": {o["name"]: o.get("log_tail", "") for o in outcomes if not o.get("results")},
    }
    path = args.results_dir / f"{args.summary}.json"
    atomic_write_text(path, json.dumps(summary, indent=2, default=str) + "\n")
    for row in rows:
        v = row.get("versus_shipped") or {}
        if v:
            print(
                f"{row['name']:>14}: rank-1 {v['rank1_diff']:+.3f} "
                f"[{v['rank1_diff_ci'][0]:+.3f}, {v['rank1_diff_ci'][1]:+.3f}], "
                f"EER {v['eer_diff']:+.3f} [{v['eer_diff_ci'][0]:+.3f}, {v['eer_diff_ci'][1]:+.3f}]"
                f" vs shipped ({v['persons']} persons, {v['trials']} trials)"
            )
        else:
            print(f"{row['name']:>14}: {'failed' if row.get('failed') else 'no comparison'}")
    print(f"summary -> {path}")
    return summary


if __name__ == "__main__":
    main()
