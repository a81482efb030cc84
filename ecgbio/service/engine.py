"""The model and the gallery, loaded once and shared by every request.

Why two gallery threads: a :class:`~ecgbio.gallery.Gallery` holds one SQLite connection, and an
SQLite connection belongs to the thread that opened it. So one gallery object lives in a "read"
thread (identify, verify, list, info, health: a search takes milliseconds) and one in a "write"
thread (enrol, remove), each opened there and only ever used there; every request hands its
gallery step to the right one. The slow part of a request, reading the record and running the
model, happens before that, in the request's own worker thread, so requests are computed in
parallel (up to ``--threads`` at once) and only their short gallery steps queue.

Why a service and the CLI can share a gallery: writes go through the gallery's own file lock and
one SQLite transaction each, exactly as the CLI's; every write bumps the gallery's generation, and
the read gallery checks it on every request (:meth:`Gallery.refresh`, and its searcher rebuilds
its index for a new generation), so an ``ecgbio enroll`` run while the service is up is visible
to the service's next identify. The write gallery is a separate object for the same reason: the
read side learns of the service's own writes the way it learns of anyone's.

Why the gallery's file is looked at (one ``stat``) before every step: a file deleted, replaced or
damaged while the service runs must not be answered from (an SQLite connection keeps reading a
deleted file) nor written into; it is a 503 until a good file is back, then used without a
restart (:meth:`Engine._run`).

Why answers name the gallery and the model by their folder's name only (``people``,
``default``) and errors lose the gallery's path: a client has no business knowing where on the
server they are. Library errors also speak the CLI's language (``use --replace``, ``--far must
be``); the engine rewrites the options the service has as fields into those fields' names
(``mode=replace``, ``far must be``), see :func:`service_words`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ecgbio.config import DEFAULT_MODEL
from ecgbio.errors import EcgbioError, shorten
from ecgbio.gallery import Gallery, QualityGate, embed_for_enrolment
from ecgbio.gallery.errors import (
    AlreadyEnrolledError,
    EmptyGalleryError,
    EnrolmentRefusedError,
    GalleryBusyError,
    GalleryError,
    NotEnrolledError,
)
from ecgbio.gallery.gallery import check_person_id
from ecgbio.gallery.store import DB_FILE
from ecgbio.gallery.thresholds import parse_far, point_name, points
from ecgbio.service.problems import FieldError, GalleryUnavailableError
from ecgbio.service.uploads import Probe

if TYPE_CHECKING:
    from ecgbio.embed import Embedder, RecordEmbedding
    from ecgbio.service.schemas import EnrolOptions, IdentifyOptions, Options, VerifyOptions
    from ecgbio.service.settings import ServiceSettings

T = TypeVar("T")
R = TypeVar("R")
#: embedders for other ``lead`` / ``fs`` options kept at once (they share the loaded model)
MAX_VARIANTS = 32
#: what a gallery step refuses because of the request (answered by their own status); any
#: other failure of a step is the file's, a fault on the server (503)
CLIENT_ERRORS = (
    NotEnrolledError,
    AlreadyEnrolledError,
    EmptyGalleryError,
    EnrolmentRefusedError,
    GalleryBusyError,
)

#: the library's command-line wording as the service says it (phrases first, then the flags)
_PHRASES = (
    (
        "use --replace to replace their templates or --append to add these records",
        "send mode=replace to replace their templates or mode=append to add these records",
    ),
    ("(--fs 500, or fs=500)", "(fs=500)"),
)
#: CLI flags that are fields of the service's requests (``--top-k`` is ``top_k``)
_FLAGS = re.compile(
    r"(?<![\w-])--(far|threshold|margin|top-k|max-beats|min-beats|min-consistency|lead|fs"
    r"|replace|append)(?![\w-])"
)
_FIELDS = {"replace": "mode=replace", "append": "mode=append"}


def service_words(text: str) -> str:
    """A library message with the CLI flags that are request fields here named as the fields."""
    for cli, ours in _PHRASES:
        text = text.replace(cli, ours)
    return _FLAGS.sub(lambda m: _FIELDS.get(m[1], m[1].replace("-", "_")), text)


def model_name(run: str | Path | None) -> str | None:
    """What the service calls a model run: ``default`` for the shipped model, otherwise its
    folder's name; never a path."""
    if run is None:
        return None
    from ecgbio.rundir import DEFAULT_MODEL_DIR

    if str(run) == DEFAULT_MODEL:
        return DEFAULT_MODEL
    path = Path(run)
    try:
        shipped = path.resolve() == DEFAULT_MODEL_DIR
    except (OSError, RuntimeError):
        shipped = False
    return DEFAULT_MODEL if shipped else path.name


def start_engine(settings: ServiceSettings) -> Engine:
    """The engine ``ecgbio serve`` runs (in its one process, or in each worker): the model of
    ``settings`` loaded once, the gallery opened or created.

    The model runs on one core per request: ``--threads`` requests then run side by side, rather
    than each request's network fighting the others for every core.
    """
    from ecgbio.embed import Embedder

    embedder = Embedder(settings.model, threads=1, read_limit_s=settings.read_limit_s)
    return Engine.start(settings.gallery, embedder)


def _public(operation: Callable[..., R]) -> Callable[..., R]:
    """An operation whose answer and errors name no path on the server (see :class:`Engine`)."""

    @functools.wraps(operation)
    def public(self: Engine, *args: Any, **kwargs: Any) -> R:
        try:
            result = operation(self, *args, **kwargs)
        except EcgbioError as exc:
            exc.args = (self.public_text(str(exc)),)  # the same class: its HTTP status stays
            raise
        return self.public_result(result)  # type: ignore[arg-type, return-value]

    return public


@dataclass
class _Side:
    """One of the engine's two gallery connections (read, write) and the thread it lives in."""

    pool: ThreadPoolExecutor
    gallery: Gallery | None = None
    #: (device, inode) of the file ``gallery`` opened
    identity: tuple[int, int] | None = None
    #: a step failed on the file: reopen (and check it) before the next step
    suspect: bool = False


