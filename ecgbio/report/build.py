"""EVAL_DIR or RUN_DIR -> a report folder: PNG figures and an HTML page that shows them.

What a source gives:

* an evaluation directory (``ecgbio evaluate --out EVAL_DIR``): ``metrics.json`` and
  ``scores.npz``: the table, ROC, DET, score histograms, CMC (each with the other-day probes
  when present) and rank-1 / EER against enrolment beats (a gallery-probe evaluation without a
  readable ``scores.npz`` is refused, naming the file: its main figures would be missing);
* a run directory (``ecgbio train --out RUN_DIR``): ``config.json``, ``history.csv`` and
  ``metrics.json`` (its ``test`` block): training curves, the table and the enrolment-beats
  figure. A run keeps no comparison scores, and the report does not re-run the model to get
  them (that needs the store, torch and minutes of CPU; a report should be quick and need only
  the files): for ROC, DET, histograms and CMC run ``ecgbio evaluate --model RUN_DIR --store
  STORE --out EVAL_DIR`` (the store the run was trained on is ``store`` in its config.json) and
  report EVAL_DIR.

Every file is written atomically. The page embeds its PNGs (base64 data URIs), so index.html alone
is the whole report; the PNG files are written beside it as well, and the page last. An existing
report is refused unless ``overwrite``. A report shows an evaluation's persons' scores (biometric
data), so its files are private (0600), the page included, and so is its folder when made here
(0700).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgbio.errors import ConfigError, option
from ecgbio.io import atomic_open, atomic_write_text, private_dir
from ecgbio.metrics._validation import finite_array
from ecgbio.report import figures as fig
from ecgbio.report.page import Picture, render_page

PAGE = "index.html"
METRICS = "metrics.json"
SCORES = "scores.npz"
HISTORY = "history.csv"
CONFIG = "config.json"
#: Figures of two panels, shown across the page's width.
WIDE = frozenset({"training.png"})
#: How the page names each score normalisation (``ecgbio evaluate --norm``).
NORM_NAMES = {
    "none": "raw cosine scores (no normalisation)",
    "z": "z-norm (cosine scores standardised by each enrolment template's cohort scores)",
    "t": "t-norm (cosine scores standardised by each probe's cohort scores)",
    "s": "s-norm (mean of the z-norm and t-norm scores)",
    "as": "adaptive s-norm (s-norm over each side's highest cohort scores)",
}


def norm_name(norm: Any) -> str:
    """The page's words for a score normalisation (an unknown name is shown as it is)."""
    return NORM_NAMES.get(str(norm), f"{norm} normalisation")


def enrol_beats_name(k: Any) -> str:
    """``enrol_beats`` as the page says it: 0 means every beat of the enrolment record."""
    if isinstance(k, int) and not isinstance(k, bool):
        return "all beats" if k == 0 else f"first {k} beats of the enrolment record"
    return str(k)


@dataclass
class Report:
    """What :func:`make_report` wrote."""

    source: str
    kind: str  # "evaluation" or "run"
    out: str
    page: str
    pictures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"report of {self.kind} {self.source}: {self.page}",
            f"{len(self.pictures)} figures: {', '.join(self.pictures) or 'none'}",
        ]


def make_report(
    source: str | Path, out: str | Path | None = None, overwrite: bool = False
) -> Report:
    """Draw the figures of an evaluation or run directory and write ``out/index.html``.

    Args:
        source: EVAL_DIR (metrics.json + scores.npz) or RUN_DIR (config.json, history.csv,
            metrics.json); see the module docstring for what each gives.
        out: report folder (default ``source/report``).
        overwrite: replace an existing report (its page and the PNGs this report draws).
    """
    src = Path(source)
    if not src.is_dir():
        raise ConfigError("no such evaluation or run directory", src)
    metrics = _read_metrics(src)
    is_run = (src / CONFIG).is_file() or (src / HISTORY).is_file()
    headline = metrics.get("test", {}) if is_run else metrics
    if out is None and _inside_package(src):
        raise ConfigError("this folder is part of the installed ecgbio package; choose --out", src)
    target = Path(out) if out is not None else src / "report"
    if (target / PAGE).exists() and not overwrite:
        raise ConfigError(
            f"a report already exists here (use {option('--overwrite', 'overwrite=True')} to "
            "replace it)",
            target,
        )

    try:  # files edited by hand or from another version: one clear line, not a traceback
        pictures, page = _draw(src, target, metrics, headline, is_run)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ConfigError(
            f"malformed evaluation files ({type(exc).__name__}: {exc}); re-run ecgbio evaluate",
            src,
        ) from None
    atomic_write_text(target / PAGE, page, private=True)
    return Report(
        str(src),
        "run" if is_run else "evaluation",
        str(target),
        str(target / PAGE),
        [p[0] for p in pictures],
    )


