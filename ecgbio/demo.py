"""The built-in end-to-end run: a synthetic cohort through the same path as a real PTB-XL copy.

Synthetic ECG proves the machinery works on a machine with no data and no network; it is never
evidence of accuracy (real figures: README, ``experiments/results``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecgbio.config import BeatConfig
from ecgbio.errors import EcgbioError
from ecgbio.io import atomic_write_text

MARKER = ".ecgbio-demo"


def run_demo(
    out: str | Path,
    n_persons: int = 12,
    records_per_person: int = 3,
    workers: int = 2,
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a synthetic PTB-XL-shaped cohort under ``out`` and prepare it into a beat store.

    ``out`` is the demo's own directory: a previous demo there is replaced, anything else is refused
    (it is never overwritten).
    """
    from ecgbio.prepare import prepare_store
    from ecgbio.sources.ptbxl import ptbxl_records
    from ecgbio.sources.synthetic import write_synthetic_cohort

    out = Path(out)
    say = echo or (lambda _text: None)
    _claim(out)
    start = time.perf_counter()
    root = out / "ptbxl-synthetic"
    say(
        f"[1/2] writing a synthetic cohort of {n_persons} persons x {records_per_person} records "
        f"(WFDB + ptbxl_database.csv) to {root}"
    )
    write_synthetic_cohort(
        root,
        n_persons=n_persons,
        records_per_person=records_per_person,
        duration_s=10.0,
        rate=500,
        n_leads=12,
        seed=seed,
    )
    store = out / "store"
    config = BeatConfig(leads=("I",), rate=500)
    say(f"[2/2] ecgbio prepare ptbxl --root {root} --out {store} --rate 500 --leads I")
    summary = prepare_store(
        ptbxl_records(root, rate=500),
        store,
        config,
        workers=workers,
        overwrite=True,
        progress=progress,
        source={"kind": "ptbxl", "root": str(root), "synthetic": True},
    )
    for line in summary.lines():
        say("      " + line)
    result = {
        "out": str(out),
        "cohort": str(root),
        "store": str(store),
        "prepare": summary.__dict__,
        "wall_s": round(time.perf_counter() - start, 2),
    }
    say(
        f"demo finished in {result['wall_s']} s (synthetic data: checks the machinery, "
        "not accuracy)"
    )
    return result


def _claim(out: Path) -> None:
    """Use ``out`` only if it is empty, absent, or an earlier demo's directory."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise EcgbioError(
            "directory exists and is not an ecgbio demo directory; choose another --out", out
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MARKER, "created by `ecgbio demo`; safe to delete\n")