class Engine:
    """The operations of the service, in plain Python: records in, the CLI's JSON dicts out.

    Build it with :meth:`start` (opens or creates the gallery, like ``ecgbio enroll``); call the
    operations from worker threads; :meth:`close` when done.
    """

    def __init__(self, gallery: Path, embedder: Embedder, created: bool = False) -> None:
        self.path = Path(gallery)
        self.embedder = embedder
        self.created = created
        #: what answers call the gallery and the model: their folders' names, never a path
        self.name = self.path.resolve().name or "gallery"
        self._init_names()
        self._read_side = _Side(ThreadPoolExecutor(1, thread_name_prefix="ecgbio-gallery-read"))
        self._write_side = _Side(ThreadPoolExecutor(1, thread_name_prefix="ecgbio-gallery-write"))
        self._variants: dict[tuple[str, float | None], Embedder] = {}
        self._variants_lock = threading.Lock()
        try:
            for side in (self._read_side, self._write_side):
                side.pool.submit(self._open, side, False).result()
        except BaseException:
            self.close()
            raise

    def _init_names(self) -> None:
        """What :meth:`public_text` replaces: every spelling of the gallery's folder and file
        (as given, absolute, resolved) by the gallery's name, and of the model's run folder by
        the model's; and the gallery's prefix the CLI prints before a message about it."""
        gallery = {self.path, self.path.absolute(), self.path.resolve()}
        spellings = {str(root): self.name for root in gallery}
        spellings.update({str(root / DB_FILE): self.name for root in gallery})
        run = getattr(getattr(self.embedder, "run", None), "root", None)
        if run is not None:
            run = Path(run)
            model = model_name(run) or "model"
            spellings.update({str(r): model for r in (run, run.absolute(), run.resolve())})
        self._prefixes = tuple(
            f"{shorten(text, 200)}: "
            for text, name in sorted(spellings.items(), key=lambda kv: -len(kv[0]))
            if name == self.name
        )
        self._names = {text: name for text, name in spellings.items() if text != name}
        alternatives = "|".join(map(re.escape, sorted(self._names, key=len, reverse=True)))
        self._paths = re.compile(r"(?<![\w.-])(?:" + alternatives + r")(?=[/\\:\s,;)'\"]|$)")

    @classmethod
    def start(cls, gallery: str | Path, embedder: Embedder) -> Engine:
        """Open ``gallery`` for ``embedder``'s model, creating an empty one if there is none.

        A gallery of another model, a damaged one, or a folder holding other files is refused
        (one line), as ``ecgbio enroll`` refuses them.
        """
        opened, created = Gallery.open_or_create(gallery, embedder)
        opened.close()
        return cls(Path(gallery), embedder, created)

    def close(self) -> None:
        """Close both galleries (each in its own thread) and stop the threads."""
        for side in (self._read_side, self._write_side):
            if side.gallery is not None:
                side.pool.submit(side.gallery.close).result()
                side.gallery = None
            side.pool.shutdown(wait=True)

    # --------------------------------------------------------------------------- gallery steps

    def _read(self, step: Callable[[Gallery], T]) -> T:
        return self._read_side.pool.submit(self._run, self._read_side, step).result()

    def _write(self, step: Callable[[Gallery], T]) -> T:
        return self._write_side.pool.submit(self._run, self._write_side, step).result()

    def _run(self, side: _Side, step: Callable[[Gallery], T]) -> T:
        """``step`` on ``side``'s gallery, in ``side``'s thread (its connection's).

        Why the file is looked at first (one ``stat``): an SQLite connection keeps reading a file
        deleted under it, and refuses to write it ("read-only"), so a service would answer from
        a gallery that is gone and never see the one put back. The gallery is reopened when its
        file is another one (device and inode) or when a step failed on it; a file that is
        missing, or that fails to open or to pass SQLite's integrity check, is a 503
        (:class:`GalleryUnavailableError`), nothing is written into it, and it is tried again on
        the next request: a restored file is used without a restart. A file is never created
        here: a gallery that vanished stays missing until someone restores it, rather than
        being replaced by an empty one.
        """
        identity = self._identity()
        if side.gallery is None or side.suspect or identity != side.identity:
            self._reopen(side)
        assert side.gallery is not None
        try:
            return step(side.gallery)
        except CLIENT_ERRORS:
            raise
        except (GalleryError, sqlite3.Error, OSError) as exc:
            self._read_side.suspect = self._write_side.suspect = True  # both hold the file
            raise self._unavailable(exc) from None

    def _open(self, side: _Side, check: bool) -> None:
        """Open the gallery for ``side`` (call it in ``side``'s thread); ``check``: refuse a file
        that fails SQLite's integrity_check (the whole file is read: done when reopening only)."""
        identity = self._identity()  # first: a file swapped meanwhile is reopened next time
        gallery = Gallery.open(self.path, self.embedder)
        try:
            problems = gallery.store.integrity() if check else "ok"
            if problems != "ok":
                raise GalleryError(f"gallery file is corrupt (integrity_check: {problems})")
        except BaseException:
            gallery.close()
            raise
        side.gallery, side.identity, side.suspect = gallery, identity, False

    def _reopen(self, side: _Side) -> None:
        old, side.gallery, side.suspect = side.gallery, None, True
        if old is not None:  # its file is gone or broken: nothing of it is needed any more
            with contextlib.suppress(GalleryError, sqlite3.Error, OSError):
                old.close()
        try:
            self._open(side, check=True)
        except (GalleryError, sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from None

    def _identity(self) -> tuple[int, int]:
        """The gallery file's (device, inode); a 503 when it is missing or cannot be looked at."""
        try:
            info = os.stat(self.path / DB_FILE)
        except FileNotFoundError:
            raise GalleryUnavailableError(
                f"gallery {self.name} is unavailable: its file {DB_FILE} is missing (deleted or "
                "moved while the service runs); restore it and the service uses it again, "
                "without a restart"
            ) from None
        except OSError as exc:
            raise self._unavailable(exc) from None
        return info.st_dev, info.st_ino

    def _unavailable(self, exc: BaseException) -> GalleryUnavailableError:
        reason = str(exc) if not isinstance(exc, OSError) else (exc.strerror or str(exc))
        return GalleryUnavailableError(
            f"gallery {self.name} is unavailable: {self.public_text(reason)}; a fault on the "
            "server, not in the request (the file is opened again on the next request)"
        )

    # ------------------------------------------------------------------------------ in public

    def public_text(self, text: str) -> str:
        """A library message without the gallery's path (a leading ``/srv/people: `` goes, any
        other mention becomes the gallery's name) and in the service's words."""
        for prefix in self._prefixes:
            if text.startswith(prefix):
                text = text[len(prefix) :]
                break
        return service_words(self._paths.sub(lambda m: self._names[m[0]], text))

    def public_result(self, result: dict[str, Any]) -> dict[str, Any]:
        """An answer with the gallery and the model named, not located."""
        if "gallery" in result:
            result["gallery"] = self.name
        if "model_run" in result:
            result["model_run"] = model_name(result["model_run"])
        return result

    # ------------------------------------------------------------------------------ operations

    @_public
    def identify(self, probe: Probe, options: IdentifyOptions) -> dict[str, Any]:
        """``ecgbio identify --json`` for one record."""
        embedding = self._embed(probe, options)

        def step(g: Gallery) -> Any:
            self._check_far(g, options.far, options.threshold)
            return g.identify(
                embedding,
                top_k=options.top_k,
                far=options.far,
                threshold=options.threshold,
                margin=options.margin,
            )

        return self._read(step).to_dict()

    @_public
    def verify(self, probe: Probe, options: VerifyOptions) -> dict[str, Any]:
        """``ecgbio verify --json`` for one record."""
        check_person_id(options.claim, "claim")
        embedding = self._embed(probe, options)

        def step(g: Gallery) -> Any:
            self._check_far(g, options.far, options.threshold)
            return g.verify(options.claim, embedding, far=options.far, threshold=options.threshold)

        return self._read(step).to_dict()

    def _check_far(self, g: Gallery, far: str, threshold: float | None) -> None:
        """Refuse (422, :class:`FieldError`) a ``far`` for which neither the gallery's
        calibration nor the model has an operating point, naming those they have.

        Why here: the library's refusal names the model's thresholds file by its path on the
        server, and is a plain gallery error, which a step would take for a fault of the file.
        """
        if threshold is not None:
            return
        g.refresh()  # the calibration another process may have written
        try:
            g.operating_point(far)
            return
        except GalleryError:
            pass
        calibration = g.calibration
        tables = (
            (
                "this gallery's calibration",
                points(calibration.get("points") if calibration else None),
            ),
            ("the model", points(getattr(self.embedder, "thresholds", None))),
        )
        whose = " or ".join(who for who, names in tables if names) or "the model"
        available = sorted({name for _, names in tables for name in names})
        raise FieldError(
            f"{point_name(parse_far(far))} is not an operating point of {whose} (available: "
            f"{', '.join(available)}); send one of those as far, or a threshold"
        )

    @_public
    def enroll(self, probes: list[Probe], options: EnrolOptions) -> dict[str, Any]:
        """``ecgbio enroll --json``: all records read, embedded and gated before one write."""
        person = options.person
        check_person_id(person, "person")
        gate = QualityGate(min_beats=options.min_beats, min_consistency=options.min_consistency)
        if options.mode == "new":
            self._read(lambda g: g.refuse_existing(person))  # before the slow part
        embedder = self._embedder(options)
        embeddings = embed_for_enrolment(
            embedder, person, [p.record for p in probes], options.max_beats, gate
        )
        for embedding, probe in zip(embeddings, probes, strict=True):
            embedding.path = probe.label  # stored as the uploaded name, not a staged path
        result = self._write(lambda g: g.enroll_embeddings(person, embeddings, mode=options.mode))
        return result.to_dict()

    @_public
    def remove(self, person: str) -> dict[str, Any]:
        """``ecgbio gallery remove --json``."""
        check_person_id(person)  # the request's fault (400), before the file is touched
        return self._write(lambda g: g.remove_person(person)).to_dict()

    @_public
    def persons(self) -> dict[str, Any]:
        """``ecgbio gallery list --json``."""
        return self._read(lambda g: g.listing()).to_dict()

    @_public
    def info(self, check: bool = False) -> dict[str, Any]:
        """``ecgbio gallery info --json`` (``check``: SQLite's integrity_check, every row and template)."""
        return self._read(lambda g: g.info(check=check))

    @_public
    def health(self) -> dict[str, Any]:
        """That the gallery answers, and what the service runs: no person is named."""

        def look(g: Gallery) -> dict[str, Any]:
            g.refresh()
            persons, templates, _ = g.store.counts()
            return {
                "status": "ok",
                "persons": persons,
                "templates": templates,
                "generation": int(g.store.meta["generation"]),
                "model_fingerprint": g.fingerprint,
                "backend": getattr(self.embedder, "backend", "torch"),
            }

        return self._read(look)

    # ------------------------------------------------------------------------------ the model

    def _embed(self, probe: Probe, options: Options) -> RecordEmbedding:
        embedding = self._embedder(options).embed_record(probe.record, max_beats=options.max_beats)
        embedding.path = probe.label
        return embedding

    def _embedder(self, options: Options) -> Embedder:
        """The shared embedder, or one reading another lead / CSV rate
        (:meth:`~ecgbio.embed.Embedder.reading`: the same loaded model), kept for the next
        request that asks for it."""
        key = (options.lead or "", options.fs)
        if key == ("", None):
            return self.embedder
        with self._variants_lock:
            variant = self._variants.get(key)
            if variant is None:
                variant = self.embedder.reading(options.lead, options.fs)
                if len(self._variants) >= MAX_VARIANTS:
                    self._variants.pop(next(iter(self._variants)))
                self._variants[key] = variant
        return variant
