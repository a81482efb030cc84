"""The built-in end-to-end run: a synthetic cohort through the same path as a real PTB-XL copy.

Synthetic ECG proves the machinery works on a machine with no data and no network; it is never
evidence of accuracy (real figures: README, ``experiments/results``).
"""

from __future__ import annotations

import shutil
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
    n_persons: int = 48,
    n_enrolled: int = 12,
    workers: int = 2,
    epochs: int = 12,
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
    seed: int = 0,
) -> dict[str, Any]:
    """Cohort -> WFDB files -> beat store -> trained model -> identification of unseen persons.

    ``n_persons`` synthetic persons: ``n_enrolled`` of them have three recording sessions and are
    never trained on (the ``unseen`` protocol: enrol their first session, identify the later ones);
    the others have one record each and are the training identities. ``out`` is the demo's own
    directory: a previous demo there is replaced, anything else is refused (never overwritten).
    """
    from ecgbio.config import ModelConfig, TrainConfig
    from ecgbio.evaluate import evaluate_run
    from ecgbio.prepare import prepare_store
    from ecgbio.sources.ptbxl import ptbxl_records
    from ecgbio.sources.synthetic import write_synthetic_cohort
    from ecgbio.training import train

    out = Path(out)
    if not 2 <= n_enrolled < n_persons - 1:
        raise EcgbioError(f"need 2 <= enrolled persons ({n_enrolled}) < persons ({n_persons}) - 1")
    say = echo or (lambda _text: None)
    _claim(out)
    start = time.perf_counter()
    root = out / "ptbxl-synthetic"
    counts = [1] * (n_persons - n_enrolled) + [3] * n_enrolled
    say(
        f"[1/5] synthetic cohort: {n_persons} persons ({n_enrolled} with 3 sessions), written as "
        f"WFDB + ptbxl_database.csv to {root}"
    )
    write_synthetic_cohort(
        root,
        n_persons=n_persons,
        records_per_person=counts,
        duration_s=10.0,
        rate=500,
        n_leads=12,
        seed=seed,
    )
    store = out / "store"
    config = BeatConfig(leads=("I",), rate=100)
    say(f"[2/5] ecgbio prepare ptbxl --root {root} --out {store} --rate 100 --leads I")
    summary = prepare_store(
        ptbxl_records(root, rate=100),
        store,
        config,
        workers=workers,
        overwrite=True,
        progress=progress,
        source={"kind": "ptbxl", "root": str(root), "synthetic": True},
    )
    for line in summary.lines():
        say("      " + line)
    run_dir = out / "run"
    say(
        f"[3/5] ecgbio train --store {store} --out {run_dir} --protocol unseen "
        f"(the {n_enrolled} multi-session persons are never trained on)"
    )
    result = train(
        store,
        run_dir,
        ModelConfig(widths=(16, 32, 64), blocks=(1, 1, 1), embedding_dim=64),
        TrainConfig(
            protocol="unseen",
            epochs=epochs,
            batch_size=64,
            m_per_class=2,
            val_fraction=0.0,
            patience=0,
            seed=seed,
            lr=3e-3,
        ),
        overwrite=True,
        progress=progress,
        echo=lambda line: say("      " + line),
    )
    say(f"[4/5] ecgbio evaluate --model {run_dir} --store {store} --protocol enrol-probe")
    figures = evaluate_run(run_dir, store, "enrol-probe", out=out / "eval", overwrite=True)
    chance = 1.0 / max(figures["persons"], 1)
    say(
        f"      {figures['persons']} unseen persons enrolled from their first session; "
        f"{figures['probes']} later records identified: rank-1 {figures['rank1']:.1%} "
        f"(chance {chance:.1%}), rank-5 {figures['rank5']:.1%}, EER {figures['eer']:.1%}"
    )
    gallery = _gallery_round(out, run_dir, store, enrol_beats=5, say=say)
    result_dict = {
        "out": str(out),
        "cohort": str(root),
        "store": str(store),
        "run": str(run_dir),
        "prepare": summary.__dict__,
        "train": {"best_epoch": result.best_epoch, "beats_per_s": result.beats_per_s},
        "identification": {
            k: figures[k] for k in ("persons", "probes", "rank1", "rank5", "eer", "auc")
        },
        "chance_rank1": chance,
        "gallery": gallery,
        "wall_s": round(time.perf_counter() - start, 2),
    }
    say(
        f"demo finished in {result_dict['wall_s']} s (synthetic data: checks the machinery, "
        "not accuracy)"
    )
    return result_dict


def _gallery_round(
    out: Path, run_dir: Path, store_dir: Path, enrol_beats: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """What a user does: enrol each unseen person from a few beats of one record, then identify."""
    from ecgbio.embed import Embedder
    from ecgbio.gallery import Gallery
    from ecgbio.store import BeatStore

    records = BeatStore.open(store_dir).records
    records = records[records["status"] == "ok"].copy()
    records["order"] = records["order"].astype(int)
    multi = records.groupby("person").filter(lambda g: len(g) >= 2)
    path = out / "gallery"
    shutil.rmtree(path, ignore_errors=True)  # the previous demo's own gallery (see _claim)
    gallery = Gallery.create(path, Embedder(run_dir), index="flat")
    say(
        f"[5/5] ecgbio enroll --model {run_dir} --gallery {path} --id PERSON RECORD "
        f"--max-beats {enrol_beats}   (x {multi['person'].nunique()}), then ecgbio identify"
    )
    probes = []
    for person, rows in multi.sort_values(["person", "order"]).groupby("person"):
        gallery.enroll(person, [rows["path"].iloc[0]], max_beats=enrol_beats)
        probes += [(person, p) for p in rows["path"].iloc[1:]]
    right = unknown = 0
    for i, (person, probe) in enumerate(probes):
        answer = gallery.identify(probe, top_k=3)
        top = answer.candidates[0].person if answer.candidates else None
        right += int(top == person)
        unknown += int(answer.unknown)
        if i < 2:
            say(
                f"      identify {Path(probe).name} (truly {person}): "
                f"{answer.person or 'unknown'}; top-3 "
                + ", ".join(f"{c.person} {c.score:.3f}" for c in answer.candidates)
            )
    say(
        f"      top-1 right for {right}/{len(probes)} records; {unknown} answered 'unknown' "
        "at the operating point"
    )
    return {
        "persons": int(multi["person"].nunique()),
        "probes": len(probes),
        "enrol_beats": enrol_beats,
        "top1_right": right,
        "unknown": unknown,
    }


def _claim(out: Path) -> None:
    """Use ``out`` only if it is empty, absent, or an earlier demo's directory."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise EcgbioError(
            "directory exists and is not an ecgbio demo directory; choose another --out", out
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MARKER, "created by `ecgbio demo`; safe to delete\n")