def _draw(
    src: Path, target: Path, metrics: dict[str, Any], headline: Any, is_run: bool
) -> tuple[list[Drawn], str]:
    """Write the PNGs and return them with the page's HTML (written last, by the caller)."""
    if not isinstance(headline, dict):
        raise TypeError("the headline figures are not an object")
    pictures = [
        *_score_pictures(src / SCORES, needed=not is_run and "eer" in headline),
        *_training_pictures(src / HISTORY),
        *_enrol_pictures(headline),
    ]
    private_dir(target)
    pngs = {}
    for name, figure, _, _ in pictures:
        pngs[name] = fig.png_bytes(figure)
        with atomic_open(target / name, "wb", private=True) as handle:
            handle.write(pngs[name])
    rows = [("all probes", headline)] if headline else []
    if isinstance(headline.get("other_day"), dict):
        rows.append(("other-day probes", headline["other_day"]))
    page = render_page(
        f"ecgbio report: {src.resolve().name}",
        _facts(src, metrics, headline, is_run),
        rows,
        [
            Picture(name, title, caption, pngs[name], wide=name in WIDE)
            for name, _, title, caption in pictures
        ],
    )
    return pictures, page


def _inside_package(path: Path) -> bool:
    """The shipped model's folder (and any other in the package) is not a place to write."""
    package = Path(__file__).resolve().parents[1]
    return path.resolve().is_relative_to(package)


def _read_metrics(src: Path) -> dict[str, Any]:
    path = src / METRICS
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            "no metrics.json: not an evaluation (ecgbio evaluate --out) or run directory", src
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"unreadable metrics.json ({exc})", path) from None
    if not isinstance(data, dict):
        raise ConfigError("metrics.json does not hold an object", path)
    return data


def _facts(
    src: Path, metrics: dict[str, Any], headline: dict[str, Any], is_run: bool
) -> dict[str, Any]:
    keys = ("protocol", "model", "store", "norm", "enrol_beats", "best_epoch", "epochs_run")
    facts = {"source": str(src)}
    facts.update({k: metrics[k] for k in keys if k in metrics})
    if "norm" in headline and "norm" not in facts:
        facts["norm"] = headline["norm"]
    if "norm" in facts:
        facts["norm"] = norm_name(facts["norm"])
    if "enrol_beats" in facts:
        facts["enrol_beats"] = enrol_beats_name(facts["enrol_beats"])
    if is_run and not (src / SCORES).is_file():
        facts["scores"] = (
            "a run keeps no comparison scores: ecgbio evaluate --model RUN --store STORE --out "
            "EVAL, then ecgbio report EVAL, for ROC, DET, histograms and CMC"
        )
    return facts


Drawn = tuple[str, Any, str, str]  # file name, Figure, title, caption


#: the arrays of ``scores.npz`` the figures draw (``other_day_`` ones: all or none)
SCORE_ARRAYS = ("genuine", "impostor", "cmc")


