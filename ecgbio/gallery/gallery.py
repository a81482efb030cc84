"""The gallery API: enrol, identify, verify, remove, calibrate.

A :class:`Gallery` joins three pieces that each do one job: the SQLite store (the truth, see
:mod:`ecgbio.gallery.store`), a FAISS index derived from it (:mod:`ecgbio.gallery.searcher`), and
the model (an :class:`~ecgbio.embed.Embedder`) that turns records into templates with the model's
own beat cutting. A gallery belongs to the model that made its templates: opening it with a model
whose weights, beat or model config or operating points (``thresholds.json``) differ is refused,
since scores between two embedding spaces, or the same scores against other thresholds, would
silently mean something else (see :func:`ecgbio.embed.model_binding`).

Galleries made before fingerprint version 2 record the weights' sha256 only: they are checked
against the model's weights and their recorded beat config, with a warning on every identify and
verify, and are bound to the whole model (upgraded to version 2) at their next write made with
the model, in the same transaction.

Templates: one per enrolled record (the mean of its beats' unit embeddings, renormalised). In
``each`` mode (the default) a person's score is the max over their templates, which keeps every
session's look of the person; ``mean`` mode scores against one renormalised mean per person. Both
are computed from the same stored per-record vectors, so the mode can be switched at any time.
Measured on ECG-ID (PTB-XL cross-session model, persons it never saw), the two modes could not be
told apart: 2 enrolled records per person, rank-1 0.77 (each) vs 0.78 (mean), EER 0.092 vs
0.094 (41 persons); 3 records, rank-1 0.81 vs 0.79, EER 0.100 vs 0.100 (25 persons).

Writers: one at a time (file lock + one SQLite transaction per operation); records are embedded
before the lock is taken, so a slow enrolment never blocks the others for long.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgbio.errors import BeatError, EcgbioError
from ecgbio.gallery import index as faiss_index
from ecgbio.gallery.calibrate import MAX_EER, MIN_GENUINE, calibrate
from ecgbio.gallery.errors import (
    AlreadyEnrolledError,
    EmptyGalleryError,
    EnrolmentRefusedError,
    GalleryError,
    NotEnrolledError,
)
from ecgbio.gallery.quality import QualityGate
from ecgbio.gallery.results import (
    Candidate,
    EnrolResult,
    Identification,
    PersonList,
    Removal,
    Verification,
)
from ecgbio.gallery.searcher import Searcher
from ecgbio.gallery.store import (
    DB_FILE,
    FINGERPRINT_VERSION,
    TEMPLATE_MODES,
    GalleryStore,
    PersonRow,
    TemplateRow,
    canonical_beat_config,
    now,
    sql_errors,
)
from ecgbio.gallery.thresholds import (
    DEFAULT_FAR,
    DEFAULT_MARGIN,
    MODEL_THRESHOLDS_FILE,
    OperatingPoint,
    fpir_warning,
    open_set,
    read_table,
    resolve,
)
from ecgbio.io import as_text

if TYPE_CHECKING:
    from ecgbio.embed import Embedder, RecordEmbedding
    from ecgbio.records import Signal

ENROL_MODES = ("new", "replace", "append")
#: Cosine above which an appended template is a copy of a stored one (the same record embedded
#: again, by either backend); two different records of one person stay far below it.
SAME_TEMPLATE_COSINE = 0.9999
MAX_NAME = 200
#: what a gallery's model binding covers, and how a difference is named in a refusal
BINDING_PARTS = (
    ("weights_sha256", "weights (model.safetensors)"),
    ("in_leads", 'input leads (config.json "in_leads")'),
    ("model", 'model config (config.json "model")'),
    ("beat", 'beat config (config.json "beat")'),
    ("thresholds", "operating points (thresholds.json)"),
)
#: said by identify / verify on a gallery made before fingerprint version 2
OLD_BINDING_WARNING = (
    "this gallery was made by an older ecgbio and records only the weights of its model: it was "
    "checked against the model's weights and beat config, not its model config or "
    "thresholds.json; it is bound to all of them at its next enrolment with this model"
)
UPGRADE_NOTE = (
    "gallery upgraded to fingerprint version 2: it is now bound to the model's weights, beat "
    "and model config and thresholds.json"
)


class Gallery:
    """Enrolled persons and their templates, bound to one model. See the module doc."""

    def __init__(self, store: GalleryStore, embedder: Embedder | None = None) -> None:
        self.store = store
        self.embedder: Embedder | None = None
        self.searcher = Searcher(store)
        self._model_table: dict[str, Any] | None = None
        self._model_table_read = False
        self.warnings: list[str] = []
        self._upgraded = False
        if embedder is not None:
            self.attach(embedder)

    # ---------------------------------------------------------------------- open / create

    @classmethod
    def open(cls, path: str | Path, embedder: Embedder | None = None) -> Gallery:
        """Open an existing gallery; with ``embedder``, refuse it unless it is the same model."""
        return cls._with(GalleryStore.open(path), embedder)

    @classmethod
    def create(
        cls,
        path: str | Path,
        embedder: Embedder,
        index: str = "auto",
        template_mode: str = "each",
    ) -> Gallery:
        """Create an empty gallery for ``embedder``'s model (refused if one exists there)."""
        _check_choice("index", index, faiss_index.KINDS)
        _check_choice("template mode", template_mode, TEMPLATE_MODES)
        if GalleryStore.exists(Path(path)):
            raise GalleryError("a gallery already exists here", path)
        return cls._with(
            GalleryStore.create(path, _model_meta(embedder, index, template_mode)), embedder
        )

    @classmethod
    def open_or_create(
        cls,
        path: str | Path,
        embedder: Embedder,
        index: str = "auto",
        template_mode: str = "each",
    ) -> tuple[Gallery, bool]:
        """(gallery, created): creates one for ``embedder`` if ``path`` holds none yet."""
        if GalleryStore.exists(Path(path)):
            return cls.open(path, embedder), False
        _check_choice("index", index, faiss_index.KINDS)
        _check_choice("template mode", template_mode, TEMPLATE_MODES)
        store = GalleryStore.create(path, _model_meta(embedder, index, template_mode))
        return cls._with(store, embedder), True

    @classmethod
    def _with(cls, store: GalleryStore, embedder: Embedder | None) -> Gallery:
        try:
            return cls(store, embedder)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()
        self.searcher.invalidate()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attach(self, embedder: Embedder) -> None:
        """Use ``embedder`` for records; refused unless it is the model the gallery belongs to.

        Lets a caller open (and so validate) the gallery before paying for loading the model.
        """
        meta = self.store.meta
        self._check_binding(meta, embedder)
        if int(embedder.dim) != int(meta["dim"]):  # same weights, so only a damaged meta
            raise GalleryError(
                f"gallery holds {meta['dim']}-d templates, the model makes {embedder.dim}-d ones",
                self.path,
            )
        self.embedder = embedder
        self._model_table_read = False
        old = meta.get("fingerprint_version", 1) < FINGERPRINT_VERSION
        self.warnings = [OLD_BINDING_WARNING] if old else []

    def _check_binding(self, meta: dict[str, Any], embedder: Embedder) -> None:
        """Refuse ``embedder`` unless it is the model (weights, configs, thresholds) of ``meta``."""
        version = meta.get("fingerprint_version", 1)
        if version >= FINGERPRINT_VERSION:
            if embedder.fingerprint == meta["fingerprint"]:
                return
            ours, theirs = _current_binding(meta["model_binding"]), embedder.binding
            if ours == theirs:  # a gallery bound before a config field (with its default) existed
                return
            differ = [label for key, label in BINDING_PARTS if ours.get(key) != theirs.get(key)]
            mine = embedder.fingerprint
        else:  # made before version 2: the weights' sha256 and the recorded beat config
            mine = embedder.weights_sha256
            if mine != meta["fingerprint"]:
                differ = [BINDING_PARTS[0][1]]
            elif canonical_beat_config(meta["beat_config"]) != embedder.binding["beat"]:
                differ = [BINDING_PARTS[3][1]]
            else:
                return
        raise GalleryError(
            f"gallery belongs to model {meta['fingerprint'][:12]} (run "
            f"{meta.get('model_run', '?')}), not to model {mine[:12]} (run {_run_dir(embedder)}): "
            f"the {' and '.join(differ or ['fingerprint'])} "
            f"{'differs' if len(differ) < 2 else 'differ'}; scores or decisions of two "
            "models cannot be mixed; use the gallery's model or enrol into a new gallery",
            self.path,
        )

    def refresh(self) -> bool:
        """Re-read the gallery's settings if anyone wrote since they were read; True if so.

        Why: a gallery held open for long (the HTTP service, a notebook) shares its file with
        other processes, and an enrolment, calibration or reconfiguration by any of them bumps
        the stored generation. Persons and templates are always read from the file, and the
        search index follows the generation by itself (:class:`Searcher`), but the calibration,
        template mode and index kind are settings read once; identify, verify and info call this
        first, so they never decide with another process's old thresholds. One tiny SQLite read.
        """
        if self.store.generation() == int(self.store.meta["generation"]):
            return False
        with sql_errors(self.store.path):
            meta = self.store.read_meta()
        if self.embedder is not None:
            self._check_binding(meta, self.embedder)
            old = meta.get("fingerprint_version", 1) < FINGERPRINT_VERSION
            self.warnings = [OLD_BINDING_WARNING] if old else []
        self.store.meta = meta
        return True

    @contextmanager
    def _write(self) -> Iterator[None]:
        """:meth:`GalleryStore.write`, re-checking the model binding inside the transaction (another
        process may have written), and binding an older gallery to the whole model (version 2)."""
        with self.store.write():
            upgrade = False
            if self.embedder is not None:
                meta = self.store.read_meta()
                self._check_binding(meta, self.embedder)
                upgrade = meta.get("fingerprint_version", 1) < FINGERPRINT_VERSION
                if upgrade:
                    self.store.set_meta("model_binding", self.embedder.binding)
                    self.store.set_meta("fingerprint", self.embedder.fingerprint)
                    self.store.set_meta("fingerprint_version", FINGERPRINT_VERSION)
            yield
        if upgrade:
            self._upgraded, self.warnings = True, []

    # -------------------------------------------------------------------------- properties

    @property
    def path(self) -> Path:
        return self.store.root

    @property
    def fingerprint(self) -> str:
        return str(self.store.meta["fingerprint"])

    @property
    def dim(self) -> int:
        return int(self.store.meta["dim"])

    @property
    def index_kind(self) -> str:
        return str(self.store.meta["index_kind"])

    @property
    def template_mode(self) -> str:
        return str(self.store.meta["template_mode"])

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.store.meta.get("calibration")

    def persons(self) -> list[PersonRow]:
        return self.store.persons()

    def listing(self) -> PersonList:
        """The enrolled persons with their template and beat counts (``gallery list``)."""
        return PersonList(gallery=str(self.path), persons=self.persons())

    def templates(self, person: str | None = None) -> list[TemplateRow]:
        return self.store.templates(person)

    def __contains__(self, person: str) -> bool:
        return self.store.person_id(person) is not None

    def __len__(self) -> int:
        return self.store.counts()[0]

    def info(self, check: bool = False) -> dict[str, Any]:
        """What the gallery holds and how it searches.

        ``check`` also verifies the whole file: ``integrity`` is SQLite's integrity_check ("ok"
        or its problems), and when that passes every row is read (a damaged text raises
        :class:`GalleryError`) and every template checked to be unit-length, as identify and
        verify check them, so a check passes only on a gallery every command accepts.
        """
        self.refresh()
        persons, templates, most = self.store.counts()
        meta = self.store.meta
        entries = templates if self.template_mode == "each" else persons
        data = {
            "gallery": str(self.path),
            "persons": persons,
            "templates": templates,
            "most_templates_per_person": most,
            "template_mode": self.template_mode,
            "index": self.index_kind,
            "index_in_use": faiss_index.resolve_kind(self.index_kind, entries),
            "dim": self.dim,
            "model_fingerprint": self.fingerprint,
            "fingerprint_version": int(meta.get("fingerprint_version", 1)),
            "model_run": meta.get("model_run"),
            "beat_config": meta.get("beat_config"),
            "created": meta.get("created"),
            "generation": int(meta["generation"]),
            "calibration": _calibration_summary(meta.get("calibration")),
            "file_bytes": (self.path / DB_FILE).stat().st_size,
        }
        if check:
            data["integrity"] = self.store.integrity()
            if data["integrity"] == "ok":
                self.store.persons()
                self.store.templates()
                self.store.vectors()
        return data

    # ----------------------------------------------------------------------------- enrol

    def enroll(
        self,
        person: str,
        records: Sequence[str | os.PathLike[str] | Signal],
        mode: str = "new",
        max_beats: int = 0,
        gate: QualityGate | None = None,
    ) -> EnrolResult:
        """Embed ``records`` with the model's own beat cutting and store one template each.

        All or nothing: every record is read, embedded and quality-gated before anything is
        written (:func:`embed_for_enrolment`); the first refusal raises :class:`GalleryError`
        naming the record and the reason, and the gallery is left as it was.

        Args:
            mode: ``new`` (refuse an enrolled ``person``), ``replace`` (their old templates are
                deleted in the same transaction) or ``append`` (templates are added).
            max_beats: use only the first k usable beats of each record (0 = all).
        """
        embedder = self._need_embedder("enrolling records")
        _check_choice("enrol mode", mode, ENROL_MODES)
        if mode == "new":
            self.refuse_existing(person)  # early, before slow embedding; re-checked on write
        embeddings = embed_for_enrolment(embedder, person, records, max_beats, gate)
        return self.enroll_embeddings(person, embeddings, mode)

    def enroll_embeddings(
        self, person: str, embeddings: Sequence[RecordEmbedding], mode: str = "new"
    ) -> EnrolResult:
        """Store records already embedded and gated by :func:`embed_for_enrolment`."""
        check_person_id(person)
        _check_choice("enrol mode", mode, ENROL_MODES)
        if not embeddings:
            raise GalleryError(f"no records given to enrol {person!r}")
        result = self._store(
            person,
            [e.template for e in embeddings],
            [_record_name(e.path) for e in embeddings],
            [e.n_beats for e in embeddings],
            [e.consistency() for e in embeddings],
            mode,
        )
        from ecgbio.records import stand_in_warnings

        model_leads = (self.store.meta.get("beat_config") or {}).get("leads") or ()
        for e in embeddings:
            for note in stand_in_warnings(e.leads, model_leads):
                if note not in result.notes:
                    result.notes.append(note)
        return result

    def enroll_vectors(
        self,
        person: str,
        vectors: np.ndarray,
        records: Sequence[str] | None = None,
        mode: str = "new",
        beats: Sequence[int] | None = None,
        consistency: Sequence[float] | None = None,
    ) -> EnrolResult:
        """Store ready-made templates (one row per record; normalised here) without a model.

        For imports, tests and benchmarks; no quality gate applies (there are no beats to judge).
        """
        check_person_id(person)
        _check_choice("enrol mode", mode, ENROL_MODES)
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        if x.ndim != 2 or x.shape[1] != self.dim or not len(x):
            raise GalleryError(f"expected (n, {self.dim}) vectors, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise GalleryError("vectors must be finite")
        names = list(records) if records is not None else [f"vector {i}" for i in range(len(x))]
        if len(names) != len(x):
            raise GalleryError(f"{len(names)} record names for {len(x)} vectors")
        return self._store(
            person,
            list(x),
            names,
            list(beats) if beats is not None else [0] * len(x),
            list(consistency) if consistency is not None else [1.0] * len(x),
            mode,
        )

    def _store(
        self,
        person: str,
        vectors: list[np.ndarray],
        records: list[str],
        beats: list[int],
        consistency: list[float],
        mode: str,
    ) -> EnrolResult:
        unit = [_unit(v) for v in vectors]
        records = [as_text(r) for r in records]  # a file name that is not UTF-8 (see as_text)
        with self.store.locked():
            before = self.store.generation()
            self._upgraded = False
            with self._write():
                pid = self.store.person_id(person)
                old_ids = [] if pid is None else self.store.template_ids(pid)
                removed: list[int] = []
                if pid is not None and mode == "new":
                    self.refuse_existing(person)
                if pid is not None and mode == "append":
                    self._refuse_same_records(person, records, unit)
                if pid is None:
                    pid = self.store.add_person(person)
                    old_count = 0
                else:
                    self.store.touch_person(pid)
                    if mode == "replace":
                        removed = self.store.delete_templates(pid)
                    old_count = len(self.store.template_ids(pid))
                added = [
                    self.store.add_template(pid, r, v, b, c)
                    for r, v, b, c in zip(records, unit, beats, consistency, strict=True)
                ]
            self.searcher.after_write(
                before, person, old_ids, removed, added, np.array(unit, np.float32)
            )
        rows = [
            {"record": r, "beats": int(b), "consistency": float(c), "template_id": t}
            for r, b, c, t in zip(records, beats, consistency, added, strict=True)
        ]
        return EnrolResult(
            gallery=str(self.path),
            person=person,
            mode=mode if (mode != "replace" or removed) else "new",
            records=rows,
            beats=int(sum(beats)),
            removed_templates=len(removed),
            templates=old_count + len(added),
            notes=[UPGRADE_NOTE] if self._upgraded else [],
        )

    def _refuse_same_records(self, person: str, records: list[str], unit: list[np.ndarray]) -> None:
        """Refuse appending a record ``person`` is already enrolled from: its template would be
        a second copy of one already stored, counting one session twice (in ``mean`` mode,
        weighting it double; in calibration, a genuine score of 1). Judged by the template, not
        the file name, which another path or an upload's name would hide: two records of one
        person never embed within :data:`SAME_TEMPLATE_COSINE` of each other."""
        stored = self.store.vectors(person)
        if not len(stored.vectors):
            return
        closest = (np.asarray(unit, np.float32) @ stored.vectors.T).max(axis=1)
        same = np.flatnonzero(closest >= SAME_TEMPLATE_COSINE)
        if len(same):
            raise AlreadyEnrolledError(
                f"{person!r} is already enrolled from {records[int(same[0])]} (an identical "
                "template is stored); nothing stored"
            )

    def refuse_existing(self, person: str) -> None:
        """Raise unless ``person`` is new here (re-enrolment needs --replace or --append)."""
        if self.store.person_id(person) is not None:
            raise AlreadyEnrolledError(
                f"{person!r} is already enrolled; use --replace to replace their templates or "
                "--append to add these records",
                self.path,
            )

    # ---------------------------------------------------------------------- remove / config

    def remove(self, person: str) -> int:
        """Remove a person and all their templates; returns how many templates went."""
        with self.store.locked():
            before = self.store.generation()
            with self._write():
                pid = self.store.person_id(person)
                if pid is None:
                    raise NotEnrolledError(f"{person!r} is not enrolled", self.path)
                removed = self.store.delete_person(pid)
            self.searcher.after_write(
                before, person, removed, removed, [], np.zeros((0, self.dim), np.float32)
            )
        return len(removed)

    def remove_person(self, person: str) -> Removal:
        """:meth:`remove`, checking the id first and saying who is left (``gallery remove``)."""
        check_person_id(person)
        removed = self.remove(person)
        return Removal(
            gallery=str(self.path), removed=person, templates=removed, persons_left=len(self)
        )

    def configure(self, index: str | None = None, template_mode: str | None = None) -> dict:
        """Change how the index is derived (kind, template mode); the stored vectors stay.

        A new template mode changes what a score is, so it drops the gallery's calibration.
        """
        if index is not None:
            _check_choice("index", index, faiss_index.KINDS)
        if template_mode is not None:
            _check_choice("template mode", template_mode, TEMPLATE_MODES)
        with self._write():
            if index is not None:
                self.store.set_meta("index_kind", index)
            if template_mode is not None and template_mode != self.template_mode:
                self.store.set_meta("template_mode", template_mode)
                self.store.set_meta("calibration", None)
        self.searcher.invalidate(drop_cache=True)
        return {"index": self.index_kind, "template_mode": self.template_mode}

    def calibrate(
        self,
        max_eer: float = MAX_EER,
        min_genuine: int = MIN_GENUINE,
        fars: tuple[float, ...] = (0.01, 0.001),
        seed: int = 0,
    ) -> dict[str, Any]:
        """Derive thresholds from the enrolled persons and store them (used before the model's).

        See :mod:`ecgbio.gallery.calibrate`; refused (nothing stored) when the scores overlap
        too much or there are too few genuine comparisons.
        """
        snap = self.store.vectors()
        result = calibrate(
            snap.vectors,
            snap.owners,
            self.template_mode,
            max_eer,
            min_genuine,
            fars,
            seed,
            where=str(self.path),
        )
        result.update(generation=snap.generation, created=now())
        with self._write():
            if self.store.generation() != snap.generation:
                raise GalleryError("the gallery changed while calibrating; run it again", self.path)
            self.store.set_meta("calibration", result)
        return result

    def clear_calibration(self) -> None:
        with self._write():
            self.store.set_meta("calibration", None)

    # ---------------------------------------------------------------------------- search

    def operating_point(
        self, far: str | float = DEFAULT_FAR, threshold: float | None = None
    ) -> OperatingPoint:
        """The threshold for ``far``: gallery calibration, else model thresholds.json, else default."""
        calibration = self.calibration
        return resolve(
            far,
            threshold,
            gallery_table=calibration.get("points") if calibration else None,
            model_table=self._model_thresholds(),
            model_file=self._model_thresholds_path(),
        )

    def search(self, queries: np.ndarray, top_k: int = 5) -> list[list[Candidate]]:
        """Person-level top ``top_k`` for each query vector (scores: cosine, best first)."""
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if q.shape[1] != self.dim:
            raise GalleryError(f"queries have {q.shape[1]} values, the gallery {self.dim}")
        _, ranked = self.searcher.search(q, top_k)
        return [[Candidate(i, n, s) for i, (n, s) in enumerate(r, 1)] for r in ranked]

    def identify(
        self,
        probe: Any,
        top_k: int = 5,
        far: str | float = DEFAULT_FAR,
        threshold: float | None = None,
        margin: float = DEFAULT_MARGIN,
        max_beats: int = 0,
    ) -> Identification:
        """Who is this? Ranked candidates and an open-set decision (see :func:`open_set`)."""
        if not math.isfinite(margin) or margin < 0:
            raise GalleryError(f"--margin must be >= 0, got {margin}")
        if top_k < 1:
            raise GalleryError(f"--top-k must be >= 1, got {top_k}")
        self.refresh()
        point = self.operating_point(far, threshold)
        vector, info, warnings = self._probe(probe, max_beats)
        kind, ranked = self.searcher.search(vector, max(top_k, 2))  # >= 2 for the margin
        if not ranked[0]:
            raise EmptyGalleryError("the gallery has no enrolled persons", self.path)
        person, reason = open_set(ranked[0], point, margin)
        caution = fpir_warning(point, self.store.counts()[0])
        return Identification(
            probe=info,
            candidates=[Candidate(i, n, s) for i, (n, s) in enumerate(ranked[0][:top_k], 1)],
            person=person,
            reason=reason,
            operating_point=point,
            margin=margin,
            index=kind,
            warnings=warnings + [w for w in (point.warning, caution) if w] + self.warnings,
        )

    def verify(
        self,
        claim: str,
        probe: Any,
        far: str | float = DEFAULT_FAR,
        threshold: float | None = None,
        max_beats: int = 0,
    ) -> Verification:
        """Is this ``claim``? Exact score against the claimed person's templates vs threshold."""
        self.refresh()
        point = self.operating_point(far, threshold)
        snap = self.store.vectors(claim)
        if not len(snap.vectors):
            raise NotEnrolledError(f"{claim!r} is not enrolled", self.path)
        vector, info, warnings = self._probe(probe, max_beats)
        if self.template_mode == "mean":
            score = float(_unit(snap.vectors.astype(np.float64).sum(0)) @ vector)
        else:
            score = float(np.max(snap.vectors @ vector))
        return Verification(
            claim=claim,
            accepted=score >= point.threshold,
            score=score,
            operating_point=point,
            probe=info,
            templates=len(snap.vectors),
            warnings=warnings + ([point.warning] if point.warning else []) + self.warnings,
        )

    # --------------------------------------------------------------------------- helpers

    def _need_embedder(self, what: str) -> Embedder:
        if self.embedder is None:
            raise GalleryError(f"{what} needs the gallery's model (--model)", self.path)
        return self.embedder

    def _probe(self, probe: Any, max_beats: int) -> tuple[np.ndarray, dict[str, Any], list[str]]:
        """A probe (record path, :class:`~ecgbio.records.Signal`, RecordEmbedding or vector) ->
        unit vector, facts, warnings (a low-quality probe; a lead standing in for the model's)."""
        from ecgbio.embed import RecordEmbedding
        from ecgbio.records import Signal, stand_in_warnings

        if isinstance(probe, (str, os.PathLike, Signal)):
            probe = self._need_embedder("identifying a record").embed_record(probe, max_beats)
        if isinstance(probe, RecordEmbedding):
            consistency = probe.consistency()
            info = {"record": probe.path, "beats": probe.n_beats, "consistency": consistency}
            if probe.leads:
                info["leads"] = list(probe.leads)
            model_leads = (self.store.meta.get("beat_config") or {}).get("leads") or ()
            warnings = stand_in_warnings(probe.leads, model_leads)
            gate = QualityGate()
            if probe.n_beats < gate.min_beats or consistency < gate.min_consistency:
                warnings.append(
                    f"low-quality probe ({probe.n_beats} beats, consistency {consistency:.2f}): "
                    "scores are less reliable"
                )
            vector = probe.template
        else:
            info, warnings, vector = {"record": None}, [], probe
        vector = np.asarray(vector, np.float64).ravel()
        if vector.shape != (self.dim,) or not np.isfinite(vector).all():
            raise GalleryError(f"probe must be a finite {self.dim}-d vector, got {vector.shape}")
        return _unit(vector), info, warnings

    def _model_thresholds_path(self) -> Path | None:
        return None if self.embedder is None else _run_dir(self.embedder) / MODEL_THRESHOLDS_FILE

    def _model_thresholds(self) -> dict[str, Any] | None:
        """The model's operating points: those its embedder read and fingerprinted."""
        if not self._model_table_read:
            if self.embedder is not None and hasattr(self.embedder, "thresholds"):
                self._model_table = self.embedder.thresholds
            else:
                path = self._model_thresholds_path()
                self._model_table = read_table(path) if path is not None else None
            self._model_table_read = True
        return self._model_table


def embed_for_enrolment(
    embedder: Embedder,
    person: str,
    records: Sequence[str | os.PathLike[str] | Signal],
    max_beats: int = 0,
    gate: QualityGate | None = None,
) -> list[RecordEmbedding]:
    """Read, embed and quality-gate ``person``'s records; nothing is written anywhere.

    Separate from storing so that a refused first enrolment never even creates a gallery.

    Raises:
        GalleryError: a record yields too few beats or fails ``gate`` (default
            :class:`QualityGate`); the message names the record and says nothing was stored.
        RecordError: a record cannot be read at all.
    """
    check_person_id(person)
    if not records:
        raise GalleryError(f"no records given to enrol {person!r}")
    paths = [_record_name(r) for r in records]
    twice = {p for p in paths if paths.count(p) > 1}
    if twice:
        raise GalleryError(f"record listed twice: {sorted(twice)[0]}")
    if max_beats < 0:
        raise GalleryError(f"--max-beats must be >= 0, got {max_beats}")
    gate = gate or QualityGate()
    embeddings = []
    for record in records:
        try:
            emb = embedder.embed_record(record, max_beats=max_beats)
        except BeatError as exc:
            raise EnrolmentRefusedError(f"{exc}; {person!r} not enrolled, nothing stored") from exc
        problem = gate.problem(emb)
        if problem:
            raise EnrolmentRefusedError(
                f"{problem}; {person!r} not enrolled, nothing stored", _hea(record)
            )
        embeddings.append(emb)
    return embeddings


def _model_meta(embedder: Embedder, index: str, template_mode: str) -> dict[str, Any]:
    from ecgbio.config import to_dict

    return {
        "fingerprint": embedder.fingerprint,
        "fingerprint_version": FINGERPRINT_VERSION,
        "model_binding": embedder.binding,
        "dim": int(embedder.dim),
        "beat_config": to_dict(embedder.beat_config),
        "model_run": str(_run_dir(embedder).resolve()),
        "index_kind": index,
        "template_mode": template_mode,
    }


def _run_dir(embedder: Embedder) -> Path:
    run = getattr(embedder, "run", None)
    return Path(getattr(run, "root", "?"))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64).ravel()
    norm = float(np.linalg.norm(v))
    if not norm or not math.isfinite(norm):
        raise GalleryError("a template has zero length or non-finite values")
    return (v / norm).astype(np.float32)


def _current_binding(binding: dict[str, Any]) -> dict[str, Any]:
    """A stored model binding with its configs read as this ecgbio reads them (fields added since
    filled in by their defaults), so a new config field does not orphan every existing gallery."""
    from ecgbio.config import ModelConfig, from_dict, to_dict

    try:
        return {
            **binding,
            "beat": canonical_beat_config(binding["beat"]),
            "model": to_dict(from_dict(ModelConfig, binding["model"])),
        }
    except (EcgbioError, KeyError, TypeError):
        return binding


def check_person_id(person: str, argument: str = "") -> None:
    """Refuse an id that is empty, too long or not printable; ``argument`` (``--id``) names the
    command-line option it came from, so the message says which one to fix."""
    prefix = f"{argument}: " if argument else ""
    if not isinstance(person, str) or not person.strip():
        raise GalleryError(f"{prefix}a person id must be a non-empty name")
    if len(person) > MAX_NAME or any(not ch.isprintable() for ch in person):
        shown = repr(person[:60]) + (
            f" ... ({len(person):,} characters)" if len(person) > 60 else ""
        )
        raise GalleryError(
            f"{prefix}a person id must be printable text of at most {MAX_NAME} characters, "
            f"got {shown}"
        )


def _check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise GalleryError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")


def _hea(record: str | os.PathLike[str] | Signal) -> str:
    from ecgbio.records import record_file

    return record_file(record)


def _record_name(record: str | os.PathLike[str] | Signal) -> str:
    """How a gallery names an enrolled record: a file's absolute path, a signal's ``<name>``."""
    from ecgbio.records import Signal, is_signal_label, record_file

    if isinstance(record, Signal):
        return record_file(record)
    text = os.fspath(record)
    return text if is_signal_label(text) else os.path.abspath(text)


def _calibration_summary(calibration: dict[str, Any] | None) -> dict[str, Any] | None:
    if not calibration:
        return None
    keys = ("created", "generation", "eer", "genuine", "impostor", "persons", "template_mode")
    return {**{k: calibration.get(k) for k in keys}, "points": calibration.get("points")}
