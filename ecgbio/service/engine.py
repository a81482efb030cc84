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

Why answers name the gallery and the model by their folder's name only (``people``,
``default``) and errors lose the gallery's path: a client has no business knowing where on the
server they are. Library errors also speak the CLI's language (``use --replace``, ``--far must
be``); the engine rewrites the options the service has as fields into those fields' names
(``mode=replace``, ``far must be``), see :func:`service_words`.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ecgbio.config import DEFAULT_MODEL
from ecgbio.errors import EcgbioError, shorten
from ecgbio.gallery import Gallery, QualityGate, embed_for_enrolment
from ecgbio.gallery.gallery import check_person_id
from ecgbio.service.uploads import Probe

if TYPE_CHECKING:
    from ecgbio.embed import Embedder, RecordEmbedding
    from ecgbio.service.schemas import EnrolOptions, IdentifyOptions, Options, VerifyOptions
    from ecgbio.service.settings import ServiceSettings

T = TypeVar("T")
R = TypeVar("R")
#: embedders for other ``lead`` / ``fs`` options kept at once (they share the loaded model)
MAX_VARIANTS = 32

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
        roots = {str(self.path), str(self.path.resolve()), str(self.path.absolute())}
        self._prefixes = tuple(f"{shorten(root, 200)}: " for root in roots)
        absolute = sorted((r for r in roots if Path(r).is_absolute()), key=len, reverse=True)
        self._roots = re.compile(
            r"(?<![\w.-])(?:" + "|".join(map(re.escape, absolute)) + r")(?=[/\\:\s,;)'\"]|$)"
        )
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="ecgbio-gallery-read")
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="ecgbio-gallery-write")
        self._variants: dict[tuple[str, float | None], Embedder] = {}
        self._variants_lock = threading.Lock()
        self._reader: Gallery | None = None
        self._writer: Gallery | None = None
        try:
            self._reader = self._reads.submit(Gallery.open, self.path, embedder).result()
            self._writer = self._writes.submit(Gallery.open, self.path, embedder).result()
        except BaseException:
            self.close()
            raise

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
        for pool, gallery in ((self._reads, self._reader), (self._writes, self._writer)):
            if gallery is not None:
                pool.submit(gallery.close).result()
            pool.shutdown(wait=True)
        self._reader = self._writer = None

    # --------------------------------------------------------------------------- gallery steps

    def _read(self, step: Callable[[Gallery], T]) -> T:
        return self._reads.submit(lambda: step(self._live(self._reader))).result()

    def _write(self, step: Callable[[Gallery], T]) -> T:
        return self._writes.submit(lambda: step(self._live(self._writer))).result()

    @staticmethod
    def _live(gallery: Gallery | None) -> Gallery:
        if gallery is None:
            raise RuntimeError("the service's gallery is closed")
        return gallery

    # ------------------------------------------------------------------------------ in public

    def public_text(self, text: str) -> str:
        """A library message without the gallery's path (a leading ``/srv/people: `` goes, any
        other mention becomes the gallery's name) and in the service's words."""
        for prefix in self._prefixes:
            if text.startswith(prefix):
                text = text[len(prefix) :]
                break
        return service_words(self._roots.sub(lambda _: self.name, text))

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
        result = self._read(
            lambda g: g.identify(
                embedding,
                top_k=options.top_k,
                far=options.far,
                threshold=options.threshold,
                margin=options.margin,
            )
        )
        return result.to_dict()

    @_public
    def verify(self, probe: Probe, options: VerifyOptions) -> dict[str, Any]:
        """``ecgbio verify --json`` for one record."""
        check_person_id(options.claim, "claim")
        embedding = self._embed(probe, options)
        result = self._read(
            lambda g: g.verify(
                options.claim, embedding, far=options.far, threshold=options.threshold
            )
        )
        return result.to_dict()

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
