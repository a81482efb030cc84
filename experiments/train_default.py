"""Train ecgbio's shipped default model: lead I, 100 Hz, on PTB-XL and MIT-BIH (never on ECG-ID).

Data: every PTB-XL patient of ``--root`` (lead I; the shared subset, or a full download) and the
47 MIT-BIH persons of ``--mitdb`` (MLII standing in for lead I, at most ``--mitdb-beats`` beats of
each 30-minute record, spread over it; ``--mitdb none`` leaves them out).
Selection: protocol ``general``: the persons with several records (PTB-XL patients, and MIT-BIH's
201/202) are held out and the model is selected on them, enrolled from their earliest record and
probed with the later ones (another session, mostly another day), never on ECG-ID, which stays a
database the model has not seen.

    python -m experiments.train_default                   # train, print validation figures
    python -m experiments.train_default --install         # ... and copy it into ecgbio/models/default

``--stretch`` / ``--shift`` set the time augmentation (heart-rate stretch about the R-peak, R-peak
jitter) and ``--axis`` the lead-axis augmentation (degrees; its store keeps leads I and II, the
model sees lead I); the shipped model's values are the defaults here. ``--blocks`` sets the depth,
``--ema`` a weight average (``TrainConfig.ema_decay``), and ``--val-share`` lets that share of the
multi-record persons validate and the others train (the run then also scores the shipped model on
the same persons: its own figures compare with that only). Results:
experiments/results/default-model.json (validation figures, wall time on this machine, command,
commit).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecgbio.config import (
    RECIPE_SHIFT_S,
    RECIPE_STRETCH,
    BeatConfig,
    ModelConfig,
    TrainConfig,
    save_json,
)
from ecgbio.errors import EcgbioError
from ecgbio.evaluate import CI_BOOT, check_compatible, evaluate_match, evaluate_pairs
from ecgbio.io import save_arrays
from ecgbio.metrics.pairs import PairScores, load_pair_scores, paired_difference
from ecgbio.protocols import Split, general_split
from ecgbio.provenance import REPO, SHARED_DATA
from ecgbio.runs import (
    CLASSES_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    THRESHOLDS_FILE,
    WEIGHTS_FILE,
    load_run,
)
from ecgbio.sources import RecordSpec
from ecgbio.sources.cinc2017 import RECORD_PREFIX as CINC_PREFIX
from ecgbio.sources.cinc2017 import cinc2017_records
from ecgbio.sources.mitdb import mitdb_records
from ecgbio.sources.ptbxl import ptbxl_records
from ecgbio.store import BeatStore
from ecgbio.training import train
from ecgbio.training.loop import VAL_PAIRS_FILE
from experiments._common import (
    RESULTS,
    base_parser,
    cached_store,
    default_results,
    write_results,
)

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "ecgbio" / "models" / "default"
#: The shipped model's pair scores on a run's validation persons, beside the run's own.
SHIPPED_PAIRS_FILE = "shipped_val_pairs.npz"
SHIPPED_FILES = (
    CONFIG_FILE,
    CLASSES_FILE,
    WEIGHTS_FILE,
    THRESHOLDS_FILE,
    METRICS_FILE,
    HISTORY_FILE,
)


def strip_machine_paths(config_path: Path) -> None:
    """The shipped config names its training store relative to the repository, not this machine."""
    config = json.loads(config_path.read_text())
    store = Path(config.get("store", ""))
    if store.is_absolute() and store.is_relative_to(REPO):
        config["store"] = store.relative_to(REPO).as_posix()
    save_json(config_path, config)


def training_records(args: argparse.Namespace, store_leads: int) -> list[RecordSpec]:
    """PTB-XL's records, MIT-BIH's unless ``--mitdb none`` (a machine without it), and CinC
    2017's with ``--cinc``."""
    specs = ptbxl_records(args.root, rate=args.rate)
    if str(args.mitdb) != "none":
        specs += mitdb_records(args.mitdb, store_leads=store_leads)
    if str(args.cinc) != "none":
        specs += cinc2017_records(args.cinc, store_leads=store_leads)
    return specs


def beats_cap(args: argparse.Namespace) -> Callable[[str], int]:
    """Beats kept of each training record, spread over it: ``--cinc-beats`` for a CinC record
    (30 s, one of thousands of identities), ``--mitdb-beats`` for every other (a 30-minute MIT-BIH
    record lends beats from its whole length; PTB-XL's 10 s records have fewer)."""

    def cap(record: str) -> int:
        return args.cinc_beats if record.startswith(CINC_PREFIX) else args.mitdb_beats

    return cap


def recipe_split(store: BeatStore, args: argparse.Namespace, config: TrainConfig) -> Split:
    """The general protocol as this recipe runs it: ``--folds``/``--fold`` or ``--val-share``."""
    return general_split(
        store,
        seed=config.seed,
        val_share=config.val_fraction or 1.0,
        max_beats_per_record=beats_cap(args),
        folds=args.folds,
        fold=args.fold,
    )


def shipped_on_same_persons(
    store: BeatStore, split: Split
) -> tuple[dict[str, Any], PairScores | None]:
    """The shipped model's figures on this run's validation persons, and its pair scores (for a
    paired comparison with the new model on the same trials; ``None`` when skipped).

    Why: a run that validates on fewer persons than every other variant (``--val-share``,
    ``--folds``) compares only with the shipped model on those same persons, and even on the
    same persons two models differ by chance less than either differs from its own noise. A
    store of leads I,II (``--axis``) is read through its lead-I view; a store cut with another
    window cannot be read by the shipped model at all, and the comparison is skipped with the
    reason.
    """
    run = load_run(DEFAULT_DIR)
    try:
        view = store
        if store.leads[: len(run.beat.leads)] == tuple(run.beat.leads) != store.leads:
            view = store.select_leads(tuple(run.beat.leads))
        check_compatible(run.beat, view)
    except EcgbioError as exc:
        return {"model_sha256": run.fingerprint, "skipped": str(exc)}, None
    embedded: dict = {}
    figures = evaluate_match(run.model, view, split.val, embeddings_out=embedded)
    keep = ("rank1", "rank5", "eer", "auc", "persons", "probes")
    pairs, scores = evaluate_pairs(run.model, view, split.val, CI_BOOT, embeddings=embedded)
    summary = {"model_sha256": run.fingerprint, **{k: figures[k] for k in keep}, "pairs": pairs}
    return summary, scores if pairs else None


def compare_with_shipped(run_dir: Path) -> dict:
    """The new model minus the shipped one on the same (earlier, later) pairs, with 95 %
    intervals from one resampling of persons shared by both."""
    new, old = run_dir / VAL_PAIRS_FILE, run_dir / SHIPPED_PAIRS_FILE
    if not (new.is_file() and old.is_file()):
        return {}
    return paired_difference(load_pair_scores(new), load_pair_scores(old), CI_BOOT)


