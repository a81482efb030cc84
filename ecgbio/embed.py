"""Embeddings: beats -> L2-normalised vectors -> record templates.

A record's template is the mean of its beats' normalised embeddings, normalised again: averaging
unit vectors cancels beat-to-beat noise while keeping what all beats of the person share; the
``k`` argument builds templates from the first k beats only (enrolment from few beats).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgbio.backends import EmbeddingBackend
from ecgbio.errors import ConfigError
from ecgbio.gallery.store import FINGERPRINT_VERSION, binding_fingerprint

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ecgbio.beats import Beats
    from ecgbio.records import Signal
    from ecgbio.rundir import RunInfo
    from ecgbio.store import BeatStore

# torch is imported inside the functions that need it: with an ONNX backend (ecgbio.backends) a
# whole enrolment or identification runs without it, and its import is most of a cold start.


def module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s weights live (CPU for a module without any)."""
    import torch

    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def embed_waves(backbone: nn.Module, waves: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(n, leads, samples) beats -> (n, d) unit vectors, in eval mode, float32."""
    import torch

    was_training = backbone.training
    backbone.eval()
    device = module_device(backbone)
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(waves), batch_size):
                x = torch.from_numpy(
                    np.ascontiguousarray(waves[start : start + batch_size], dtype=np.float32)
                ).to(device)
                out.append(torch.nn.functional.normalize(backbone(x).float(), dim=1).cpu().numpy())
    finally:
        backbone.train(was_training)
    if not out:
        dim = getattr(getattr(backbone, "config", None), "embedding_dim", 0)
        return np.zeros((0, dim), np.float32)
    return np.concatenate(out)


def embed_rows(
    encoder: nn.Module | EmbeddingBackend,
    store: BeatStore,
    rows: np.ndarray,
    batch_size: int = 1024,
) -> np.ndarray:
    """Embed the store's beats at ``rows`` (read in batches: the store stays on disk) with a torch
    backbone or an :class:`~ecgbio.backends.EmbeddingBackend` (``ecgbio evaluate --backend``)."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(encoder, EmbeddingBackend):
        embed = encoder.embed
        empty = np.zeros((0, encoder.dim), np.float32)
    else:

        def embed(waves: np.ndarray) -> np.ndarray:
            return embed_waves(encoder, waves, batch_size)

        empty = embed(np.zeros((0,)))
    parts = [embed(store.waves(rows[i : i + batch_size])) for i in range(0, len(rows), batch_size)]
    return np.concatenate(parts) if parts else empty


def record_templates(
    embeddings: np.ndarray, records: Sequence[str] | np.ndarray, k: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each record's (first ``k``, 0 = all) beat embeddings, renormalised.

    Returns (record ids in first-appearance order, templates (records, d)). Beats of a record are
    expected in time order, as a store keeps them.
    """
    records = np.asarray(records)
    ids, first, inverse = np.unique(records, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    ids = ids[order]
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    group = remap[inverse]
    if k:
        rank = np.zeros(len(group), np.int64)
        seen: dict[int, int] = {}
        for i, g in enumerate(group):
            rank[i] = seen.get(g, 0)
            seen[g] = rank[i] + 1
        keep = rank < k
        embeddings, group = embeddings[keep], group[keep]
    sums = np.zeros((len(ids), embeddings.shape[1]), np.float64)
    np.add.at(sums, group, embeddings)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return ids, (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def check_max_beats(max_beats: int) -> None:
    """Refuse a ``max_beats`` (``--max-beats``) that is not a count: Python would slice a negative
    one from the end, keeping all but the last beats or none of them."""
    if isinstance(max_beats, bool) or not isinstance(max_beats, (int, np.integer)):
        raise ConfigError(f"--max-beats must be a whole number of beats, got {max_beats!r:.40}")
    if max_beats < 0:
        raise ConfigError(f"--max-beats must be >= 0 (0: all beats), got {max_beats}")


#: How much of a record enrolment and identification read by default, in seconds: minutes of ECG
#: give hundreds of beats, far more than a template needs (``Embedder(read_limit_s=0)``: all).
READ_LIMIT_S = 600.0


class Embedder:
    """A trained run as a function: WFDB record -> beat embeddings -> record template.

    It cuts beats with the run's own :class:`~ecgbio.config.BeatConfig` (leads, rate, window,
    detector, normalisation), so a probe is always processed exactly like the training beats.

    ``fingerprint`` ties galleries to the model that made their templates and decides on them:
    the sha256 of :attr:`binding`, everything of the run directory that changes a score or a
    decision (:func:`model_binding`). ``weights_sha256`` is the weights' alone (what galleries made
    before fingerprint version 2 recorded). ``thresholds`` is the run's ``thresholds.json``, read
    and checked once here (None when absent), so that the operating points a gallery uses are
    the ones that were fingerprinted.

    ``backend`` picks what runs the network (:mod:`ecgbio.backends`): ``"auto"`` (ONNX Runtime
    when the run holds ``model.onnx``, else torch), ``"torch"`` or ``"onnx"``. The binding and
    fingerprint never depend on it, so a gallery enrolled with one backend opens with the other;
    ``run`` is the run's :class:`~ecgbio.rundir.RunInfo` with ONNX, the loaded
    :class:`~ecgbio.runs.Run` (model included) with torch.
    """

    def __init__(
        self,
        run_dir: str | Path,
        threads: int = 0,
        read_limit_s: float = READ_LIMIT_S,
        fs: float | None = None,
        lead: str | None = None,
        backend: str = "auto",
    ) -> None:
        from ecgbio.backends import open_backend
        from ecgbio.beats import reading_leads
        from ecgbio.gallery.thresholds import MODEL_THRESHOLDS_FILE, read_table
        from ecgbio.rundir import read_run

        info, parsed, weights = read_run(run_dir)
        #: what embeds the beats (:mod:`ecgbio.backends`); :attr:`backend` names it
        self.encoder, self.run = open_backend(info, parsed, weights, backend, threads)
        #: ``"onnx"`` or ``"torch"``: which backend ``backend`` ("auto" by default) resolved to
        self.backend = self.encoder.name
        self.beat_config = self.run.beat
        self.dim = self.run.model_config.embedding_dim
        self.thresholds_path = self.run.root / MODEL_THRESHOLDS_FILE
        self.thresholds = read_table(self.thresholds_path)
        self.weights_sha256 = self.run.fingerprint
        self.binding = model_binding(self.run, self.thresholds)
        self.fingerprint = binding_fingerprint(self.binding)
        self.fingerprint_version = FINGERPRINT_VERSION
        if not 0 <= read_limit_s < float("inf"):  # NaN too: it would read nothing, or all
            raise ConfigError(
                f"the read limit must be >= 0 seconds (0: whole records), got {read_limit_s}"
            )
        self.read_limit_s = float(read_limit_s)
        #: sampling rate (Hz) of CSV records without a time column (``--fs``); None: none given
        self.fs = fs
        #: the records' lead read in place of the model's (``--lead``: a Holter's ``ECG1``); None:
        #: the model's own leads. Results say which lead was read (:attr:`RecordEmbedding.leads`).
        self.lead = lead or None
        self.read_leads = reading_leads(self.beat_config, self.lead)  # refused early when wrong

    def reading(self, lead: str | None = None, fs: float | None = None) -> Embedder:
        """This embedder reading another lead (``--lead``) or CSVs at another rate (``--fs``):
        a shallow copy sharing the loaded network, so a service can honour both per request
        without loading the model again."""
        import copy

        from ecgbio.beats import reading_leads

        variant = copy.copy(self)
        variant.lead = lead or None
        variant.fs = fs
        variant.read_leads = reading_leads(self.beat_config, variant.lead)  # refused when wrong
        return variant

    def embed_waves(self, waves: np.ndarray) -> np.ndarray:
        """(n, leads, samples) beats -> (n, d) unit vectors, with :attr:`encoder`."""
        return self.encoder.embed(waves)

    def embed_record(self, path: str | Path | Signal, max_beats: int = 0) -> RecordEmbedding:
        """Read, cut and embed one record (a path, or a :class:`~ecgbio.records.Signal` in
        memory); ``max_beats`` keeps the first k usable beats. At most the first
        :attr:`read_limit_s` seconds are read (a 24-hour Holter record lends enrolment or a probe
        its first minutes, not 13 GB of memory)."""
        from ecgbio.records import Signal, record_file

        check_max_beats(max_beats)  # before the slow read: a negative slice drops the last beats
        leads, beats = self.cut_record(path)
        waves = beats.waves[:max_beats] if max_beats else beats.waves
        emb = self.embed_waves(waves)
        _, template = record_templates(emb, np.zeros(len(emb), dtype=np.int64))
        return RecordEmbedding(
            path=record_file(path) if isinstance(path, Signal) else str(path),
            beats=emb,
            template=template[0],
            quality=beats.quality[: len(emb)],
            detected=beats.detected,
            leads=leads,
        )

    def cut_record(self, path: str | Path | Signal) -> tuple[tuple[str, ...], Beats]:
        """(the record's leads that were read, its beats), cut exactly as :meth:`embed_record`
        cuts them before embedding (the run's beat config, :attr:`read_limit_s`, ``--fs``,
        ``--lead``)."""
        from ecgbio.beats import extract_beats
        from ecgbio.records import read_record

        config = self.beat_config
        rec = read_record(
            path,
            leads=self.read_leads,
            rate=config.rate,
            min_duration_s=config.min_duration_s,
            max_duration_s=self.read_limit_s or None,
            fs=self.fs,
        )
        return tuple(rec.leads), extract_beats(rec, config)

    def embed_signal(
        self,
        signal: np.ndarray,
        fs: float,
        leads: Sequence[str] | str = ("I",),
        name: str = "signal",
        max_beats: int = 0,
    ) -> RecordEmbedding:
        """:meth:`embed_record` for an array in memory: ``signal`` in millivolts, ``(samples,
        leads)`` (a 1-d array: one lead; ``(leads, samples)`` is recognised by its shape), at
        ``fs`` Hz, its leads named by ``leads``. The same checks as a record file (NaN, flat,
        amplitudes, rails, sampling rate, resampling to the model's rate); errors and the result
        name it ``<name>``."""
        from ecgbio.records import Signal

        leads = tuple(leads.split(",")) if isinstance(leads, str) else tuple(leads)
        return self.embed_record(Signal(signal, fs, leads, name), max_beats)


def model_binding(run: RunInfo, thresholds: dict[str, Any] | None) -> dict[str, Any]:
    """Everything of a run that changes a score or a decision, as plain JSON.

    * ``weights_sha256``: the weights (``model.safetensors``);
    * ``beat``: how records are cut into beats (``config.json`` "beat": rate, window, leads,
      detector, normalisation...), with defaults filled in;
    * ``model`` and ``in_leads``: how the network is built (``input_norm`` changes embeddings
      without touching a weight);
    * ``thresholds``: the operating points of ``thresholds.json`` (null when the run has none);
      its notes (``source``, score counts) are left out.

    Training settings and class names are left out: they change neither embeddings nor decisions.
    A gallery stores this binding and its sha256 (fingerprint version 2).
    """
    from ecgbio.config import to_dict
    from ecgbio.gallery.thresholds import decision_points

    return {
        "weights_sha256": run.fingerprint,
        "in_leads": int(run.info["in_leads"]),
        "beat": to_dict(run.beat),
        "model": to_dict(run.model_config),
        "thresholds": json.loads(json.dumps(decision_points(thresholds))),
    }


#: The most beats :meth:`RecordEmbedding.consistency` compares pairwise: what the default read
#: limit holds even at a racing heart rate, so that an ordinary record's consistency is exact and
#: a longer one's pairwise matrix stays small.
CONSISTENCY_BEATS = 2000


@dataclass
class RecordEmbedding:
    """One record's beat embeddings and its template (mean of unit beat embeddings, renormalised)."""

    path: str
    beats: np.ndarray
    template: np.ndarray
    quality: np.ndarray
    detected: int
    #: the record's leads that were read (``("ECG1",)`` where it stood in for the model's ``I``)
    leads: tuple[str, ...] = ()

    @property
    def n_beats(self) -> int:
        return int(len(self.beats))

    def consistency(self) -> float:
        """Median cosine between the record's beats: low when beats disagree (noise, artefacts).

        Every pair is compared, which costs beats squared: a longer record (a whole Holter day,
        ``--max-minutes 0``) is judged on :data:`CONSISTENCY_BEATS` beats spread evenly over it,
        so that its cost stays bounded while the median it estimates stays the same."""
        beats = self.beats
        if len(beats) > CONSISTENCY_BEATS:
            spread = np.linspace(0, len(beats) - 1, CONSISTENCY_BEATS).round().astype(np.int64)
            beats = beats[spread]
        if len(beats) < 2:
            return 1.0
        sims = beats @ beats.T
        return float(np.median(sims[np.triu_indices(len(beats), 1)]))
