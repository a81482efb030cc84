"""What the recipes share: cached stores, argument defaults, results files with provenance."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ecgbio.beats import QUALITY_CONTEXT_S
from ecgbio.config import BeatConfig, to_dict
from ecgbio.errors import StoreError
from ecgbio.io import atomic_write_text
from ecgbio.prepare import prepare_store
from ecgbio.provenance import REPO, provenance
from ecgbio.sources import RecordSpec
from ecgbio.store import BeatStore

RESULTS = REPO / "experiments" / "results"
WORK = REPO / "experiments" / "work"  # stores and runs (git-ignored)


def base_parser(description: str, default_root: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", type=Path, default=default_root, help="database root")
    parser.add_argument(
        "--rate",
        type=int,
        default=100,
        help="pipeline rate in Hz (the shared PTB-XL subset has 100 Hz records only)",
    )
    parser.add_argument("--work", type=Path, default=WORK, help="where stores and runs go")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="results JSON (default: experiments/results/<name>.json, only for real data)",
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    return parser


def cached_store(
    specs: Callable[[], Sequence[RecordSpec]],
    out: Path,
    config: BeatConfig,
    workers: int,
    progress: bool,
    source: dict[str, Any],
) -> BeatStore:
    """Open ``out`` if it was prepared with ``config`` (and today's beat-quality rule) from the
    same databases (``source['kind']``: a path spelled another way is the same database), else
    prepare it (resuming if interrupted)."""
    try:
        store = BeatStore.open(out)
        same_rule = store.manifest.get("quality_context_s") == list(QUALITY_CONTEXT_S)
        same_source = store.manifest.get("source", {}).get("kind") == source.get("kind")
        if store.config == config and same_rule and same_source:
            return store
        raise StoreError("stale store: different config or databases", out)
    except StoreError:
        prepare_store(
            specs(), out, config, workers=workers, overwrite=True, progress=progress, source=source
        )
        return BeatStore.open(out)


def ptbxl_store(args: argparse.Namespace, beat: BeatConfig, name: str = "") -> BeatStore:
    """The PTB-XL store at ``args.root`` cut with ``beat``, prepared once under ``args.work``."""
    from ecgbio.sources.ptbxl import ptbxl_records

    return cached_store(
        lambda: ptbxl_records(args.root, rate=args.rate),
        args.work / f"ptbxl-{name or leads_tag(args)}",
        beat,
        args.workers,
        not args.quiet,
        {"kind": "ptbxl", "root": str(args.root)},
    )


def ecgid_store(root: Path, work: Path, beat: BeatConfig, progress: bool) -> BeatStore:
    """The ECG-ID store at ``root`` cut with ``beat`` (a model's), prepared once under ``work``."""
    from ecgbio.sources.folder import folder_records

    return cached_store(
        lambda: folder_records(root),
        work / f"ecgid-{beat.rate}hz",
        beat,
        2,
        progress,
        {"kind": "wfdb", "root": str(root)},
    )


def leads_tag(args: argparse.Namespace) -> str:
    """``100hz-I``, ``100hz-12lead``: names stores, runs and results files."""
    leads = getattr(args, "leads", "I")
    return f"{args.rate}hz-{'12lead' if leads == 'all' else leads.replace(',', '')}"


def write_results(
    path: Path, payload: dict[str, Any], started: float, data: str, beat: BeatConfig
) -> None:
    """Results JSON: figures + how they were made (command, data, hardware, commit, wall time)."""
    out = {
        **provenance(),
        "data": data,
        "beat_config": to_dict(beat),
        "wall_time_s": round(time.perf_counter() - started, 1),
        **payload,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out, indent=2, default=str) + "\n")
    print(f"results -> {path}")


def default_results(args: argparse.Namespace, name: str) -> Path | None:
    """Only real data goes to experiments/results; synthetic runs write nothing unless named."""
    from ecgbio.sources import SYNTHETIC_MARKER

    if args.results is not None:
        return args.results
    return None if (args.root / SYNTHETIC_MARKER).exists() else RESULTS / f"{name}.json"
