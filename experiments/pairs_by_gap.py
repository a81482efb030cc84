"""How the shipped model's validation figures fall with the time between a person's two records.

Why: the validation persons are PTB-XL hospital patients (and MIT-BIH's 201/202) recorded again
hours to years later, and every lever measured so far moved their rank-1 by a few points at
most. Splitting every (earlier, later) record pair by the days between the two records says how
much of what the model misses is the passing of time (health, treatment, electrode placement,
age) and how much is already missed within a day. Each later record is probed against every
person's earliest record (:func:`ecgbio.metrics.pairs.pair_scores`); a bin's EER sets its genuine
scores against every impostor score, and its rank-1 carries a Wilson interval (the bins are
small). Days come from the store's ``session`` column (the
recording date); records without one (MIT-BIH) form their own bin.

    python -m experiments.pairs_by_gap [--model default] [--store experiments/work/...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgbio.config import DEFAULT_MODEL
from ecgbio.evaluate import evaluate_pairs
from ecgbio.metrics.verification import eer
from ecgbio.protocols import make_split, record_order
from ecgbio.runs import load_run
from ecgbio.store import BeatStore
from experiments._common import RESULTS, WORK, write_results

#: (label, lowest gap in days, highest gap in days), both ends included.
BINS = (
    ("same day", 0, 0),
    ("1-30 days", 1, 30),
    ("1-12 months", 31, 365),
    ("over a year", 366, 10**6),
)


def pair_gaps(store: BeatStore, persons: np.ndarray, later: np.ndarray) -> np.ndarray:
    """Days between the two records of each (earlier, later) pair, in the order
    :func:`~ecgbio.metrics.pairs.pair_scores` lists them (each person's records by time, pairs by
    earlier then later record); NaN where a record has no date. ``persons`` / ``later``: its
    ``hit_person`` / ``hit_record``, checked against this enumeration."""
    records = store.index.drop_duplicates("record").set_index("record")
    dates = pd.to_datetime(records["session"], errors="coerce")
    rank = record_order(store)
    ordered: dict[str, list[str]] = {}
    for record in sorted(set(later) | _earlier_records(store, persons), key=lambda r: rank[r]):
        ordered.setdefault(str(records.at[record, "person"]), []).append(record)
    pairs = [
        (person, recs[a], recs[b])
        for person, recs in sorted(ordered.items())
        for a in range(len(recs))
        for b in range(a + 1, len(recs))
    ]
    if [p for p, _, _ in pairs] != list(persons) or [b for _, _, b in pairs] != list(later):
        raise RuntimeError("pair order differs from pair_scores': update pair_gaps")
    gaps = [dates[b] - dates[a] for _, a, b in pairs]
    return np.array([g.days if pd.notna(g) else np.nan for g in gaps], dtype=float)


def _earlier_records(store: BeatStore, persons: np.ndarray) -> set[str]:
    """Every record of the given persons (their earliest ones are never a pair's later record)."""
    index = store.index
    return set(index.loc[index["person"].astype(str).isin(set(persons)), "record"])


def wilson_interval(hits: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a proportion: a bin of ten pairs says little, and this
    says how little (it treats pairs as independent, which pairs of one person are not)."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]


def gap_figures(hit: np.ndarray, genuine: np.ndarray, impostor: np.ndarray, gaps: np.ndarray):
    """Rank-1 and EER of each gap bin (and of the undated probes)."""
    rows: list[dict[str, Any]] = []
    masks = [(label, (gaps >= lo) & (gaps <= hi)) for label, lo, hi in BINS]
    masks.append(("no date", np.isnan(gaps)))
    for label, mask in masks:
        if not mask.any():
            continue
        hits, n = int(hit[mask].sum()), int(mask.sum())
        rows.append(
            {
                "gap": label,
                "pairs": n,
                "rank1": hits / n,
                "rank1_ci": wilson_interval(hits, n),
                "eer": float(eer(genuine[mask], impostor).eer),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=WORK / "default-store-100hz-I")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="run directory or default")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = default)")
    parser.add_argument("--results", type=Path, default=RESULTS / "pairs-by-gap.json")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    store = BeatStore.open(args.store)
    run = load_run(args.model)
    val = make_split(store, run.train_config.protocol, val_fraction=0.0).val
    overall, ps = evaluate_pairs(run.model, store, val)
    gaps = pair_gaps(store, ps.hit_person, ps.hit_record)
    rows = gap_figures(ps.hit, ps.genuine, ps.impostor, gaps)
    for row in rows:
        low, high = row["rank1_ci"]
        print(
            f"{row['gap']:>12}: {row['pairs']:4d} pairs, rank-1 {row['rank1']:.3f} "
            f"({low:.2f}-{high:.2f}), EER {row['eer']:.3f}"
        )
    payload = {"model_sha256": run.fingerprint, "all_pairs": overall, "by_gap": rows}
    write_results(
        args.results,
        payload,
        started,
        f"every (earlier, later) record pair of the validation persons in {args.store}",
        run.beat,
    )
    return payload


if __name__ == "__main__":
    main()
