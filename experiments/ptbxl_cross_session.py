"""Cross-session closed-set identification on PTB-XL: enrol earlier records, identify the latest.

Persons with >= 2 records; each person's latest record (by recording date) is the probe, the earlier
ones train the model and form the gallery. Record-level rank-1/5 by embeddings (and by the softmax
head), beat-level rank-1, and the number of persons.

    python -m experiments.ptbxl_cross_session --root ../shared/data/ptb-xl-subset --rate 100
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


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__, SHARED_DATA / "ptb-xl-subset")
    parser.add_argument("--leads", default="I")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    beat = BeatConfig(leads=tuple(args.leads.split(",")), rate=args.rate)
    tag = leads_tag(args)
    store = ptbxl_store(args, beat)
    model = ModelConfig(widths=(32, 64, 128, 128), blocks=(1, 1, 1, 1), embedding_dim=128)
    config = TrainConfig(
        protocol="cross-session",
        epochs=args.epochs or 60,
        batch_size=128,
        m_per_class=4,
        patience=15,
        threads=args.threads,
    )
    result = train(
        store,
        args.work / f"run-ptbxl-cross-session-{tag}",
        model,
        config,
        overwrite=True,
        progress=not args.quiet,
        echo=None if args.quiet else print,
    )
    test = result.test
    figures = {
        "protocol": "cross-session",
        "persons": test["persons"],
        "probes": test["probes"],
        "rank1": test["rank1"],
        "rank5": test["rank5"],
        "beat_rank1": test["beat_rank1"],
        "eer": test["eer"],
        "softmax": test.get("softmax"),
        "test": test,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "split": result.split,
        "model_config": model.__dict__,
        "train_config": config.__dict__,
        "train_beats_per_s": result.beats_per_s,
    }
    print(
        f"cross-session: {test['persons']} persons, record rank-1 {test['rank1']:.3f}, "
        f"rank-5 {test['rank5']:.3f}, beat rank-1 {test['beat_rank1']:.3f}"
    )
    path = default_results(args, f"ptbxl-cross-session-{tag}")
    if path:
        write_results(path, figures, started, f"PTB-XL at {args.root} (CC BY 4.0)", beat)
    return figures


if __name__ == "__main__":
    main()
