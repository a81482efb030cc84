"""Training throughput on CPU: beats per second of full optimisation steps, fp32 vs bf16 autocast.

Why: every experiment's epoch budget depends on it, and ``TrainConfig.bf16`` is only worth turning
on where bfloat16 autocast is actually faster on the machine at hand (CPUs without native bf16
instructions emulate it). A step here is what the training loop does per batch: forward of the
full :class:`~ecgbio.models.IdentityModel` (ResNet1d backbone, softmax head, ArcFace head) with
labels, backward, AdamW. Inputs are random: the arithmetic, hence the time, does not depend on the
values. Warm-up steps (allocator, oneDNN kernel selection) are excluded; the median of the timed
steps is reported.

Run from the repository root: ``python -m benchmarks.train_throughput`` (about 12 minutes on 2
cores, most of it in bf16 steps); ``--help`` for the knobs. Writes
``benchmarks/results/train_throughput.json``. The load average is recorded before the run, and
beside every row the 1-minute load and the cores the step really got (CPU time / wall time):
another process busy on the same cores slows the 2-thread figures first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ecgbio.config import BeatConfig, ModelConfig, TrainConfig, to_dict
from ecgbio.models import IdentityModel
from ecgbio.provenance import provenance

#: Model presets: the default and two smaller backbones (fewer channels, smaller embedding).
PRESETS: dict[str, ModelConfig] = {
    "default": ModelConfig(),
    "small": ModelConfig(widths=(16, 32, 64, 128), embedding_dim=64),
    "tiny": ModelConfig(widths=(8, 16, 32, 64), embedding_dim=32),
}
#: Beat window lengths: the default BeatConfig window at 100 Hz (the default model's rate) and at
#: 500 Hz (PTB-XL's and ECG-ID's own rate).
_WINDOW_S = BeatConfig.before_s + BeatConfig.after_s
WINDOWS = {round(_WINDOW_S * rate): f"{_WINDOW_S:g} s at {rate} Hz" for rate in (100, 500)}
DTYPES = ("fp32", "bf16")


def parameter_counts(model: IdentityModel) -> dict[str, int]:
    """Parameters per part: the backbone is what an enrolled gallery needs; the heads grow with the
    number of training identities (ArcFace keeps one centre per class)."""

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    return {
        "total": count(model),
        "backbone": count(model.backbone),
        "softmax_head": count(model.softmax),
        "metric_head": count(model.metric),
    }


def measure(
    config: ModelConfig,
    window: int,
    dtype: str,
    threads: int,
    batch: int,
    classes: int,
    warmup: int,
    steps: int,
    budget_s: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``warmup + steps`` training steps of a fresh model; figures of the timed ones.

    ``budget_s`` > 0 stops timing once the timed steps took that long and at least 3 were timed,
    so that a 30-second bf16 step does not hold the whole table up for minutes.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    train_config = TrainConfig(batch_size=batch, bf16=dtype == "bf16")
    model = IdentityModel(1, classes, config, train_config)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
    )
    x = torch.randn(batch, 1, window)
    # batches as the loop's class-balanced sampler makes them: m_per_class beats of each identity
    m = train_config.m_per_class
    y = torch.randperm(classes)[: batch // m].repeat_interleave(m)
    load = os.getloadavg()[0]
    times: list[float] = []
    losses: list[float] = []
    cpu_s = 0.0
    for i in range(warmup + steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=train_config.bf16):
            out = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        losses.append(float(out["loss"].detach()))
        if i >= warmup:
            times.append(elapsed)
            cpu_s += time.process_time() - cpu_start
            if budget_s > 0 and len(times) >= 3 and sum(times) > budget_s:
                break
    median = statistics.median(times)
    return {
        "window": window,
        "dtype": dtype,
        "threads": threads,
        "batch": batch,
        "classes": classes,
        "warmup_steps": warmup,
        "timed_steps": len(times),
        "step_s_median": round(median, 4),
        "step_s_min": round(min(times), 4),
        "step_s_max": round(max(times), 4),
        "beats_per_s": round(batch / median, 1),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "load_1m_before": round(load, 2),
        # CPU seconds per wall second while timed: well below ``threads`` means the threads
        # waited for cores (another process), and the figure is pessimistic
        "cores_used": round(cpu_s / sum(times), 2),
    }


def cpu_features() -> dict[str, Any]:
    """What decides whether bf16 can be fast: native bf16 dot products (AVX512-BF16, AMX)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    try:  # False: oneDNN has no bf16 kernels here and bf16 convolutions take aten's slow path
        onednn_bf16: bool | None = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn_bf16 = None
    return {
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "onednn_bf16_supported": onednn_bf16,
        "flags": {name: name in flags for name in wanted},
    }


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'config':8} {'params':>9} {'window':>6} {'dtype':5} {'thr':>3} "
        f"{'step ms':>8} {'beats/s':>8} {'bf16/fp32':>9} {'2t/1t':>6} {'cores':>5} {'load':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        bf16 = f"{r['bf16_speedup']:.2f}x" if "bf16_speedup" in r else ""
        par = f"{r['thread_speedup']:.2f}x" if "thread_speedup" in r else ""
        print(
            f"{r['config']:8} {r['params_total']:>9,} {r['window']:>6} {r['dtype']:5} "
            f"{r['threads']:>3} {r['step_s_median'] * 1000:>8.0f} {r['beats_per_s']:>8.0f} "
            f"{bf16:>9} {par:>6} {r['cores_used']:>5.2f} {r['load_1m_before']:>5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", default=",".join(PRESETS), help=f"presets: {', '.join(PRESETS)}"
    )
    parser.add_argument(
        "--windows", default=",".join(map(str, WINDOWS)), help="beat lengths in samples"
    )
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="fp32 and/or bf16")
    parser.add_argument("--threads", default="1,2", help="torch intra-op thread counts")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=1000, help="training identities")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=60.0,
        help="stop timing a combination after this many seconds (once 3 steps are timed; 0 = off)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "train_throughput.json"
    )
    args = parser.parse_args()
    names = _csv(args.configs)
    unknown = [n for n in names if n not in PRESETS]
    dtypes = _csv(args.dtypes)
    if unknown or any(d not in DTYPES for d in dtypes):
        parser.error(f"unknown config or dtype in {names} {dtypes}")
    windows = [int(w) for w in _csv(args.windows)]
    thread_counts = [int(t) for t in _csv(args.threads)]
    if args.steps < 1 or args.warmup < 0 or args.batch < 4 or args.batch % 4:
        parser.error("need --steps >= 1, --warmup >= 0 and --batch a multiple of 4")

    load_before = [round(v, 2) for v in os.getloadavg()]
    print(f"load average before: {load_before}  ({os.cpu_count()} cores)")
    configs: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for name in names:
        config = PRESETS[name]
        counts = parameter_counts(IdentityModel(1, args.classes, config, TrainConfig()))
        configs[name] = {"model_config": to_dict(config), "parameters": counts}
        for window in windows:
            for threads in thread_counts:
                # fp32 and bf16 back to back, so that a change in outside load hits both alike
                for dtype in dtypes:
                    row = {"config": name, "params_total": counts["total"]}
                    row |= measure(
                        config,
                        window,
                        dtype,
                        threads,
                        args.batch,
                        args.classes,
                        args.warmup,
                        args.steps,
                        args.budget_s,
                    )
                    rows.append(row)
                    print(
                        f"  {name} window {window} {dtype} {threads} thread(s): "
                        f"{row['beats_per_s']:.0f} beats/s",
                        flush=True,
                    )
    _add_speedups(rows)
    result = {
        **provenance(),
        "load_avg_before": load_before,
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_features": cpu_features(),
        "torch_version": torch.__version__,
        "settings": {
            "batch": args.batch,
            "classes": args.classes,
            "warmup_steps": args.warmup,
            "timed_steps": args.steps,
            "budget_s": args.budget_s,
            "windows": {str(w): WINDOWS.get(w, "") for w in windows},
            "step": "IdentityModel(x, labels) -> softmax + ArcFace losses, backward, AdamW",
            "input": "random normal beats, 1 lead; labels m_per_class=4 per identity",
        },
        "configs": configs,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    _print_table(rows)
    print(f"\nwrote {args.out}")


def _add_speedups(rows: list[dict[str, Any]]) -> None:
    """bf16 vs fp32 at the same threads, and 2 vs 1 thread at the same dtype (>1 = faster)."""

    def key(r: dict[str, Any], **change: Any) -> tuple[Any, ...]:
        r = {**r, **change}
        return (r["config"], r["window"], r["dtype"], r["threads"])

    index = {key(r): r for r in rows}
    for r in rows:
        if r["dtype"] == "bf16" and (fp32 := index.get(key(r, dtype="fp32"))):
            r["bf16_speedup"] = round(r["beats_per_s"] / fp32["beats_per_s"], 2)
        if r["threads"] > 1 and (one := index.get(key(r, threads=1))):
            r["thread_speedup"] = round(r["beats_per_s"] / one["beats_per_s"], 2)


if __name__ == "__main__":
    main()