def _load_scores(path: Path) -> dict[str, np.ndarray]:
    """``scores.npz``'s arrays, each checked (non-empty finite 1-D numbers, a finite threshold):
    a damaged or hand-made file is refused in one line naming it, not drawn as a blank figure."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a plain .npy: one array, no keys
            raise ValueError("a single array, not an .npz archive")
        with loaded as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"unreadable scores file ({detail}); re-run ecgbio evaluate", path
        ) from None
    missing = {*SCORE_ARRAYS, "eer_threshold"} - set(arrays)
    if missing:
        raise ConfigError(f"scores file lacks {', '.join(sorted(missing))}", path)
    other_day = [f"other_day_{k}" for k in SCORE_ARRAYS]
    if any(k in arrays for k in other_day) and not all(k in arrays for k in other_day):
        lacking = ", ".join(k for k in other_day if k not in arrays)
        raise ConfigError(f"scores file has other-day scores but lacks {lacking}", path)
    try:
        for key in [*SCORE_ARRAYS, *(k for k in other_day if k in arrays)]:
            arrays[key] = finite_array(arrays[key], f"{key} scores", 1)
        threshold = finite_array(
            arrays["eer_threshold"], "eer_threshold", arrays["eer_threshold"].ndim
        )
        if threshold.size != 1:
            raise ConfigError(f"eer_threshold must be one number, got shape {threshold.shape}")
    except ConfigError as exc:
        raise ConfigError(f"bad scores file: {exc}; re-run ecgbio evaluate", path) from None
    arrays["eer_threshold"] = threshold.reshape(())
    return arrays


def _score_pictures(path: Path, needed: bool) -> list[Drawn]:
    """ROC, DET, histograms and CMC from ``scores.npz``; none without it, unless ``needed`` (an
    evaluation of gallery-probe figures: `ecgbio evaluate` always writes it beside them, so a
    missing one is a damaged folder, and a report without its main figures is refused rather
    than passed off as complete). A classification evaluation and a run have no scores."""
    if path.exists() and not path.is_file():
        raise ConfigError("scores file is not a file; re-run ecgbio evaluate", path)
    if not path.is_file():
        if needed:
            raise ConfigError(
                "missing: the ROC, DET, score histogram and CMC of this evaluation are drawn "
                "from it; re-run ecgbio evaluate --out",
                path,
            )
        return []
    a = _load_scores(path)
    pairs = {"all probes": (a["genuine"], a["impostor"])}
    cmcs = {"all probes": a["cmc"]}
    if "other_day_genuine" in a:
        pairs["other-day probes"] = (a["other_day_genuine"], a["other_day_impostor"])
        cmcs["other-day probes"] = a["other_day_cmc"]
    norm = f" Scores: {norm_name(a['norm'])}." if "norm" in a else ""
    return [
        (
            "roc.png",
            fig.roc_figure(pairs),
            "ROC",
            "True accept rate against false accept rate (log scale), one point per threshold; "
            "higher and further left is better." + norm,
        ),
        (
            "det.png",
            fig.det_figure(pairs),
            "DET",
            "False reject against false accept rate on normal-deviate axes (ticks in %); closer to "
            "the lower left is better, and the EER is where the curve crosses the dotted diagonal.",
        ),
        (
            "scores.png",
            fig.histogram_figure(a["genuine"], a["impostor"], float(a["eer_threshold"])),
            "Score distributions",
            "Densities of genuine (same person) and impostor comparison scores; the dashed line is "
            "the EER threshold: impostors right of it are false accepts, genuines left of it false "
            "rejects.",
        ),
        (
            "cmc.png",
            fig.cmc_figure(cmcs),
            "CMC",
            "Share of probes whose person is among the top k gallery matches; rank 1 is "
            "identification accuracy.",
        ),
    ]


def _training_pictures(path: Path) -> list[Drawn]:
    if not path.is_file():
        return []
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"unreadable training history ({exc})", path) from None
    if "epoch" not in history or history.empty:
        raise ConfigError("training history has no epochs", path)
    caption = (
        "Per epoch: training losses (left); training accuracy and the validation figures the "
        "model was selected on (right, in %)."
    )
    if "val_pairs_rank1" in history or "val_pairs_eer" in history:
        caption += (
            " 'Record pairs' (dash-dotted): the same figures over every (earlier, later) record "
            "pair of a validation person, which the epoch was chosen on."
        )
    saturated = fig.saturated_curves(history)
    if saturated:
        caption += (
            f" Saturated ({', '.join(saturated)}): at the best value (100 %, an EER 0 %) at every "
            "epoch, so they cannot tell epochs apart; lines on top of each other are told apart "
            "by their markers."
        )
    return [("training.png", fig.training_figure(history), "Training curves", caption)]


def _enrol_pictures(headline: dict[str, Any]) -> list[Drawn]:
    by_k = headline.get("by_enrol_beats")
    if not isinstance(by_k, dict) or not by_k:
        return []
    return [
        (
            "enrol_beats.png",
            fig.enrol_beats_figure(by_k),
            "Enrolment beats",
            "Rank-1 and EER when each gallery template is the mean of only the first k beats of "
            "the enrolment record ('all': every beat).",
        ),
    ]
