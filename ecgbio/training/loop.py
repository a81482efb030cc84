"""The training loop: both heads together, class-balanced batches, selection on validation only.

Determinism: every epoch reseeds torch, numpy (the batch sampler) and the augmentation generator
from ``(seed, epoch)``, so epoch ``e`` draws the same batches whether the run got there in one go or
was resumed from the checkpoint of epoch ``e - 1``; the resume test checks the weights are equal.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as pml_common
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import BatchSampler

from ecgbio.config import BeatConfig, ModelConfig, TrainConfig, from_dict, save_json, to_dict
from ecgbio.errors import ConfigError, option
from ecgbio.evaluate import (
    CI_BOOT,
    ENROL_BEATS,
    check_compatible,
    evaluate_classify,
    evaluate_match,
    evaluate_pairs,
    validation_thresholds,
)
from ecgbio.io import atomic_open, save_arrays
from ecgbio.models import IdentityModel
from ecgbio.protocols import ClassifySet, MatchSet, Split, make_split
from ecgbio.runs import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    THRESHOLDS_FILE,
    WEIGHTS_FILE,
    RunError,
    load_torch_state,
    load_weights,
    model_dir,
    read_run_config,
    save_torch_state,
    save_weights,
    write_run_config,
)
from ecgbio.store import BeatStore
from ecgbio.training.augment import augment_beats, rotate_lead_axis, smooth_beats, warp_beats
from ecgbio.training.distributed import (
    DistContext,
    any_flag,
    barrier,
    broadcast_flag,
    init_distributed,
    shutdown,
)

Echo = Callable[[str], None]

#: The selected model's validation scores over every (earlier, later) record pair
#: (:class:`ecgbio.metrics.pairs.PairScores`): two runs on the same store compare on them.
VAL_PAIRS_FILE = "val_pairs.npz"

#: The checkpoint's loop state (epoch, best score, early-stop count), written last of its files.
STATE_FILE = "state.json"

#: Training beats embedded after every epoch to tell a model whose outputs overflow.
DIVERGENCE_PROBE = 32

#: The checkpoint's weight average (``TrainConfig.ema_decay``), beside ``last.safetensors``.
EMA_FILE = "ema.safetensors"


@dataclass
class TrainResult:
    """What a finished run reports (also written to ``RUN_DIR/metrics.json``)."""

    run_dir: str
    protocol: str
    classes: int
    best_epoch: int
    epochs_run: int
    val: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    train_last: dict[str, Any] = field(default_factory=dict)
    train_best: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    beats_per_s: float = 0.0


def train(
    store: str | Path | BeatStore,
    out: str | Path,
    model_config: ModelConfig = ModelConfig(),
    train_config: TrainConfig = TrainConfig(),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    echo: Echo | None = print,
    split: Split | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train an :class:`IdentityModel` on ``store`` under ``train_config.protocol``.

    Args:
        store: beat store (directory or opened).
        out: run directory; refused if it holds a run, unless ``resume`` or ``overwrite``.
        resume: continue from ``out/checkpoint`` (same configs required).
        split: a ready split (experiments that vary protocols' parameters); default: the named
            protocol with ``train_config``'s options.
        init_from: fine-tune: start from this run's backbone (``"default"``: the shipped model);
            its model config must equal ``model_config``. The heads start afresh (other classes).
    """
    start = time.perf_counter()
    ctx = init_distributed()
    say = (echo or (lambda _s: None)) if ctx.is_main else (lambda _s: None)
    store = store if isinstance(store, BeatStore) else BeatStore.open(store)
    out = Path(out)
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    device = resolve_device(train_config.device, ctx)
    if train_config.bf16 and device.type == "cpu" and not _native_bf16():
        say(
            "warning: this CPU has no native bfloat16; bf16 autocast is much slower here "
            "(benchmarks/train_throughput.py)"
        )
    split = split or make_split(
        store,
        train_config.protocol,
        seed=train_config.seed,
        val_fraction=train_config.val_fraction,
        max_beats_per_record=train_config.max_beats_per_record,
    )
    if split.n_classes < 2 or len(split.train) == 0:
        raise ConfigError(
            f"protocol {split.protocol} gives nothing to train on ({split.n_classes} classes)",
            store.root,
        )
    full_store, store = store, _model_view(store, train_config)
    in_leads = store.beats.shape[1]
    torch.manual_seed(train_config.seed)  # the initial weights, ArcFace centres included
    model = IdentityModel(in_leads, split.n_classes, model_config, train_config)
    if init_from is not None:
        source = model_dir(init_from)
        pretrained = read_run_config(source)
        if pretrained.get("model") != to_dict(model_config):
            raise RunError("fine-tuning needs the same model config as the pretrained run", source)
        check_compatible(from_dict(BeatConfig, pretrained["beat"]), store)  # same beats, too
        load_weights(source / WEIGHTS_FILE, model.backbone, prefix="backbone.")
    model.to(device)
    extra = {
        "protocol": split.protocol,
        "split": split.info,
        "store": str(store.root.resolve()),
        "store_created": store.manifest.get("created"),
        "leads": list(store.leads),
        "init_from": str(model_dir(init_from)) if init_from is not None else None,
    }
    # Every rank checks before anyone writes, so all ranks see the same state and raise alike.
    _check_run_dir(out, resume, overwrite, model_config, train_config)
    barrier(ctx)
    # Everything that can refuse the options is built before anything is written, too.
    batch_size = _effective_batch(train_config, split, say)
    steps = max(1, len(split.train) // batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
    )
    rank_steps = max(1, steps // ctx.world_size)  # optimiser steps per epoch on each process
    total_steps = rank_steps * train_config.epochs
    warmup = max(1, rank_steps * train_config.warmup_epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(1.0, s / max(1, total_steps))))
        ),
    )
    # The weight average (when asked) is what is validated, selected and saved; the live model
    # keeps training. Buffers (BatchNorm statistics) are averaged alike.
    ema = (
        AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(train_config.ema_decay), use_buffers=True
        )
        if train_config.ema_decay
        else None
    )
    if ctx.is_main:
        try:
            _prepare_run_dir(out, resume)
            if not resume:
                write_run_config(
                    out, store.config, model_config, train_config, in_leads, split.classes, extra
                )
        except OSError as exc:  # a read-only disk, /proc, no permission: named, not a traceback
            raise RunError(f"cannot write the run directory ({exc.strerror or exc})", out) from exc
    barrier(ctx)

    judged: IdentityModel = ema.module if ema is not None else model  # type: ignore[assignment]
    state = {"epoch": 0, "best_score": -math.inf, "best_epoch": 0, "bad_epochs": 0}
    if resume:
        state = _load_checkpoint(out, model, optimizer, scheduler, ema, truncate=ctx.is_main)
        say(f"resuming {out} after epoch {state['epoch']}")
    net: torch.nn.Module = model
    if ctx.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model)

    fetch = _Fetcher(full_store, split, train_config, device)
    probe = torch.from_numpy(store.waves(split.train[:DIVERGENCE_PROBE])).to(device)
    history_path = out / HISTORY_FILE
    beats_seen, train_time = 0, 0.0
    last: dict[str, Any] = {}
    for epoch in range(state["epoch"], train_config.epochs):
        t0 = time.perf_counter()
        row = _train_epoch(
            net,
            model,
            optimizer,
            scheduler,
            fetch,
            split,
            train_config,
            batch_size,
            steps,
            epoch,
            ctx,
            progress,
            ema,
        )
        beats_seen += row.pop("_beats")
        train_time += time.perf_counter() - t0
        # (checked before this epoch's weights are validated, selected or checkpointed)
        broken = "loss" if row.pop("_diverged") else _broken(model, ema, judged, probe)
        if any_flag(ctx, bool(broken)):
            raise DivergedError(
                f"training diverged in epoch {epoch + 1}: the {broken or 'loss'} "
                f"became NaN or infinite; lower {option('--lr', 'lr')}, now {train_config.lr:g}",
                out,
            )
        stop = False
        if ctx.is_main:
            val = _validate(judged, store, split.val)
            row.update({f"val_{k}": v for k, v in val.items() if not isinstance(v, dict)})
            row["seconds"] = round(time.perf_counter() - t0, 2)
            score = _selection_score(val)
            improved = score > state["best_score"]
            if improved:
                state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0)
                save_weights(out / WEIGHTS_FILE, judged)
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch + 1
            _append_history(history_path, row)
            _save_checkpoint(out, model, optimizer, scheduler, state, ema)
            say(_epoch_line(row, improved))
            last = row
            stop = bool(train_config.patience) and state["bad_epochs"] >= train_config.patience
            if stop:
                say(f"early stop: no better validation score for {train_config.patience} epochs")
        if broadcast_flag(ctx, stop):
            break
    barrier(ctx)

    result = TrainResult(
        run_dir=str(out),
        protocol=split.protocol,
        classes=split.n_classes,
        best_epoch=int(state["best_epoch"]),
        epochs_run=int(state["epoch"]),
        split=split.info,
        train_last=last,
    )
    if ctx.is_main:
        load_weights(out / WEIGHTS_FILE, model)
        model.eval()
        result.train_best = _history_row(history_path, result.best_epoch)
        result.val = _validate(model, store, split.val, CI_BOOT, out / VAL_PAIRS_FILE)
        result.test = _test(model, store, split)
        if isinstance(split.val, MatchSet) and len(split.val.probe):
            save_json(out / THRESHOLDS_FILE, validation_thresholds(model, store, split.val))
        result.wall_s = round(time.perf_counter() - start, 2)
        result.beats_per_s = round(beats_seen * ctx.world_size / max(train_time, 1e-9), 1)
        save_json(
            out / METRICS_FILE,
            {
                **result.__dict__,
                "train_config": to_dict(train_config),
                "model_config": to_dict(model_config),
            },
        )
    barrier(ctx)
    shutdown(ctx)
    return result


