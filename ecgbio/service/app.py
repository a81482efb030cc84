"""The FastAPI application: routes, the token check, the size limit, the error handlers.

Routes mirror the CLI (each answers the JSON its command prints with ``--json``):

=========================  ==============================  =====================================
``POST /v1/enroll``        ``ecgbio enroll``               record(s) + ``person`` (+ ``mode``)
``POST /v1/identify``      ``ecgbio identify``             one record
``POST /v1/verify``        ``ecgbio verify``               one record + ``claim``
``GET /v1/persons``        ``ecgbio gallery list``
``DELETE /v1/persons/ID``  ``ecgbio gallery remove``
``GET /v1/gallery``        ``ecgbio gallery info``         ``?check=true``: integrity_check
``GET /health``            -                               the gallery answers; counts only
=========================  ==============================  =====================================

Why ``/docs`` and ``/openapi.json`` need no token: they describe the API only (no person, no
gallery, no model), and a browser opening ``/docs`` cannot send a bearer header; the "Authorize"
button there then sends the token with the requests tried from the page. Everything else,
``/health`` included, needs the token; FastAPI's other pages (``/redoc``, and the OAuth2
redirect page Swagger UI needs for OAuth2 only) are off, so no other route answers without it.

Why records are read in ``async`` routes but computed in threads: the event loop reads bodies
and uploads without blocking, and the work (parsing JSON, files, the readers, the model, the
gallery) runs in AnyIO worker threads bounded by a :class:`anyio.CapacityLimiter` of
``--threads`` tokens, so at most that many requests compute at once and the others wait their
turn without holding a thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from ecgbio.errors import EcgbioError
from ecgbio.service import problems
from ecgbio.service.auth import BearerAuth
from ecgbio.service.engine import Engine
from ecgbio.service.limits import BodyLimit
from ecgbio.service.problems import ErrorBody, ServiceError
from ecgbio.service.schemas import (
    DOCUMENTED,
    EnrolJson,
    EnrolOptions,
    IdentifyJson,
    IdentifyOptions,
    VerifyJson,
    VerifyOptions,
)
from ecgbio.service.settings import ServiceSettings
from ecgbio.service.uploads import Probe, Upload, read_upload, stage

T = TypeVar("T")
API_VERSION = "1"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Malformed request or upload"),
        (401, "No or wrong bearer token"),
        (404, "Person not enrolled"),
        (409, "Person already enrolled, or gallery empty"),
        (413, "Request larger than --max-upload-mb"),
        (415, "Neither JSON nor multipart/form-data"),
        (422, "Invalid field, or a record that cannot be used"),
        (503, "Gallery busy: try again"),
    )
}


def _body(json_model: str, form_model: str) -> dict[str, Any]:
    """An OpenAPI request body offered as JSON samples or as a multipart upload."""
    ref = "#/components/schemas/"
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": ref + json_model}},
                "multipart/form-data": {"schema": {"$ref": ref + form_model}},
            },
        }
    }


def create_app(engine: Engine, settings: ServiceSettings) -> FastAPI:
    """The service's ASGI application over ``engine`` (which it closes on shutdown)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.limiter = anyio.CapacityLimiter(settings.threads)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(engine.close)

    app = FastAPI(
        title="ecgbio identity service",
        version=API_VERSION,
        description="Enrol, identify and verify people by their ECG (see docs/service.md). "
        "Every route but /docs and /openapi.json needs 'Authorization: Bearer <token>'.",
        lifespan=lifespan,
        redoc_url=None,  # one docs page, /docs; ReDoc would be a second tokenless route
        swagger_ui_oauth2_redirect_url=None,  # bearer tokens need no OAuth2 redirect page
    )
    problems.install(app)
    app.state.public_text = getattr(engine, "public_text", None)  # every error line passes it
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    api = APIRouter(
        dependencies=[Depends(BearerAuth(settings.token)), Depends(refuse_unknown_query)],
        route_class=problems.GuardedRoute,
        responses=_ERRORS,
    )

    async def compute(request: Request, work: Callable[[], T]) -> T:
        """Run ``work`` in a worker thread, at most ``--threads`` at once."""
        return await anyio.to_thread.run_sync(work, limiter=request.app.state.limiter)

    async def with_records(request: Request, upload: Upload, work: Callable[[list[Probe]], T]) -> T:
        """Stage ``upload``'s records in the worker thread, run ``work`` on them, clean up;
        a library error comes back naming the uploaded files, not the staged ones."""

        def job() -> T:
            with stage(upload) as staged:
                try:
                    return work(staged.probes)
                except EcgbioError as exc:
                    raise ServiceError.from_error(exc, staged.rename) from exc

        return await compute(request, job)

    @api.post("/v1/enroll", summary="Enrol a person", openapi_extra=_body("EnrolJson", "EnrolForm"))
    async def enroll(request: Request) -> dict[str, Any]:
        """Enrol a person from one or more records (quality-gated; all or nothing): the JSON of
        ``ecgbio enroll --json``. ``mode`` new refuses an enrolled id (409)."""
        async with read_upload(request, EnrolOptions, EnrolJson, many=True) as upload:
            options: EnrolOptions = upload.options
            return await with_records(request, upload, lambda p: engine.enroll(p, options))

    @api.post(
        "/v1/identify", summary="Who is this?", openapi_extra=_body("IdentifyJson", "IdentifyForm")
    )
    async def identify(request: Request) -> dict[str, Any]:
        """Ranked candidates and the open-set decision (``decision``: a person or "unknown"):
        the JSON of ``ecgbio identify --json``."""
        async with read_upload(request, IdentifyOptions, IdentifyJson, many=False) as upload:
            options: IdentifyOptions = upload.options
            return await with_records(request, upload, lambda p: engine.identify(p[0], options))

    @api.post(
        "/v1/verify",
        summary="Is this the claimed person?",
        openapi_extra=_body("VerifyJson", "VerifyForm"),
    )
    async def verify(request: Request) -> dict[str, Any]:
        """Accept or reject a claimed identity, with score, threshold and FAR: the JSON of
        ``ecgbio verify --json``; 404 when the claimed person is not enrolled."""
        async with read_upload(request, VerifyOptions, VerifyJson, many=False) as upload:
            options: VerifyOptions = upload.options
            return await with_records(request, upload, lambda p: engine.verify(p[0], options))

    @api.get("/v1/persons", summary="List the enrolled persons")
    async def persons(request: Request) -> dict[str, Any]:
        """The JSON of ``ecgbio gallery list --json``."""
        return await compute(request, engine.persons)

    @api.delete("/v1/persons/{person:path}", summary="Remove a person")
    async def remove(request: Request, person: str) -> dict[str, Any]:
        """Remove a person and all their templates (overwritten in the file): the JSON of
        ``ecgbio gallery remove --json``; 404 when not enrolled. URL-encode the id."""
        return await compute(request, lambda: engine.remove(person))

    @api.get("/v1/gallery", summary="What the gallery holds")
    async def info(request: Request, check: bool = False) -> dict[str, Any]:
        """The JSON of ``ecgbio gallery info --json`` (``check``: verify the whole file)."""
        return await compute(request, lambda: engine.info(check))

    @api.get("/health", summary="Is the service up?")
    async def health(request: Request) -> dict[str, Any]:
        """``status`` ok when the gallery answers; counts and the model, never a person."""
        return await compute(request, engine.health)

    app.include_router(api)
    _document(app)
    return app


