"""Can a linear map learned from the multi-record persons remove what changes between sessions?

The only cross-session examples here are the validation persons' records (PTB-XL patients with
several records, MIT-BIH's 201/202). This recipe deals them into 5 folds; on 4 folds it fits the
within-person scatter of record templates across sessions (each record's deviation from its
person's mean template) and on the 5th it scores every (earlier, later) record pair with the
templates mapped by

- ``nap-K``: nuisance attribute projection (removes the K directions of largest session scatter;
  Solomonoff et al., speaker verification), or
- ``wccn-L``: within-class covariance normalisation (whitens the session scatter, ridge L times
  its largest eigenvalue; Hatch et al.).

The five held-out folds are pooled and compared with plain cosine on the same pairs
(:func:`ecgbio.metrics.pairs.paired_difference`). No model is trained; ECG-ID is not touched.

    python -m experiments.session_projection                 # the shipped model
    python -m experiments.session_projection --model RUN_DIR

Results: experiments/results/session-projection.json.
"""

from __future__ import annotations

import time

import numpy as np

from ecgbio.config import DEFAULT_MODEL, BeatConfig
from ecgbio.embed import embed_rows, record_templates
from ecgbio.evaluate import CI_BOOT
from ecgbio.metrics.pairs import PairScores, pair_figures, pair_scores, paired_difference
from ecgbio.protocols import general_split, record_order
from ecgbio.provenance import SHARED_DATA
from ecgbio.runs import load_run
from ecgbio.store import BeatStore
from experiments._common import base_parser, cached_store, default_results, write_results

FOLDS = 5
METHODS = {"nap": (1, 2, 4, 8, 16), "wccn": (0.1, 0.03, 0.01)}


def session_scatter(templates: np.ndarray, persons: np.ndarray) -> np.ndarray:
    """Covariance of each record template around its person's mean (persons of >= 2 records)."""
    parts = [
        templates[persons == p] - templates[persons == p].mean(0)
        for p in np.unique(persons)
        if (persons == p).sum() > 1
    ]
    deviations = np.concatenate(parts)
    return deviations.T @ deviations / len(deviations)


def projection(scatter: np.ndarray, method: str, param: float) -> np.ndarray:
    """The linear map of ``method`` (``nap``: K directions removed; ``wccn``: ridge share)."""
    values, vectors = np.linalg.eigh(scatter)
    if method == "nap":
        top = vectors[:, -int(param) :]
        return np.eye(len(scatter)) - top @ top.T
    ridge = values + param * values.max()
    return vectors @ np.diag(1 / np.sqrt(ridge)) @ vectors.T


def concat(parts: list[PairScores]) -> PairScores:
    fields = PairScores.__dataclass_fields__
    return PairScores(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in fields})


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__, SHARED_DATA / "ptb-xl-subset")
    parser.add_argument("--mitdb", default=str(SHARED_DATA / "mitdb"))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    run = load_run(args.model)
    from experiments.train_default import training_records

    args.cinc, args.rate = (
        "none",
        run.beat.rate,
    )  # the model's own beats, as train_default cuts them
    window = (run.beat.before_s, run.beat.after_s)
    tag = "" if window == (BeatConfig.before_s, BeatConfig.after_s) else "-{}-{}s".format(*window)
    store: BeatStore = cached_store(
        lambda: training_records(args, len(run.beat.leads)),
        args.work / f"default-store-{run.beat.rate}hz-{'-'.join(run.beat.leads)}{tag}",
        run.beat,
        args.workers,
        not args.quiet,
        {"kind": "ptbxl+mitdb", "ptbxl": str(args.root), "mitdb": str(args.mitdb)},
    )
    order = record_order(store)
    person_of = dict(zip(store.index["record"], store.index["person"], strict=True))
    folds = []
    for k in range(FOLDS):
        val = general_split(store, folds=FOLDS, fold=k).val
        rows = np.concatenate([val.gallery, val.probe])
        emb = embed_rows(run.model.backbone, store, rows)
        ids, templates = record_templates(emb, store.index["record"].to_numpy()[rows])
        persons = np.array([person_of[r] for r in ids])
        folds.append((templates, persons, np.array([order[r] for r in ids])))
    plain = concat([pair_scores(*f) for f in folds])
    figures: dict = {"plain": pair_figures(plain, CI_BOOT), "methods": {}}
    for method, params in METHODS.items():
        for param in params:
            parts = []
            for k, (templates, persons, rank) in enumerate(folds):
                fit = [f for j, f in enumerate(folds) if j != k]
                scatter = session_scatter(
                    np.concatenate([f[0] for f in fit]), np.concatenate([f[1] for f in fit])
                )
                mapped = templates @ projection(scatter, method, param)
                mapped /= np.linalg.norm(mapped, axis=1, keepdims=True)
                parts.append(pair_scores(mapped, persons, rank))
            scores = concat(parts)
            name = f"{method}-{param:g}"
            figures["methods"][name] = {
                **pair_figures(scores, 0),
                "versus_plain": paired_difference(scores, plain, CI_BOOT),
            }
            d = figures["methods"][name]["versus_plain"]
            print(
                f"{name:>10}: rank-1 {d['rank1_diff']:+.3f} [{d['rank1_diff_ci'][0]:+.3f}, "
                f"{d['rank1_diff_ci'][1]:+.3f}], EER {d['eer_diff']:+.3f} "
                f"[{d['eer_diff_ci'][0]:+.3f}, {d['eer_diff_ci'][1]:+.3f}] against plain cosine"
            )
    figures["model"] = args.model
    figures["model_sha256"] = run.fingerprint
    path = default_results(args, "session-projection")
    if path:
        data = f"PTB-XL at {args.root} (CC BY 4.0) + MIT-BIH at {args.mitdb} (ODC-By 1.0)"
        write_results(path, figures, started, data, run.beat)
    return figures


if __name__ == "__main__":
    main()
