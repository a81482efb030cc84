"""The report's figures: plain functions from arrays to a matplotlib Figure, saved as PNG.

Each function returns the :class:`~matplotlib.figure.Figure` (not pyplot state), so tests can read
its axes (titles, line labels) before it is saved, and no display or GUI backend is ever touched:
figures are rendered by the Agg canvas. Rates are drawn in % as people read them, and every axis
ticks in plain numbers (``0.1 %``, ``1 %``; ranks ``1, 2, 5, 10``), never as powers of ten.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter
from scipy.special import ndtri

from ecgbio.metrics.verification import roc

#: DET axis ticks (error rates in %): the normal-deviate scale of Martin et al. (1997).
DET_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40)
#: Rates are clipped into [DET_LIMITS] before the probit (0 % and 100 % are at infinity).
DET_LIMITS = (0.0005, 0.5)
SIZE = (5.0, 4.0)
#: CMC rank ticks (1-2-5 steps); those up to the gallery size are drawn.
RANK_TICKS = tuple(m * 10**e for e in range(6) for m in (1, 2, 5))

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]  # label -> (genuine, impostor)


def _figure(size: tuple[float, float] = SIZE) -> Figure:
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure rendered as PNG (Agg), ready for an atomic write."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def roc_figure(curves: Curves) -> Figure:
    """TAR against FAR (log FAR axis: the operating points that matter are at low FAR)."""
    fig = _figure()
    ax = fig.add_subplot()
    floor = 100.0
    for label, (genuine, impostor) in curves.items():
        curve = roc(genuine, impostor)
        far = np.maximum(curve.far, 0.5 / impostor.size)  # FAR 0 would be off a log axis
        ax.step(far * 100, curve.tar * 100, where="post", label=label)
        floor = min(floor, float(far.min()) * 100)
    ax.set_xscale("log")
    ax.set_xlim(10 ** np.floor(np.log10(floor)), 100 * 1.15)  # from a whole decade: 0.1 %, 1 %
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(_percent))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("false accept rate FAR (log scale)")
    ax.set_ylabel("true accept rate TAR (%)")
    ax.set_title("ROC")
    ax.set_ylim(0, 101)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def _percent(value: float, _position: object = None) -> str:
    """A tick in plain percent: 0.1 %, 1 %, 10 %, 100 % (no 10^-1)."""
    return f"{value:g} %"


def _probit(rate: np.ndarray) -> np.ndarray:
    """Normal deviate of a rate (the DET axes), clipped so that 0 and 1 stay on the plot."""
    return ndtri(np.clip(rate, *DET_LIMITS))


def det_figure(curves: Curves) -> Figure:
    """FRR against FAR on normal-deviate (probit) axes, ticks in %; the EER is where it meets y=x.

    On probit axes two normal score distributions give a straight line, so the curve's shape
    says how far the scores are from normal and its distance from the origin how good the system is.
    """
    fig = _figure()
    ax = fig.add_subplot()
    for label, (genuine, impostor) in curves.items():
        curve = roc(genuine, impostor)
        ax.plot(_probit(curve.far), _probit(curve.frr), label=label, drawstyle="steps-post")
    ticks = _probit(np.array(DET_TICKS) / 100)
    labels = [f"{t:g}" for t in DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    lo, hi = _probit(np.array(DET_LIMITS))
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":", label="FAR = FRR")
    ax.set_xlabel("false accept rate FAR (%)")
    ax.set_ylabel("false reject rate FRR (%)")
    ax.set_title("DET")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    return fig


def histogram_figure(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> Figure:
    """Genuine and impostor score densities with the decision threshold drawn across them."""
    fig = _figure()
    ax = fig.add_subplot()
    bins = np.histogram_bin_edges(np.concatenate((genuine, impostor)), bins=50)
    ax.hist(impostor, bins=bins, density=True, alpha=0.55, label=f"impostor ({impostor.size})")
    ax.hist(genuine, bins=bins, density=True, alpha=0.55, label=f"genuine ({genuine.size})")
    ax.axvline(threshold, color="black", ls="--", label=f"EER threshold {threshold:.3g}")
    ax.set_xlabel("comparison score")
    ax.set_ylabel("density")
    ax.set_title("Genuine and impostor scores")
    ax.legend(loc="upper left")
    return fig


def cmc_figure(curves: Mapping[str, np.ndarray]) -> Figure:
    """Identification rate against rank (cumulative match characteristic)."""
    fig = _figure()
    ax = fig.add_subplot()
    for label, curve in curves.items():
        ranks = np.arange(1, curve.size + 1)
        ax.step(ranks, curve * 100, where="post", label=label)
    ax.set_xscale("log")
    size = max((curve.size for curve in curves.values()), default=1)
    ax.xaxis.set_major_locator(FixedLocator([t for t in RANK_TICKS if t <= max(size, 1)]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("rank (log scale)")
    ax.set_ylabel("identification rate (%)")
    ax.set_ylim(0, 101)
    ax.set_title("CMC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


#: The training figure's right panel, in drawing order: history column -> (legend label, style).
#: Validation curves often coincide (an easy validation set holds rank-1, rank-5 and AUC at 100 %
#: together), so each has its own marker, hollow, and the widths nest (the first drawn is the
#: widest), so that lines on top of each other stay visible. The ``pairs`` columns are the same
#: figures over every (earlier, later) record pair of a validation person (the epoch is chosen
#: on them); they share their counterpart's colour, dash-dotted.
RATE_CURVES: dict[str, tuple[str, dict[str, Any]]] = {
    "accuracy": ("training accuracy", {"color": "black", "ls": "-", "lw": 1.5}),
    "val_accuracy": ("val accuracy", {"color": "C0", "ls": "--", "marker": "o", "lw": 1.5}),
    "val_rank1": ("val rank-1", {"color": "C0", "ls": "-", "marker": "o", "lw": 4.0, "ms": 9}),
    "val_pairs_rank1": (
        "val rank-1, record pairs",
        {"color": "C0", "ls": "-.", "marker": "x", "lw": 1.5, "ms": 6},
    ),
    "val_rank5": ("val rank-5", {"color": "C1", "ls": "--", "marker": "^", "lw": 2.5, "ms": 7}),
    "val_auc": ("val AUC", {"color": "C4", "ls": ":", "marker": "D", "lw": 1.5, "ms": 4}),
    "val_eer": ("val EER", {"color": "C3", "ls": "-", "marker": "s", "lw": 2.5, "ms": 7}),
    "val_pairs_eer": (
        "val EER, record pairs",
        {"color": "C3", "ls": "-.", "marker": "+", "lw": 1.5, "ms": 7},
    ),
}
#: Columns whose best value is 0 (an error rate); the others are best at 1.
LOWER_IS_BETTER = frozenset({"val_eer", "val_pairs_eer"})
#: At most this many markers per curve (longer runs mark every k-th epoch, staggered by curve).
MARKERS = 15


def saturated_curves(history: pd.DataFrame) -> list[str]:
    """Legend labels of the right-panel curves that sit at their best value (100 %, or 0 % for an
    EER) at every epoch: they say nothing about which epoch is better, and they overlap."""
    out = []
    for column, (label, _) in RATE_CURVES.items():
        if column in history:
            values = pd.to_numeric(history[column], errors="coerce").dropna().to_numpy(float)
            best = 0.0 if column in LOWER_IS_BETTER else 1.0
            if values.size and np.allclose(values, best, rtol=0, atol=1e-9):
                out.append(label)
    return out


def training_figure(history: pd.DataFrame) -> Figure:
    """Per-epoch losses (left) and accuracy / validation figures (right) of a training run;
    right-panel curves at their best value throughout are marked "saturated" in the legend."""
    fig = _figure((10.0, 4.0))
    loss_ax, rate_ax = fig.subplots(1, 2)
    epochs = history["epoch"]
    for column in ("loss", "softmax_loss", "metric_loss", "val_loss"):
        if column in history:
            loss_ax.plot(epochs, history[column], label=column)
    loss_ax.set_title("Training losses")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    saturated = set(saturated_curves(history))
    step = max(1, -(-len(epochs) // MARKERS))
    for i, (column, (label, style)) in enumerate(
        (c, v) for c, v in RATE_CURVES.items() if c in history
    ):
        if label in saturated:
            label += f" (saturated at {0 if column in LOWER_IS_BETTER else 100} %)"
        extra = {"mfc": "none", "markevery": (i % step, step)} if "marker" in style else {}
        rate_ax.plot(epochs, history[column] * 100, label=label, **style, **extra)
    rate_ax.set_title("Accuracy and validation")
    rate_ax.set_xlabel("epoch")
    rate_ax.set_ylabel("%")
    rate_ax.set_ylim(-4, 104)
    for ax in (loss_ax, rate_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if loss_ax.get_lines():
        loss_ax.legend(fontsize="small")
    if rate_ax.get_lines():
        rate_ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig


def enrol_beats_figure(by_enrol_beats: Mapping[str, Mapping[str, float]]) -> Figure:
    """Rank-1 and EER against the number of beats each gallery template is built from."""
    fig = _figure()
    ax = fig.add_subplot()
    keys = sorted(by_enrol_beats, key=lambda k: (k == "all", int(k) if k != "all" else 0))
    x = np.arange(len(keys))
    ax.plot(x, [by_enrol_beats[k]["rank1"] * 100 for k in keys], marker="o", label="rank-1")
    ax.plot(x, [by_enrol_beats[k]["eer"] * 100 for k in keys], marker="s", label="EER")
    ax.set_xticks(x, keys)
    ax.set_xlabel("enrolment beats per template")
    ax.set_ylabel("%")
    ax.set_ylim(0, 101)
    ax.set_title("Rank-1 and EER vs enrolment beats")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig
