"""Score normalisation (none, Z, T, S, adaptive S-norm): what each does to EER and rank-1.

The cohort is the gallery's other persons (see ``ecgbio.evaluate.gallery_cohort_norm``: each
enrolment's and each probe's cohort leaves its own person out). Three measurements:

* ``validation``: the default model on its own validation persons (protocol ``general``: persons
  with several records, never trained on, enrolled from their earliest record and probed with the
  later ones): the only one the default normalisation is chosen on (rule: :data:`RULE`);
* ``ptbxl_unseen``: the PTB-XL ``unseen`` run on its 104 test patients: reported, never tuned on;
* ``ecgid``: the default model on ECG-ID (``enrol-probe``, 89 persons): reported, never tuned on.

    python -m experiments.train_default --install     # the default model and its store
    python -m experiments.ptbxl_unseen --rate 100 --leads I
    python -m experiments.score_norm --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecgbio.config import DEFAULT_MODEL
from ecgbio.evaluate import CI_BOOT, NORMS, evaluate_match, evaluate_run
from ecgbio.protocols import make_split
from ecgbio.runs import load_run, model_dir
from ecgbio.store import BeatStore
from experiments._common import RESULTS, WORK, write_results

#: Written before the measurement: a normalisation replaces plain cosine only if it clearly helps.
RULE = (
    "on the default model's validation persons: the lowest EER among the normalisations whose "
    "EER is at least 10 % (relative) below plain cosine's and whose rank-1 is not lower than plain cosine's; "
    "otherwise 'none'"
)
KEYS = ("rank1", "rank5", "eer", "eer_ci", "tar@far=0.01", "tar@far=0.001", "auc")
SIZES = ("persons", "probes", "genuine_scores", "impostor_scores")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="run dir or 'default'")
    parser.add_argument("--model-store", type=Path, default=WORK / "default-store-100hz-I")
    parser.add_argument("--unseen-model", type=Path, default=WORK / "run-ptbxl-unseen-100hz-I")
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
    model_store = BeatStore.open(args.model_store)
    val = make_split(model_store, run.train_config.protocol, val_fraction=0.0).val
    measurements: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
        "validation": (
            f"{args.model} on its validation persons ({args.model_store})",
            lambda norm: evaluate_match(run.model, model_store, val, norm=norm, ci_boot=CI_BOOT),
        ),
        "ptbxl_unseen": (
            f"{args.unseen_model} on PTB-XL unseen test persons ({args.ptbxl_store})",
            lambda norm: evaluate_run(args.unseen_model, args.ptbxl_store, "unseen", norm=norm),
        ),
        "ecgid": (
            f"{args.model} on ECG-ID, enrol-probe ({args.ecgid_store})",
            lambda norm: evaluate_run(args.model, args.ecgid_store, "enrol-probe", norm=norm),
        ),
    }
    table: dict[str, Any] = {}
    for name, (what, measure) in measurements.items():
        table[name] = {"what": what}
        for norm in NORMS:
            table[name][norm] = _summary(measure(norm))
            print(f"{name:12s} {norm:4s} " + _line(table[name][norm]))
    chosen, why = choose(table["validation"])
    payload = {
        "figures": table,
        "cohort": "the gallery's other persons (each side's cohort leaves its own person out)",
        "rule": RULE,
        "chosen": chosen,
        "why": why,
        "model": str(model_dir(args.model)),
    }
    print(f"default norm: {chosen} ({why})")
    data = (
        f"PTB-XL subset (CC BY 4.0) + MIT-BIH (ODC-By) at {args.model_store}, PTB-XL at "
        f"{args.ptbxl_store}, ECG-ID (ODC-By) at {args.ecgid_store}"
    )
    write_results(args.results, payload, started, data, run.beat)
    return payload


def choose(ptbxl: dict[str, Any]) -> tuple[str, str]:
    """Apply :data:`RULE` to the validation figures; returns (norm, the reason in words)."""
    base = ptbxl["none"]
    passing = [
        n
        for n in NORMS[1:]
        if ptbxl[n]["eer"] <= 0.9 * base["eer"] and ptbxl[n]["rank1"] >= base["rank1"]
    ]
    if not passing:
        return "none", (
            f"no normalisation lowered the validation EER by 10 % or more without losing rank-1 "
            f"(plain cosine: EER {base['eer']:.1%}, rank-1 {base['rank1']:.1%})"
        )
    best = min(passing, key=lambda n: ptbxl[n]["eer"])
    return best, (
        f"validation EER {ptbxl[best]['eer']:.1%} vs {base['eer']:.1%} for plain cosine, rank-1 "
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
