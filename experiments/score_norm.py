"""Score normalisation (none, Z, T, S, adaptive S-norm): what each does to EER and rank-1.

The cohort is the gallery's other persons (see ``ecgbio.evaluate.gallery_cohort_norm``). Two
databases, one model (trained on the PTB-XL subset, lead I, 100 Hz):

* PTB-XL subset, protocol ``unseen`` (104 held-out patients): validation-type data, the only one
  the default normalisation is chosen on (rule: :data:`RULE`);
* ECG-ID, protocol ``enrol-probe`` (89 persons): a test database, reported, never tuned on.

    python -m experiments.ptbxl_unseen --rate 100 --leads I     # makes the model, if absent
    python -m experiments.score_norm --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ecgbio.evaluate import NORMS, evaluate_run
from ecgbio.runs import load_run
from experiments._common import RESULTS, WORK, write_results

#: Written before the measurement: a normalisation replaces plain cosine only if it clearly helps.
RULE = (
    "on PTB-XL (unseen): the lowest EER among the normalisations whose EER is at least 10 % "
    "(relative) below plain cosine's and whose rank-1 is not lower than plain cosine's; "
    "otherwise 'none'"
)
KEYS = ("rank1", "rank5", "eer", "eer_ci", "tar@far=0.01", "tar@far=0.001", "auc")
SIZES = ("persons", "probes", "genuine_scores", "impostor_scores")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=WORK / "run-ptbxl-unseen-100hz-I")
    parser.add_argument("--ptbxl-store", type=Path, default=WORK / "ptbxl-100hz-I")
    parser.add_argument("--ecgid-store", type=Path, default=WORK / "ecgid-100hz")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = default)")
    parser.add_argument("--results", type=Path, default=RESULTS / "score-norm.json")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    run = load_run(args.model)
    databases = {
        "ptbxl": (args.ptbxl_store, "unseen"),
        "ecgid": (args.ecgid_store, "enrol-probe"),
    }
    table: dict[str, Any] = {}
    for name, (store, protocol) in databases.items():
        table[name] = {"store": str(store), "protocol": protocol}
        for norm in NORMS:
            figures = evaluate_run(args.model, store, protocol, norm=norm)
            table[name][norm] = _summary(figures)
            print(f"{name:6s} {norm:4s} " + _line(table[name][norm]))
    chosen, why = choose(table["ptbxl"])
    payload = {
        "figures": table,
        "cohort": "the gallery's other persons (both persons of a comparison left out)",
        "rule": RULE,
        "chosen": chosen,
        "why": why,
        "model": str(args.model),
    }
    print(f"default norm: {chosen} ({why})")
    data = f"PTB-XL subset (CC BY 4.0) at {args.ptbxl_store}, ECG-ID (ODC-By) at {args.ecgid_store}"
    write_results(args.results, payload, started, data, run.beat)
    return payload


def choose(ptbxl: dict[str, Any]) -> tuple[str, str]:
    """Apply :data:`RULE` to the PTB-XL figures; returns (norm, the reason in words)."""
    base = ptbxl["none"]
    passing = [
        n
        for n in NORMS[1:]
        if ptbxl[n]["eer"] <= 0.9 * base["eer"] and ptbxl[n]["rank1"] >= base["rank1"]
    ]
    if not passing:
        return "none", (
            f"no normalisation lowered PTB-XL's EER by 10 % or more without losing rank-1 "
            f"(plain cosine: EER {base['eer']:.1%}, rank-1 {base['rank1']:.1%})"
        )
    best = min(passing, key=lambda n: ptbxl[n]["eer"])
    return best, (
        f"PTB-XL EER {ptbxl[best]['eer']:.1%} vs {base['eer']:.1%} for plain cosine, rank-1 "
        f"{ptbxl[best]['rank1']:.1%} vs {base['rank1']:.1%}; lowest EER among {passing}"
    )


def _summary(figures: dict[str, Any]) -> dict[str, Any]:
    out = {k: figures[k] for k in (*KEYS, *SIZES)}
    if "other_day" in figures:
        out["other_day"] = {k: figures["other_day"][k] for k in (*KEYS, *SIZES)}
    out["by_enrol_beats"] = figures.get("by_enrol_beats")
    return out


def _line(f: dict[str, Any]) -> str:
    low, high = f["eer_ci"]
    return (
        f"rank-1 {f['rank1']:.3f} rank-5 {f['rank5']:.3f} EER {f['eer']:.3f} "
        f"[{low:.3f}, {high:.3f}] TAR@1% {f['tar@far=0.01']:.3f} AUC {f['auc']:.4f}"
    )


if __name__ == "__main__":
    main()
