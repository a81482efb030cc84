"""The report's figures: plain functions from arrays to a matplotlib Figure, saved as PNG.

Each function returns the :class:`~matplotlib.figure.Figure` (not pyplot state), so tests can read
its axes (titles, line labels) before it is saved, and no display or GUI backend is ever touched:
figures are rendered by the Agg canvas. Rates are drawn in % as people read them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.special import ndtri

from ecgbio.metrics.verification import roc

#: DET axis ticks (error rates in %): the normal-deviate scale of Martin et al. (1997).
DET_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40)
#: Rates are clipped into [DET_LIMITS] before the probit (0 % and 100 % are at infinity).
DET_LIMITS = (0.0005, 0.5)
SIZE = (5.0, 4.0)

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
    for label, (genuine, impostor) in curves.items():
        curve = roc(genuine, impostor)
        far = np.maximum(curve.far, 0.5 / impostor.size)  # FAR 0 would be off a log axis
        ax.step(far * 100, curve.tar * 100, where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate FAR (%)")
    ax.set_ylabel("true accept rate TAR (%)")
    ax.set_title("ROC")
    ax.set_ylim(0, 101)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


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
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.set_ylim(0, 101)
    ax.set_title("CMC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def training_figure(history: pd.DataFrame) -> Figure:
    """Per-epoch losses (left) and accuracy / validation figures (right) of a training run."""
    fig = _figure((9.0, 3.8))
    loss_ax, rate_ax = fig.subplots(1, 2)
    epochs = history["epoch"]
    for column in ("loss", "softmax_loss", "metric_loss", "val_loss"):
        if column in history:
            loss_ax.plot(epochs, history[column], label=column)
    loss_ax.set_title("Training losses")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    for column in ("accuracy", "val_accuracy", "val_rank1", "val_rank5", "val_eer", "val_auc"):
        if column in history:
            rate_ax.plot(epochs, history[column] * 100, label=column)
    rate_ax.set_title("Accuracy and validation")
    rate_ax.set_xlabel("epoch")
    rate_ax.set_ylabel("%")
    for ax in (loss_ax, rate_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
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