def resolve_device(name: str, ctx: DistContext | None = None) -> torch.device:
    """``TrainConfig.device`` -> a torch device; asking for a GPU that is not there is an error."""
    if name == "auto":  # several processes train on the CPU (DDP on GPUs is not supported)
        many = ctx is not None and ctx.enabled
        name = "cuda" if torch.cuda.is_available() and not many else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name}: this torch build sees no CUDA GPU")
        if ctx is not None and ctx.enabled:
            raise ConfigError("device cuda with several processes (DDP) is not supported")
    return torch.device(name)


def _native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


AXIS_LEADS = ("I", "II")


def _model_view(store: BeatStore, config: TrainConfig) -> BeatStore:
    """What the model sees: lead I alone when the lead-axis augmentation reads lead II beside it."""
    if not (config.augment and config.augment_axis_deg):
        return store
    if store.leads[:2] != AXIS_LEADS:
        raise ConfigError(
            f"augment_axis_deg needs a store whose first leads are I and II "
            f"(prepare with --leads I,II); this one has {', '.join(store.leads)}",
            store.root,
        )
    if store.config.normalize == "beat":
        raise ConfigError(
            "augment_axis_deg mixes leads I and II, which a store z-scored per beat and lead no "
            "longer allows (prepare with --normalize none or record)",
            store.root,
        )
    return store.select_leads(AXIS_LEADS[:1])


