"""ECG-ID, the field's cross-record benchmark, three ways (persons: the 89 with >= 2 records).

- ``unseen``: the model as shipped (default: ``--model default``, which never saw an ECG-ID person);
  enrol each person's ``rec_1`` (their earliest record), probe with every later record, one decision
  per record. All probes, and apart the probes from another day than the enrolment (only 20 persons
  have several days), plus rank-1 and EER against the enrolment beats (1, 3, 5, 10, all). This is
  ``ecgbio evaluate --protocol enrol-probe`` on an ECG-ID store, the same code path.
- ``finetuned``: 5 folds over persons: the model is fine-tuned on 4 folds (a slice of them selects
  the epoch: enrolled from their earliest record, probed with the later ones) and tested on the 5th as
  in ``unseen``; mean and spread over the folds, every fold's figures kept, and the model as shipped
  on the same folds (``not_finetuned``: a fold's gallery holds ~18 persons, not 89, so that is the
  figure to compare with).
- ``closed``: closed-set identification as ECGXtractor's multi-session protocol: the softmax head is
  trained (from the model's backbone) on all records but each person's last and tested on the last;
  the last 20 % of the beats of each training record select the epoch.

    python -m experiments.ecgid --mode unseen
    python -m experiments.ecgid --mode finetuned
    python -m experiments.ecgid --mode closed

Results: experiments/results/ecgid-{unseen,finetuned,closed}.json (command, data, hardware, commit).
ECG-ID's records that start with a block of -1 samples are cropped by ``ecgbio.records`` (the
store's records table says which).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ecgbio.config import DEFAULT_MODEL, TrainConfig
from ecgbio.evaluate import evaluate_match, evaluate_run
from ecgbio.protocols import unseen_split
from ecgbio.provenance import SHARED_DATA
from ecgbio.runs import load_run, model_dir
from ecgbio.store import BeatStore
from ecgbio.training import train
from experiments._common import RESULTS, WORK, ecgid_store, write_results

MODES = ("unseen", "finetuned", "closed")
HEADLINE = ("rank1", "rank5", "eer", "tar@far=0.01", "tar@far=0.001", "auc", "persons", "probes")


def fine_tune_config(args: argparse.Namespace, protocol: str, **extra: Any) -> TrainConfig:
    """Fine-tuning: a short, gentle schedule from the pretrained backbone (heads start afresh)."""
    return TrainConfig(
        protocol=protocol,
        epochs=args.epochs,
        batch_size=128,
        m_per_class=4,
        lr=5e-4,
        warmup_epochs=1,
        patience=5,
        augment_stretch=0.08,
        augment_shift_s=0.02,
        threads=args.threads,
        **extra,
    )


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    out = {k: figures[k] for k in HEADLINE if k in figures}
    for key in ("other_day", "by_enrol_beats", "softmax", "beat_rank1", "eer_ci"):
        if key in figures:
            out[key] = figures[key]
    if "other_day" in out:
        out["other_day"] = {k: out["other_day"][k] for k in HEADLINE if k in out["other_day"]}
    return out


def run_unseen(args: argparse.Namespace, store: BeatStore) -> dict[str, Any]:
    figures = evaluate_run(args.model, store, "enrol-probe", enrol_beats=0)
    return headline(figures)


def run_finetuned(args: argparse.Namespace, store: BeatStore) -> dict[str, Any]:
    run = load_run(args.model)
    folds = []
    for fold in range(args.folds):
        split = unseen_split(store, val_fraction=0.2, folds=args.folds, fold=fold)
        before = evaluate_match(run.model, store, split.test)  # the same fold, not fine-tuned
        config = fine_tune_config(args, "unseen", val_fraction=0.2)
        result = train(
            store,
            args.work / f"run-ecgid-finetuned-fold{fold}",
            run.model_config,
            config,
            overwrite=True,
            progress=not args.quiet,
            echo=None if args.quiet else print,
            split=split,
            init_from=args.model,
        )
        row = {"fold": fold, **headline(result.test), "split": result.split}
        row["best_epoch"] = result.best_epoch
        row["not_finetuned"] = {k: before[k] for k in ("rank1", "eer", "persons", "probes")}
        folds.append(row)
        print(f"fold {fold}: rank-1 {row['rank1']:.3f}, EER {row['eer']:.3f}")
    summary: dict[str, Any] = {}
    for key in ("rank1", "rank5", "eer", "tar@far=0.01", "tar@far=0.001"):
        values = np.array([f[key] for f in folds], dtype=float)
        summary[key] = float(values.mean())
        summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    summary["not_finetuned"] = {  # the same galleries and probes, the model as shipped
        key: float(np.mean([f["not_finetuned"][key] for f in folds])) for key in ("rank1", "eer")
    }
    other = [f["other_day"] for f in folds if "other_day" in f]
    if other:
        summary["other_day"] = {
            "rank1": float(np.mean([o["rank1"] for o in other])),
            "eer": float(np.mean([o["eer"] for o in other])),
            "probes": int(sum(o["probes"] for o in other)),
            "folds": len(other),
        }
    summary["persons"] = int(sum(f["persons"] for f in folds))
    summary["probes"] = int(sum(f["probes"] for f in folds))
    summary["folds"] = folds
    summary["train_config"] = fine_tune_config(args, "unseen", val_fraction=0.2).__dict__
    return summary


def run_closed(args: argparse.Namespace, store: BeatStore) -> dict[str, Any]:
    run = load_run(args.model)
    result = train(
        store,
        args.work / "run-ecgid-closed",
        run.model_config,
        fine_tune_config(args, "cross-session"),
        overwrite=True,
        progress=not args.quiet,
        echo=None if args.quiet else print,
        init_from=args.model,
    )
    out = headline(result.test)
    out["best_epoch"] = result.best_epoch
    out["split"] = result.split
    out["train_config"] = fine_tune_config(args, "cross-session").__dict__
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="run dir or 'default'")
    parser.add_argument("--root", type=Path, default=SHARED_DATA / "ecg-id-database-1.0.0")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--epochs", type=int, default=15, help="fine-tuning epochs")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    run = load_run(args.model)
    store = ecgid_store(args.root, args.work, run.beat, not args.quiet)
    runner = {"unseen": run_unseen, "finetuned": run_finetuned, "closed": run_closed}[args.mode]
    figures = runner(args, store)
    figures = {"mode": args.mode, "model": str(model_dir(args.model)), **figures}
    print(
        f"ECG-ID {args.mode}: {figures['persons']} persons, {figures['probes']} probes, rank-1 "
        f"{figures['rank1']:.3f}, EER {figures['eer']:.3f}"
    )
    path = args.results or RESULTS / f"ecgid-{args.mode}.json"
    write_results(path, figures, started, f"ECG-ID at {args.root} (ODC-By 1.0)", run.beat)
    return figures


if __name__ == "__main__":
    main()
