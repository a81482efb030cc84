"""ECG-ID, the field's cross-record benchmark, four ways (persons: the 89 with >= 2 records).

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
- ``enrol-records``: enrolment from several records, the user's own lever (the model as given by
  ``--model``, not fine-tuned): for n = 1, 2, 3 each person is enrolled from their first n records
  (by date, then record number) and probed with every later one, (a) over all persons with more
  than n records and (b) on the same persons and probes for every n: those with >= 4 records,
  probed with their records after the 3rd, so that the settings differ only in the enrolment.
  Templates as a gallery keeps them (``ecgbio.gallery``): ``each`` (one per enrolled record, a
  person scores the max over theirs, the gallery's default) and ``mean`` (one renormalised mean per
  person); one score per (probe, person), raw cosine as ``evaluate_run``'s default.

    python -m experiments.ecgid --mode unseen
    python -m experiments.ecgid --mode finetuned
    python -m experiments.ecgid --mode closed
    python -m experiments.ecgid --mode enrol-records --threads 1

Results: experiments/results/ecgid-{unseen,finetuned,closed,enrol-records}.json (command, data,
hardware, commit).
ECG-ID's records that start with a block of -1 samples are cropped by ``ecgbio.records`` (the
store's records table says which).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgbio.config import DEFAULT_MODEL, TrainConfig
from ecgbio.embed import embed_rows, record_templates
from ecgbio.errors import ConfigError
from ecgbio.evaluate import (
    CI_BOOT,
    evaluate_match,
    evaluate_run,
    match_figures,
    other_day_probes,
    score_arrays,
)
from ecgbio.gallery import TEMPLATE_MODES
from ecgbio.gallery.searcher import entries
from ecgbio.metrics.pairs import PairScores, paired_difference
from ecgbio.protocols import record_order, unseen_split
from ecgbio.provenance import SHARED_DATA
from ecgbio.runs import load_run, model_dir
from ecgbio.store import BeatStore
from ecgbio.training import train
from experiments._common import RESULTS, WORK, ecgid_store, write_results

MODES = ("unseen", "finetuned", "closed", "enrol-records")
#: Records enrolled per person in ``enrol-records`` mode.
ENROL_RECORDS = (1, 2, 3)
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


# --- enrol-records -------------------------------------------------------------------------------
def enrol_records_sets(
    store: BeatStore, ns: tuple[int, ...] = ENROL_RECORDS
) -> list[dict[str, Any]]:
    """The record sets of ``enrol-records`` mode: one per (setting, n).

    Records are ranked per person by date and then record number (:func:`record_order`, as every
    protocol ranks them). ``all``: persons with more than ``n`` records, gallery = their first
    ``n``, probes = the rest. ``same``: persons with more than ``max(ns)`` records, gallery = their
    first ``n``, probes = their records after the ``max(ns)``-th, the same for every ``n``. Each
    set also holds ``days_from``: the records whose dates define an other-day probe (the enrolled
    ones; in ``same``, the first ``max(ns)``, so that the other-day probes do not change with n).
    """
    rank = record_order(store)
    person_of = dict(zip(store.records["record"], store.records["person"], strict=True))
    count = pd.Series([person_of[r] for r in rank]).value_counts()
    top = max(ns)
    sets = []
    for setting in ("same", "all"):
        for n in ns:
            probe_from = top if setting == "same" else n
            keep = set(count.index[count > probe_from])
            chosen = [r for r in rank if person_of[r] in keep]  # person, date, number order
            sets.append(
                {
                    "setting": setting,
                    "n": n,
                    "gallery": [r for r in chosen if rank[r] < n],
                    "probes": [r for r in chosen if rank[r] >= probe_from],
                    "days_from": [r for r in chosen if rank[r] < probe_from],
                }
            )
    return sets


def person_scores(
    probe_templates: np.ndarray, templates: np.ndarray, owners: np.ndarray, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """(persons, probes x persons cosine scores) as a gallery scores its enrolled records.

    ``each``: a person's score is the max over their record templates; ``mean``: the score against
    their renormalised mean template (:func:`ecgbio.gallery.searcher.entries`, what the gallery
    indexes in that mode).
    """
    if mode not in TEMPLATE_MODES:
        raise ValueError(f"template mode {mode!r}: choose from {', '.join(TEMPLATE_MODES)}")
    owners = np.asarray(owners)
    if mode == "mean":
        _, persons, means, _ = entries(np.arange(len(owners)), owners, templates, "mean")
        order = np.argsort(persons, kind="stable")  # persons sorted, as in ``each``
        return persons[order], probe_templates @ means[order].T
    persons = np.unique(owners)
    scores = probe_templates @ templates.T
    return persons, np.stack([scores[:, owners == p].max(axis=1) for p in persons], axis=1)


def probe_trials(scores: np.ndarray, persons: np.ndarray, probe_persons: np.ndarray) -> PairScores:
    """A (probes x persons) score matrix as trials for :func:`paired_difference`: one
    identification trial per probe (a hit when its person outscores every other, ties missing as
    in :func:`~ecgbio.metrics.identification.cmc`), and its genuine and impostor scores."""
    arrays = score_arrays(scores, persons, probe_persons)
    own = probe_persons[:, None] == persons[None, :]
    hit = scores[own] > np.where(own, -np.inf, scores).max(axis=1)
    claimed = np.broadcast_to(np.asarray(persons)[None, :], scores.shape)[~own]
    return PairScores(
        hit=hit,
        hit_person=probe_persons.astype(str),
        hit_record=np.arange(len(probe_persons)).astype(str),  # the same probes for both sides
        genuine=arrays["genuine"].astype(np.float64),
        genuine_person=arrays["genuine_person"],
        impostor=arrays["impostor"].astype(np.float64),
        impostor_person=arrays["impostor_person"],
        impostor_other=claimed.astype(str),
    )


def run_enrol_records(args: argparse.Namespace, store: BeatStore) -> dict[str, Any]:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run = load_run(args.model)
    sets = enrol_records_sets(store)
    if not all(s["probes"] for s in sets):
        raise ConfigError(
            f"enrol-records needs persons with more than {max(ENROL_RECORDS)} records", store.root
        )
    records = sorted({r for s in sets for r in s["gallery"] + s["probes"]})
    rows_of = store.index.groupby("record").indices
    rows = np.concatenate([np.sort(rows_of[r]) for r in records])
    ids, templates = record_templates(
        embed_rows(run.backbone, store, rows), store.index["record"].to_numpy()[rows]
    )
    template_of = dict(zip(ids, templates, strict=True))
    person_of = dict(zip(store.records["record"], store.records["person"], strict=True))
    session_of = dict(zip(store.records["record"], store.records["session"], strict=True))
    out, trials = [], {}
    for s in sets:
        g_ids, p_ids = np.array(s["gallery"]), np.array(s["probes"])
        g_persons = np.array([person_of[r] for r in g_ids])
        p_persons = np.array([person_of[r] for r in p_ids])
        g_t = np.stack([template_of[r] for r in g_ids])
        p_t = np.stack([template_of[r] for r in p_ids])
        days = np.array(s["days_from"])
        other_day = other_day_probes(
            p_ids, p_persons, days, np.array([person_of[r] for r in days]), session_of
        )
        several_days = {
            p for p in set(g_persons) if len({session_of[r] for r in g_ids[g_persons == p]}) > 1
        }
        for mode in TEMPLATE_MODES:
            persons, scores = person_scores(p_t, g_t, g_persons, mode)
            figures = match_figures(scores, persons, p_persons, ci_boot=CI_BOOT)
            if other_day.any() and other_day.sum() < len(other_day):  # as evaluate_match
                figures["other_day"] = match_figures(
                    scores[other_day], persons, p_persons[other_day], ci_boot=CI_BOOT
                )
            row = {"setting": s["setting"], "enrol_records": s["n"], "template_mode": mode}
            row.update(headline(figures))
            row["enrolled_over_several_days"] = len(several_days)
            trials[s["setting"], s["n"], mode] = probe_trials(scores, persons, p_persons)
            out.append(row)
            print(
                f"{s['setting']:>4} n={s['n']} {mode:>4}: {row['persons']} persons, "
                f"{row['probes']} probes, rank-1 {row['rank1']:.3f}, EER {row['eer']:.3f}"
            )
    same = next(s for s in sets if s["setting"] == "same")
    first = ENROL_RECORDS[0]
    paired = [  # on the same persons and probes: more enrolled records minus the fewest
        {
            "template_mode": mode,
            "enrol_records": n,
            "against": first,
            **paired_difference(trials["same", n, mode], trials["same", first, mode], CI_BOOT),
        }
        for mode in TEMPLATE_MODES
        for n in ENROL_RECORDS[1:]
    ]
    return {
        "enrol_records": list(ENROL_RECORDS),
        "template_modes": list(TEMPLATE_MODES),
        "norm": "none",
        "same_persons": {
            "min_records": max(ENROL_RECORDS) + 1,
            "persons": len({person_of[r] for r in same["probes"]}),
            "probes": len(same["probes"]),
        },
        "rows": out,
        "paired": paired,
    }


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
    runner = {
        "unseen": run_unseen,
        "finetuned": run_finetuned,
        "closed": run_closed,
        "enrol-records": run_enrol_records,
    }[args.mode]
    figures = runner(args, store)
    figures = {"mode": args.mode, "model": str(model_dir(args.model)), **figures}
    if "rank1" in figures:  # enrol-records prints a line per setting instead
        print(
            f"ECG-ID {args.mode}: {figures['persons']} persons, {figures['probes']} probes, "
            f"rank-1 {figures['rank1']:.3f}, EER {figures['eer']:.3f}"
        )
    path = args.results or RESULTS / f"ecgid-{args.mode}.json"
    write_results(path, figures, started, f"ECG-ID at {args.root} (ODC-By 1.0)", run.beat)
    return figures


if __name__ == "__main__":
    main()
