"""The biometric protocol on PTB-XL: identify and verify persons never seen in training.

Training identities: patients with a single record (a record is an identity). Test: the patients
with >= 2 records, enrolled from their earliest record and probed with every later one; rank-1/5 over
the whole gallery, EER, ROC AUC, TAR at FAR 1 % and 0.1 %, and the same against the number of
enrolment beats (1, 3, 5, 10, all). ``--val-fraction 0`` (the default here) keeps every multi-record
patient for test and selects the model on unseen single-record patients (first vs second half of
their record); on the full PTB-XL use e.g. ``--val-fraction 0.2`` (a fixed slice of the ~2.1k
multi-record patients). Published anchor on the full PTB-XL: 58.3 % rank-1 over 2,111 patients
(ElectroCardioGuard, arXiv 2306.06196); the shared subset's gallery is far smaller.

    python -m experiments.ptbxl_unseen --root ../shared/data/ptb-xl-subset --rate 100 --leads I
    python -m experiments.ptbxl_unseen --root ../shared/data/ptb-xl-subset --rate 100 --leads all
"""

from __future__ import annotations

import time

from ecgbio.config import BeatConfig, ModelConfig, TrainConfig
from ecgbio.provenance import SHARED_DATA
from ecgbio.training import train
from experiments._common import (
    base_parser,
    default_results,
    leads_tag,
    ptbxl_store,
    write_results,
)

ANCHOR = {"rank1": 0.583, "persons": 2111, "source": "ElectroCardioGuard, arXiv 2306.06196"}


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__, SHARED_DATA / "ptb-xl-subset")
    parser.add_argument("--leads", default="I")
    parser.add_argument("--val-fraction", type=float, default=0.0)
    parser.add_argument("--metric-loss", default="arcface")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    beat = BeatConfig(leads=tuple(args.leads.split(",")), rate=args.rate)
    tag = leads_tag(args)
    store = ptbxl_store(args, beat)
    model = ModelConfig(widths=(32, 64, 128, 128), blocks=(1, 1, 1, 1), embedding_dim=128)
    config = TrainConfig(
        protocol="unseen",
        epochs=args.epochs or 40,
        batch_size=256,
        m_per_class=2,
        patience=10,
        val_fraction=args.val_fraction,
        metric_loss=args.metric_loss,
        threads=args.threads,
    )
    result = train(
        store,
        args.work / f"run-ptbxl-unseen-{tag}",
        model,
        config,
        overwrite=True,
        progress=not args.quiet,
        echo=None if args.quiet else print,
    )
    test = result.test
    figures = {
        "protocol": "unseen",
        "leads": args.leads,
        "persons": test["persons"],
        "probes": test["probes"],
        "rank1": test["rank1"],
        "rank5": test["rank5"],
        "eer": test["eer"],
        "auc": test["auc"],
        "tar@far=0.01": test["tar@far=0.01"],
        "tar@far=0.001": test["tar@far=0.001"],
        "beat_rank1": test["beat_rank1"],
        "by_enrol_beats": test.get("by_enrol_beats"),
        "other_day": test.get("other_day"),
        "validation": result.val,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "split": result.split,
        "anchor": ANCHOR,
        "model_config": model.__dict__,
        "train_config": config.__dict__,
        "train_beats_per_s": result.beats_per_s,
    }
    print(
        f"unseen ({args.leads}): {test['persons']} persons, {test['probes']} probes, rank-1 "
        f"{test['rank1']:.3f}, rank-5 {test['rank5']:.3f}, EER {test['eer']:.3f}"
    )
    path = default_results(args, f"ptbxl-unseen-{tag}")
    if path:
        write_results(path, figures, started, f"PTB-XL at {args.root} (CC BY 4.0)", beat)
    return figures


if __name__ == "__main__":
    main()