def pretrained_run(run_dir: Path) -> dict[str, Any]:
    """What a fine-tuned run started from: the pretrained run's name, fingerprint, command and
    wall time (its results file's, when found), so the recipe's whole cost is on record."""
    run = load_run(run_dir)
    out: dict[str, Any] = {"run": run_dir.name, "model_sha256": run.fingerprint}
    results = RESULTS / f"default-model-{run_dir.name.removeprefix('run-default-')}.json"
    if results.is_file():
        recorded = json.loads(results.read_text())
        out |= {k: recorded.get(k) for k in ("command", "git_commit", "wall_time_s")}
        out["train_wall_s"] = recorded.get("train_wall_s")
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__, SHARED_DATA / "ptb-xl-subset")
    parser.add_argument(
        "--mitdb", type=Path, default=SHARED_DATA / "mitdb", help="MIT-BIH root, or none"
    )
    parser.add_argument("--mitdb-beats", type=int, default=100)
    parser.add_argument("--stretch", type=float, default=RECIPE_STRETCH)
    parser.add_argument("--shift", type=float, default=RECIPE_SHIFT_S, help="seconds")
    parser.add_argument("--smooth", type=float, default=0.0, help="recorder bandwidth jitter")
    parser.add_argument("--gain", type=float, default=0.2, help="amplitude jitter, +- share")
    parser.add_argument("--noise", type=float, default=0.02, help="added noise, beat SDs")
    parser.add_argument("--axis", type=float, default=0.0, help="lead-axis jitter, degrees")
    parser.add_argument(
        "--input-norm", default="none", help="none: keep millivolts; beat: z-score each beat"
    )
    parser.add_argument("--before", type=float, default=BeatConfig.before_s, help="seconds")
    parser.add_argument("--after", type=float, default=BeatConfig.after_s, help="seconds")
    parser.add_argument(
        "--blocks", default="1,1,1,1", help="residual blocks per stage (ResNet1d depth)"
    )
    parser.add_argument("--ema", type=float, default=0.0, help="weight-average decay per step")
    parser.add_argument(
        "--val-share",
        type=float,
        default=1.0,
        help="share of the multi-record persons held out for validation; the rest train",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="weights, batches, and which persons validate"
    )
    parser.add_argument(
        "--cinc", type=Path, default=Path("none"), help="CinC 2017 root (extra identities), or none"
    )
    parser.add_argument("--cinc-beats", type=int, default=12, help="beats kept of a CinC record")
    parser.add_argument(
        "--folds", type=int, default=0, help="deal the multi-record persons into this many folds"
    )
    parser.add_argument("--fold", type=int, default=0, help="with --folds: the fold that validates")
    parser.add_argument("--widths", default="32,64,128,256", help="channels per residual stage")
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--metric-loss", default="arcface", help="pytorch-metric-learning loss")
    parser.add_argument("--margin", type=float, default=28.6, help="ArcFace margin, degrees")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this run's backbone (heads afresh): a run pretrained on other data",
    )
    parser.add_argument("--patience", type=int, default=6, help="early stop (0 = off)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (TrainConfig.device)")
    parser.add_argument("--name", default="default", help="run name under --work")
    parser.add_argument("--install", action="store_true", help="copy the run into the package")
    args = parser.parse_args(argv)
    if not 0 < args.val_share <= 1:
        parser.error(f"--val-share must be in (0, 1], got {args.val_share}")
    if args.folds and (args.folds < 2 or not 0 <= args.fold < args.folds or args.val_share < 1):
        parser.error("--folds needs at least 2 folds, 0 <= --fold < --folds and no --val-share")
    started = time.perf_counter()
    leads = ("I", "II") if args.axis else ("I",)
    beat = BeatConfig(leads=leads, rate=args.rate, before_s=args.before, after_s=args.after)
    default_window = (BeatConfig.before_s, BeatConfig.after_s)
    window = "" if (args.before, args.after) == default_window else f"-{args.before}-{args.after}s"
    with_mitdb = str(args.mitdb) != "none"
    with_cinc = str(args.cinc) != "none"
    sources = {"ptbxl": str(args.root), "mitdb": str(args.mitdb), "cinc2017": str(args.cinc)}
    kind = "+".join(["ptbxl"] + ["mitdb"] * with_mitdb + ["cinc2017"] * with_cinc)
    store = cached_store(
        lambda: training_records(args, len(leads)),
        args.work
        / (
            f"default-store-{args.rate}hz-{'-'.join(leads)}{window}"
            f"{'' if with_mitdb else '-no-mitdb'}{'-cinc' if with_cinc else ''}"
        ),
        beat,
        args.workers,
        not args.quiet,
        {"kind": kind, **sources},
    )
    model = ModelConfig(
        input_norm=args.input_norm,
        blocks=tuple(int(b) for b in args.blocks.split(",")),
        widths=tuple(int(w) for w in args.widths.split(",")),
        embedding_dim=args.embedding_dim,
    )
    config = TrainConfig(
        protocol="general",
        epochs=args.epochs or 30,
        batch_size=256,
        m_per_class=4,
        lr=args.lr,
        patience=args.patience,
        metric_loss=args.metric_loss,
        arcface_margin=args.margin,
        # general: val_share of the multi-record patients validate (1.0: all); the rest train
        val_fraction=0.0 if args.val_share >= 1 else args.val_share,
        augment_stretch=args.stretch,
        augment_shift_s=args.shift,
        augment_smooth=args.smooth,
        augment_gain=args.gain,
        augment_noise=args.noise,
        augment_axis_deg=args.axis,
        max_beats_per_record=args.mitdb_beats,
        ema_decay=args.ema,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
    )
    split = recipe_split(store, args, config)
    run_dir = args.work / f"run-{args.name}"
    shipped, shipped_scores = shipped_on_same_persons(store, split)
    if "skipped" in shipped:
        print(f"the shipped model is not scored on the same persons: {shipped['skipped']}")
    else:
        print(
            f"the shipped model on the same {shipped['persons']} persons: rank-1 "
            f"{shipped['rank1']:.3f}, EER {shipped['eer']:.3f}; all pairs: rank-1 "
            f"{shipped['pairs']['rank1']:.3f}, EER {shipped['pairs']['eer']:.3f}"
        )
    result = train(
        store,
        run_dir,
        model,
        config,
        overwrite=True,
        progress=not args.quiet,
        echo=None if args.quiet else print,
        split=split,
        init_from=args.init,
    )
    (run_dir / SHIPPED_PAIRS_FILE).unlink(missing_ok=True)  # an earlier run's, never compared
    if shipped_scores is not None:
        save_arrays(run_dir / SHIPPED_PAIRS_FILE, shipped_scores.arrays())
    versus = compare_with_shipped(run_dir)
    figures = {
        "protocol": "general",
        "validation": result.val,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "split": result.split,
        "store_beats": int(len(store.index)),
        "model_config": model.__dict__,
        "train_config": config.__dict__,
        "train_beats_per_s": result.beats_per_s,
        "train_wall_s": result.wall_s,
        "run_dir": str(run_dir),
    }
    figures["shipped_same_persons"] = shipped
    figures["cinc_beats"] = args.cinc_beats if with_cinc else 0
    if args.init is not None:
        figures["init_from"] = pretrained_run(args.init)
    figures["device"] = str(args.device)
    if str(args.device) != "cpu":
        import torch

        if torch.cuda.is_available():
            figures["device"] += f" ({torch.cuda.get_device_name()})"
    if versus:
        figures["versus_shipped"] = versus
    print(
        f"default model: validation ({result.split['val_persons']} persons, later records) "
        f"rank-1 {result.val['rank1']:.3f}, EER {result.val['eer']:.3f}; all pairs: rank-1 "
        f"{result.val.get('pairs_rank1', float('nan')):.3f}, EER "
        f"{result.val.get('pairs_eer', float('nan')):.3f}; "
        f"best epoch {result.best_epoch}/{result.epochs_run}; {result.wall_s / 60:.1f} min"
    )
    if versus:
        print(
            "minus the shipped model on the same pairs: rank-1 {:+.3f} [{:+.3f}, {:+.3f}], "
            "EER {:+.3f} [{:+.3f}, {:+.3f}]".format(
                versus["rank1_diff"],
                *versus["rank1_diff_ci"],
                versus["eer_diff"],
                *versus["eer_diff_ci"],
            )
        )
    if args.install:
        DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED_FILES:
            shutil.copyfile(run_dir / name, DEFAULT_DIR / name)
        strip_machine_paths(DEFAULT_DIR / CONFIG_FILE)
        print(f"installed -> {DEFAULT_DIR}")
    suffix = "" if args.name == "default" else "-" + args.name.removeprefix("default-")
    path = default_results(args, f"default-model{suffix}")
    if path:
        data = (
            f"PTB-XL at {args.root} (CC BY 4.0)"
            + (f" + MIT-BIH at {args.mitdb} (ODC-By 1.0)" if with_mitdb else "")
            + (f" + CinC 2017 at {args.cinc} (ODC-By 1.0)" if with_cinc else "")
        )
        write_results(path, figures, started, data, beat)
    return figures


if __name__ == "__main__":
    main()
