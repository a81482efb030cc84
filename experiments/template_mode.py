"""Several templates per person (one per enrolled record) or one mean template: which identifies better?

Persons of a database the model never saw (default: ECG-ID, with a model trained on the PTB-XL subset)
with >= 3 records: the first two records are enrolled, every later record is a probe. "each" scores a
person by the best of their record templates; "mean" by one template, the normalised mean of them.
The gallery's default (`ecgbio.gallery`, template_mode) follows this measurement.

    python -m experiments.ptbxl_unseen --rate 100 --leads I     # makes the model, if absent
    python -m experiments.template_mode
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ecgbio.embed import embed_rows, record_templates
from ecgbio.evaluate import match_figures
from ecgbio.provenance import SHARED_DATA
from ecgbio.runs import load_run
from experiments._common import RESULTS, WORK, ecgid_store, write_results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=WORK / "run-ptbxl-unseen-100hz-I")
    parser.add_argument("--root", type=Path, default=SHARED_DATA / "ecg-id-database-1.0.0")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--enrolled", type=int, default=2, help="records enrolled per person")
    parser.add_argument("--results", type=Path, default=RESULTS / "template-mode-ecgid.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    run = load_run(args.model)
    store = ecgid_store(args.root, args.work, run.beat, progress=False)
    records = store.records[store.records["status"] == "ok"].copy()
    records["order"] = records["order"].astype(int)
    records = records.sort_values(["person", "session", "order"])
    rows_of = store.index.groupby("record").indices
    person_of = dict(zip(records["record"], records["person"], strict=True))
    chosen = records.groupby("person").filter(lambda g: len(g) > args.enrolled)
    enrol = chosen.groupby("person").head(args.enrolled)["record"].tolist()
    probe = chosen.loc[~chosen["record"].isin(set(enrol)), "record"].tolist()

    def templates(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        rows = np.concatenate([np.sort(rows_of[r]) for r in names])
        emb = embed_rows(run.backbone, store, rows)
        ids, temps = record_templates(emb, store.index["record"].to_numpy()[rows])
        return np.array([person_of[r] for r in ids]), temps

    g_persons, g_temps = templates(enrol)
    p_persons, p_temps = templates(probe)
    each = match_figures(p_temps @ g_temps.T, g_persons, p_persons)
    persons = np.unique(g_persons)
    means = np.stack([g_temps[g_persons == p].mean(axis=0) for p in persons])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    mean = match_figures(p_temps @ means.T, persons, p_persons)
    keys = ("rank1", "rank5", "eer", "auc", "tar@far=0.01", "persons", "probes")
    figures = {
        "each": {k: each[k] for k in keys},
        "mean": {k: mean[k] for k in keys},
        "enrolled_records_per_person": args.enrolled,
        "model": str(args.model),
    }
    print(
        f"each: rank-1 {each['rank1']:.3f} EER {each['eer']:.3f} | mean: rank-1 "
        f"{mean['rank1']:.3f} EER {mean['eer']:.3f} ({each['persons']} persons, "
        f"{each['probes']} probes)"
    )
    write_results(args.results, figures, started, f"ECG-ID at {args.root} (ODC-By)", run.beat)
    return figures


if __name__ == "__main__":
    main()