# --- one epoch -----------------------------------------------------------------------------------
class _Fetcher:
    """Training batches straight from the memmap (one fancy-indexed read per batch)."""

    def __init__(
        self,
        store: BeatStore,
        split: Split,
        config: TrainConfig,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        self.store, self.rows, self.labels = store, split.train, split.train_labels
        self.device = device
        self.augment = config.augment
        self.r_index = store.config.samples_before
        self.stretch = config.augment_stretch
        self.shift = config.augment_shift_s * store.config.rate
        self.smooth = config.augment_smooth
        self.gain, self.noise = config.augment_gain, config.augment_noise
        self.axis = config.augment_axis_deg if config.augment else 0.0

    def __call__(self, idx: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        x = torch.from_numpy(self.store.waves(self.rows[idx]))
        if self.axis:
            x = rotate_lead_axis(x[:, :1], x[:, 1:2], generator, self.axis)
        if self.augment:
            x = warp_beats(x, generator, self.r_index, self.stretch, self.shift)
            x = smooth_beats(x, generator, self.smooth)
            x = augment_beats(x, generator, scale=self.gain, noise=self.noise)
        y = torch.from_numpy(self.labels[idx]).long()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _train_epoch(
    net: torch.nn.Module,
    model: IdentityModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    fetch: _Fetcher,
    split: Split,
    config: TrainConfig,
    batch_size: int,
    steps: int,
    epoch: int,
    ctx: DistContext,
    progress: bool,
    ema: AveragedModel | None = None,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    seed = config.seed * 100_003 + epoch
    torch.manual_seed(seed)
    pml_common.NUMPY_RANDOM = np.random.RandomState(seed % (2**32))
    generator = torch.Generator().manual_seed(seed)
    sampler = MPerClassSampler(
        split.train_labels,
        config.m_per_class,
        batch_size=batch_size,
        length_before_new_iter=steps * batch_size,
    )
    batches = list(BatchSampler(sampler, batch_size, drop_last=True))
    if ctx.enabled:  # every rank must take the same number of steps (each one all-reduces)
        batches = (batches * ctx.world_size)[
            : max(1, len(batches) // ctx.world_size) * ctx.world_size
        ]
        batches = batches[ctx.rank :: ctx.world_size]
    net.train()
    sums = {"loss": 0.0, "softmax": 0.0, "metric": 0.0, "correct": 0, "n": 0}
    bar = tqdm(
        batches,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        leave=False,
        disable=not progress or not ctx.is_main,
        dynamic_ncols=True,
    )
    diverged = False
    for idx in bar:
        x, y = fetch(np.asarray(idx), generator)
        with torch.autocast(fetch.device.type, dtype=torch.bfloat16, enabled=config.bf16):
            out = net(x, y)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        n = len(y)
        loss = float(out["loss"].detach())
        if not math.isfinite(loss):
            diverged = True
            if not ctx.enabled:
                break  # (under DDP every rank takes every step: each one all-reduces)
        sums["loss"] += loss * n
        sums["softmax"] += float(out["softmax"]) * n
        sums["metric"] += float(out["metric"]) * n
        sums["correct"] += int((out["logits"].argmax(1) == y).sum())
        sums["n"] += n
        bar.set_postfix(
            loss=f"{sums['loss'] / sums['n']:.3f}", acc=f"{sums['correct'] / sums['n']:.3f}"
        )
    bar.close()
    n = max(sums["n"], 1)
    return {
        "epoch": epoch + 1,
        "loss": sums["loss"] / n,
        "softmax_loss": sums["softmax"] / n,
        "metric_loss": sums["metric"] / n,
        "accuracy": sums["correct"] / n,
        "lr": optimizer.param_groups[0]["lr"],
        "_beats": sums["n"],
        "_diverged": diverged,
    }


class DivergedError(ConfigError):
    """The loss or the weights became NaN or infinite: the options (most often the learning
    rate) do not train this model; the run stops instead of validating NaN embeddings."""


def _broken(
    model: IdentityModel, ema: AveragedModel | None, judged: IdentityModel, probe: torch.Tensor
) -> str:
    """What of the model became NaN or infinite in an epoch: ``"weights"`` (the average's too),
    ``"embeddings"`` (of ``probe``, a few training beats, in evaluation mode: a huge last step
    can leave finite weights whose outputs overflow), or ``""`` when nothing did. Why: validation
    would otherwise score NaN embeddings and fail with a metrics error that names no cause."""
    modules = [model] if ema is None else [model, ema]
    tensors = (t for m in modules for t in m.state_dict().values() if t.is_floating_point())
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        return "weights"
    was_training = judged.training
    judged.eval()
    with torch.no_grad():
        finite = bool(torch.isfinite(judged.embed(probe)).all())
    judged.train(was_training)
    return "" if finite else "embeddings"


def _effective_batch(config: TrainConfig, split: Split, say: Echo) -> int:
    """MPerClassSampler needs m * classes >= batch; small datasets get a smaller batch."""
    m = config.m_per_class
    limit = (split.n_classes * m) // m * m
    batch = min(config.batch_size, limit, max(m, len(split.train) // m * m))
    if batch != config.batch_size:
        say(f"batch size {config.batch_size} -> {batch} ({split.n_classes} classes x m={m})")
    return batch


# --- validation, test ----------------------------------------------------------------------------
def _validate(
    model: IdentityModel,
    store: BeatStore,
    vset: ClassifySet | MatchSet | None,
    ci_boot: int = 0,
    pairs_out: Path | None = None,
) -> dict[str, Any]:
    """Validation figures; a match set also gets every (earlier, later) record pair
    (``pairs_*``, intervals over persons with ``ci_boot``; the scores saved to ``pairs_out``)."""
    if vset is None:
        return {}
    if isinstance(vset, ClassifySet):
        return evaluate_classify(model, store, vset)
    embedded: dict[str, np.ndarray] = {}
    figures = evaluate_match(model, store, vset, embeddings_out=embedded)
    out = {k: figures[k] for k in ("rank1", "rank5", "eer", "auc", "d_prime")}
    pairs, scores = evaluate_pairs(model, store, vset, ci_boot, embeddings=embedded)
    keep = ("rank1", "eer", "trials", "rank1_ci", "eer_ci")
    out.update({f"pairs_{k}": v for k, v in pairs.items() if k in keep})
    if pairs_out is not None and pairs:
        save_arrays(pairs_out, scores.arrays())
    return out


def _selection_score(val: dict[str, Any]) -> float:
    """Higher is better. Classification: accuracy (loss breaks ties); matching: rank-1 - EER over
    every (earlier, later) record pair (more trials than earliest-record enrolment alone, so a
    less noisy choice of epoch), with the genuine/impostor separation (d') breaking ties: on an
    easy validation set rank-1 and the EER saturate at once, and the first, barely trained epoch
    would otherwise be kept."""
    if "accuracy" in val:
        return float(val["accuracy"]) - 1e-4 * float(val["loss"])
    if "rank1" in val:
        rank1 = float(val.get("pairs_rank1", val["rank1"]))
        error = float(val.get("pairs_eer", val["eer"]))
        return rank1 - error + 1e-6 * float(val.get("d_prime", 0.0))
    return 0.0


def _test(model: IdentityModel, store: BeatStore, split: Split) -> dict[str, Any]:
    if split.test is None:  # a general model is tested on other databases
        return {}
    if isinstance(split.test, ClassifySet):
        return evaluate_classify(model, store, split.test)
    closed = split.protocol == "cross-session"
    return evaluate_match(
        model,
        store,
        split.test,
        enrol_beats=ENROL_BEATS,
        classes=split.classes if closed else None,
        ci_boot=CI_BOOT,
    )


# --- run directory, checkpoints ------------------------------------------------------------------
def _check_run_dir(
    out: Path, resume: bool, overwrite: bool, model_config: ModelConfig, train_config: TrainConfig
) -> None:
    """Refuse to clobber a run or to resume with other options (read-only: runs on every rank).

    A run that has not reached its first checkpoint holds no weights and nothing to resume, but
    it may be failed (diverged, killed in epoch 1) or still training (an epoch can take hours), and
    a folder cannot tell which: it is refused like any run, with ``--overwrite`` named as the
    way to start again, rather than two trainings writing into one folder.
    """
    _check_directory_path(out)
    if resume:
        config = read_run_config(out)
        if not (out / CHECKPOINT_DIR / STATE_FILE).is_file():
            raise RunError(
                "nothing to resume (no checkpoint yet); "
                f"{option('--overwrite', 'overwrite=True')} starts it again",
                out,
            )
        differences = _differences(
            ("model", _as_current(ModelConfig, config.get("model")), to_dict(model_config)),
            (
                "train",
                _recipe(_as_current(TrainConfig, config.get("train"))),
                _recipe(to_dict(train_config)),
            ),
        )
        if differences:
            raise RunError(
                f"--resume needs the same model and training options as the interrupted run "
                f"(see its config.json): {'; '.join(differences)}",
                out,
            )
        return
    if (out / CONFIG_FILE).exists() and not overwrite:
        if _never_checkpointed(out):
            raise RunError(
                "a run was started here and has not reached its first checkpoint (it failed, or "
                f"it is still in its first epoch); {option('--overwrite', 'overwrite=True')} "
                "starts it again",
                out,
            )
        raise RunError(
            f"a run already exists here; use {option('--resume', 'resume=True')} to continue it "
            f"or {option('--overwrite', 'overwrite=True')} to start again",
            out,
        )
    if out.exists() and any(out.iterdir()) and not (out / CONFIG_FILE).exists():
        raise RunError("directory is not empty and is not an ecgbio run; choose another --out", out)


def _check_directory_path(out: Path) -> None:
    """``out`` must be a directory or creatable as one: a file in its place or on its way is
    refused here, naming ``out``, rather than as an OSError once training has been set up."""
    for place in (out, *out.parents):
        if place.exists():
            if not place.is_dir():
                what = "is a file" if place == out else f"{place} is a file"
                raise RunError(f"{what}, not a directory: choose another --out", out)
            return


def _never_checkpointed(out: Path) -> bool:
    """A run directory with its configs but no weights and no checkpoint yet."""
    return not any(
        (out / name).exists()
        for name in (WEIGHTS_FILE, METRICS_FILE, f"{CHECKPOINT_DIR}/{STATE_FILE}")
    )


def _differences(*sections: tuple[str, dict[str, Any], dict[str, Any]]) -> list[str]:
    """``field: <the run's> in the run, <now> now`` for the first few fields that differ
    between a saved run's config sections and the options given now."""
    out = []
    for name, saved, now in sections:
        if not saved:
            out.append(f"the run's {name} options do not parse")
            continue
        for key in now:
            if saved.get(key) != now[key]:
                out.append(f"{key}: {_shown(saved.get(key))} in the run, {_shown(now[key])} now")
    return out[:3] + ([f"and {len(out) - 3} more"] if len(out) > 3 else [])


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _as_current(cls: type, saved: Any) -> dict[str, Any]:
    """A saved config section with the fields added since filled in by their defaults (a run
    interrupted before an upgrade resumes after it); ``{}`` when it does not parse."""
    try:
        return to_dict(from_dict(cls, saved or {}))
    except (ConfigError, TypeError):
        return {}


def _recipe(train: dict[str, Any]) -> dict[str, Any]:
    """A training config without where it ran (a run may resume on another device)."""
    return {k: v for k, v in train.items() if k != "device"}


def _prepare_run_dir(out: Path, resume: bool) -> None:
    """Start a fresh run directory (an overwritable one is emptied of its run files)."""
    if resume:
        return
    out.mkdir(parents=True, exist_ok=True)
    for name in (HISTORY_FILE, METRICS_FILE, WEIGHTS_FILE, VAL_PAIRS_FILE):
        (out / name).unlink(missing_ok=True)
    ckpt = out / CHECKPOINT_DIR
    if ckpt.is_dir():
        for item in ckpt.iterdir():
            item.unlink()


def _save_checkpoint(
    out: Path,
    model: IdentityModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    ema: AveragedModel | None = None,
) -> None:
    ckpt = out / CHECKPOINT_DIR
    ckpt.mkdir(exist_ok=True)
    save_weights(ckpt / "last.safetensors", model)
    if ema is not None:
        save_weights(ckpt / EMA_FILE, ema)
    save_torch_state(
        ckpt / "optimizer.pt",
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
    )
    save_json(ckpt / STATE_FILE, state)  # written last: marks the checkpoint complete


def _load_checkpoint(
    out: Path,
    model: IdentityModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    ema: AveragedModel | None = None,
    truncate: bool = True,
) -> dict[str, Any]:
    ckpt = out / CHECKPOINT_DIR
    state = _read_state(ckpt / STATE_FILE)
    load_weights(ckpt / "last.safetensors", model)
    if ema is not None:
        load_weights(ckpt / EMA_FILE, ema)
    saved = load_torch_state(ckpt / "optimizer.pt")
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if truncate:  # rank 0 only under DDP
        _truncate_history(out / HISTORY_FILE, int(state["epoch"]))
    return state


def _read_state(path: Path) -> dict[str, Any]:
    """The loop state a checkpoint was saved with; a damaged file is a :class:`RunError` naming
    it (as a damaged ``last.safetensors`` is), not a JSON or key error."""

    def refuse(problem: str) -> RunError:
        return RunError(
            f"corrupt checkpoint state ({problem}); {option('--overwrite', 'overwrite=True')} "
            "starts the run again",
            path,
        )

    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise refuse(type(exc).__name__) from exc
    if not isinstance(state, dict):
        raise refuse("not a JSON object")
    for key in ("epoch", "best_epoch", "bad_epochs"):
        if (
            isinstance(state.get(key), bool)
            or not isinstance(state.get(key), int)
            or state[key] < 0
        ):
            raise refuse(f"{key} is not a whole number >= 0")
    best = state.get("best_score")
    if isinstance(best, bool) or not isinstance(best, (int, float)) or math.isnan(best):
        raise refuse("best_score is not a number")
    return state


def _append_history(path: Path, row: dict[str, Any]) -> None:
    rows = []
    if path.exists():
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _history_row(path: Path, epoch: int) -> dict[str, Any]:
    """The history row of ``epoch`` (numbers as floats), e.g. the selected epoch's figures."""
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["epoch"]) == epoch:
                return {k: float(v) if k != "epoch" else int(v) for k, v in row.items() if v}
    return {}


def _truncate_history(path: Path, epochs: int) -> None:
    """Drop history rows of epochs after the checkpoint (an interrupted epoch left none, but an
    epoch interrupted between writing history and its checkpoint could)."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= epochs]
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["epoch"]
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _epoch_line(row: dict[str, Any], improved: bool) -> str:
    parts = [f"epoch {row['epoch']:3d}", f"loss {row['loss']:.3f}", f"acc {row['accuracy']:.3f}"]
    for key in ("val_accuracy", "val_loss", "val_rank1", "val_eer"):
        if key in row:
            parts.append(f"{key} {row[key]:.3f}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts) + ("  *" if improved else "")
