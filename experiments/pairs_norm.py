"""Score normalisation on every (earlier, later) record pair of the validation persons, for the
shipped model and for trained variants, each against the shipped model with plain cosine.

Why: the variant trained with CinC 2017 as 8,244 extra identities ranked people better than the
shipped model and verified them worse (``docs/model-card.md``): its genuine scores spread from
one person to the next. Rank-1 depends on each probe's ordering, EER on one threshold for all;
a normalisation by each side's cohort (S-norm, adaptive S-norm) puts every comparison on its own
impostors' scale, which is what such a spread would need. Each model's pair scores are
normalised with every record of the other validation persons as cohort
(:func:`ecgbio.evaluate.gallery_cohort_norm` on the record-by-record matrix) and compared with
the shipped model's raw cosine on the same pairs (:func:`ecgbio.metrics.pairs.paired_difference`).

``--cohort training`` takes each model's training records instead (one template per record of
the store's training persons, the cohort a gallery could carry with the model), to see whether a
fixed cohort shipped with the model does what the validation persons' own records did: results
in ``pairs-norm-training-cohort.json``. ``--fusion`` adds every model together (each model's
unit beat embedding side by side, scaled to unit length: what an ensemble of them would ship;
a record's template then joins the models' mean beat embeddings). ``as-deployed`` is
adaptive S-norm as a gallery could compute it: each enrolment's cohort leaves its own person out
(known at enrolment), each probe's keeps everyone but the probe record itself (a gallery cannot
leave out a person it has not recognised yet). In every norm an enrolment's cohort leaves out the
probe of the trial at hand (:func:`ecgbio.evaluate.pair_cohort_norm`).

Rule, written before the measurement: a model and normalisation that beats the shipped model's
plain cosine on the selection score (rank-1 - EER) with a 95 % interval above 0, and is worse on
neither rank-1 nor EER, is a candidate for the next round; shipping one needs the gallery to
normalise its scores the same way, which it does not yet.

    python -m experiments.pairs_norm --threads 2 [--runs experiments/work/run-default-cinc-cpu ...]
    python -m experiments.pairs_norm --threads 2 --cohort training --fusion
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ecgbio.config import DEFAULT_MODEL
from ecgbio.embed import embed_rows, record_templates
from ecgbio.evaluate import CI_BOOT, evaluate_match, evaluate_pairs
from ecgbio.metrics.pairs import paired_difference
from ecgbio.protocols import make_split
from ecgbio.runs import load_run
from ecgbio.store import BeatStore
from experiments._common import RESULTS, WORK, write_results

NORMS = ("none", "s", "as", "as-deployed")
RUNS = ("run-default-cinc-cpu", "run-default-triplet-wide", "run-default-triplet-cpu")


def fused(parts: list[np.ndarray]) -> np.ndarray:
    """The models' unit beat embeddings side by side, scaled so the row stays a unit vector: two
    beats' cosine is the mean of the models' cosines (a record's template, the renormalised mean
    of its beats, weighs each model by the length of its mean beat embedding)."""
    return np.concatenate(parts, axis=1) / np.sqrt(len(parts))


def record_cohort(embedded: np.ndarray, store: BeatStore, rows: np.ndarray) -> np.ndarray:
    """One unit template per training record (the mean of its beats' embeddings)."""
    return record_templates(embedded, store.index["record"].to_numpy()[rows])[1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=WORK / "default-store-100hz-I")
    parser.add_argument(
        "--runs", nargs="*", type=Path, default=[WORK / r for r in RUNS], help="variant run dirs"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = default)")
    parser.add_argument(
        "--cohort",
        choices=("validation", "training"),
        default="validation",
        help="validation: the other validation persons' records; training: the training records",
    )
    parser.add_argument(
        "--fusion",
        action="store_true",
        help="also score the models together (their unit beat embeddings side by side)",
    )
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    suffix = "" if args.cohort == "validation" else "-training-cohort"
    args.results = args.results or RESULTS / f"pairs-norm{suffix}.json"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    store = BeatStore.open(args.store)
    shipped = load_run(DEFAULT_MODEL)
    split = make_split(store, shipped.train_config.protocol, val_fraction=0.0)
    val = split.val
    models = {"shipped": shipped, **{p.name.removeprefix("run-"): load_run(p) for p in args.runs}}
    embedded: dict[str, dict[str, np.ndarray]] = {}  # one embedding per model, shared by its norms
    for name, run in models.items():
        embedded[name] = {}
        evaluate_match(run.model, store, val, embeddings_out=embedded[name])
        if args.cohort == "training":
            embedded[name]["train"] = embed_rows(run.model.backbone, store, split.train)
    if args.fusion:
        embedded["fusion"] = {
            part: fused([embedded[name][part] for name in models]) for part in embedded["shipped"]
        }
    baseline = None
    rows = []
    for name, embeddings in embedded.items():
        run = models.get(name, shipped)  # fusion: its embeddings are given, the model is unused
        cohort = (
            record_cohort(embeddings["train"], store, split.train)
            if "train" in embeddings
            else None
        )
        for norm in NORMS:
            if norm == "as-deployed" and cohort is not None:
                continue  # a fixed outside cohort never needed the probe's label
            figures, scores = evaluate_pairs(
                run.model,
                store,
                val,
                CI_BOOT,
                embeddings=embeddings,
                norm=norm.removesuffix("-deployed"),
                cohort=cohort,
                blind_probes=norm.endswith("-deployed"),
            )
            if baseline is None:
                baseline = scores
            versus = paired_difference(scores, baseline, CI_BOOT)
            rows.append(
                {
                    "model": name,
                    "model_sha256": run.fingerprint if name in models else None,
                    "fused": list(models) if name not in models else None,
                    "norm": norm,
                    "cohort": args.cohort if norm != "none" else None,
                    "cohort_size": len(cohort) if cohort is not None and norm != "none" else None,
                    "pairs": figures,
                    "versus_shipped_plain": versus,
                }
            )
            print(
                f"{name:>22} {norm:>4}: rank-1 {figures['rank1']:.3f}, EER {figures['eer']:.3f}; "
                f"vs shipped plain rank-1 {versus['rank1_diff']:+.3f} "
                f"[{versus['rank1_diff_ci'][0]:+.3f}, {versus['rank1_diff_ci'][1]:+.3f}], EER "
                f"{versus['eer_diff']:+.3f} [{versus['eer_diff_ci'][0]:+.3f}, "
                f"{versus['eer_diff_ci'][1]:+.3f}]; score {versus['score_diff']:+.3f} "
                f"[{versus['score_diff_ci'][0]:+.3f}, {versus['score_diff_ci'][1]:+.3f}]",
                flush=True,
            )
    payload = {"rule": __doc__.split("Rule, written before the measurement: ")[1].split("\n\n")[0]}
    payload["rule"] = " ".join(payload["rule"].split())
    payload["rows"] = rows
    write_results(
        args.results,
        payload,
        started,
        f"{len(val.gallery)} gallery and {len(val.probe)} probe beats of the validation persons "
        f"in {args.store}",
        shipped.beat,
    )
    return payload


if __name__ == "__main__":
    main()