async def refuse_unknown_query(request: Request) -> None:
    """Refuse (422) a query parameter the route does not declare, after the token check.

    Why: FastAPI ignores undeclared query parameters, and the record routes read their options
    from the body only, so ``POST /v1/identify?top_k=-1`` or ``/v1/verify?threshold=0.99``
    would be answered with the defaults as if the client had been heard. Options go in the body
    (a form field or a JSON field); only ``GET /v1/gallery`` takes one (``check``).
    """
    if not request.query_params:
        return
    route = request.scope.get("route")
    accepted = _query_names(route.dependant) if isinstance(route, APIRoute) else frozenset()
    for name in request.query_params:
        if name not in accepted:
            where = (
                "send the options in the request's body (a form field or a JSON field), not in "
                "the URL"
                if request.method == "POST"
                else f"this route takes {', '.join(sorted(accepted)) or 'none'}"
            )
            raise ServiceError(422, f"query parameter {name[:40]!r} is not accepted: {where}")


def _query_names(dependant: Any) -> frozenset[str]:
    """The query parameters a route's dependant declares, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


def app_from_environment() -> FastAPI:
    """The application of one worker process of ``ecgbio serve --workers N`` (uvicorn imports
    and calls this in each process it spawns): its own model and gallery connections, from the
    settings the parent process checked and left in the environment.

    A worker that cannot build it (the gallery or the model gone or changed since the parent
    checked them, garbled settings) prints one ``error:`` line (a traceback first if it is a bug)
    and exits with uvicorn's ``STARTUP_FAILURE``: the supervisor then stops the service instead
    of restarting a worker that would fail the same way forever.
    """
    import os
    import sys
    import traceback

    from uvicorn.config import STARTUP_FAILURE

    from ecgbio.service.engine import start_engine
    from ecgbio.service.settings import from_environment

    try:
        settings = from_environment(os.environ)
        return create_app(start_engine(settings), settings)
    except EcgbioError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
    except Exception:
        traceback.print_exc()
        print(
            "error: a worker process could not start (a bug in ecgbio serve: the traceback is "
            "above)",
            file=sys.stderr,
            flush=True,
        )
    sys.exit(STARTUP_FAILURE)


def _document(app: FastAPI) -> None:
    """Add the request models, which the routes read by hand (JSON or multipart), to the
    OpenAPI description, so ``/docs`` shows both forms of every request."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in DOCUMENTED:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
