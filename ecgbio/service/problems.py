"""Every failure as ``{"error": "<one line>"}`` with the status that fits it; never a traceback.

Why here and not in each endpoint: the library already says what went wrong in one line (the
very line the CLI prints after ``error:``) and its exception classes say what kind of refusal it
was, so one table maps classes to HTTP statuses:

=====  =======================================================================================
400    a malformed request or upload (:class:`~ecgbio.service.uploads.UploadError`), an option
       the library refuses, any other :class:`~ecgbio.errors.EcgbioError`
401    no or wrong bearer token (with ``WWW-Authenticate: Bearer``)
404    the person named is not enrolled (:class:`~ecgbio.gallery.NotEnrolledError`)
409    the person is already enrolled (new enrolment), or the gallery is empty (identify)
413    the request body is larger than ``--max-upload-mb``
415    a body that is neither JSON nor multipart/form-data
422    a field of the wrong type or out of range, an unknown field or query parameter, a
       ``far`` that is not an operating point (:class:`FieldError`), or a record that cannot be
       used (unreadable, NaN, flat, absurd rate, too few beats, failed the quality gate)
503    the gallery is busy (another writer held it too long), or its file is missing, damaged
       or unreadable (:class:`GalleryUnavailableError`, a fault on the server): try again
500    a bug: the traceback goes to the server's log under an incident id, the client gets
       one generic line with that id
=====  =======================================================================================
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ecgbio.errors import EcgbioError, RecordError, shorten
from ecgbio.gallery.errors import (
    AlreadyEnrolledError,
    EmptyGalleryError,
    EnrolmentRefusedError,
    GalleryBusyError,
    NotEnrolledError,
)

log = logging.getLogger("ecgbio.service")


class FieldError(EcgbioError):
    """A field's value that passed its type and range checks but that this gallery or model
    cannot honour (a ``far`` that is not one of its operating points): answered 422."""


class GalleryUnavailableError(EcgbioError):
    """The gallery's file is missing, unreadable, damaged or not this model's: a fault on the
    server, not in the request (answered 503; the service tries the file again on the next
    request, so a restored file is used without a restart)."""


#: status by library exception class; the first class the error is an instance of wins
STATUS_BY_ERROR: tuple[tuple[type[EcgbioError], int], ...] = (
    (NotEnrolledError, 404),
    (AlreadyEnrolledError, 409),
    (EmptyGalleryError, 409),
    (GalleryBusyError, 503),
    (GalleryUnavailableError, 503),
    (EnrolmentRefusedError, 422),
    (RecordError, 422),
    (FieldError, 422),
)


class ErrorBody(BaseModel):
    """What every failed request answers: the problem in one line."""

    error: str


class ServiceError(Exception):
    """An HTTP answer other than success: a status and one line (and headers, e.g. for 401)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = shorten(message)
        self.headers = dict(headers or {})

    @classmethod
    def from_error(
        cls, exc: EcgbioError, rename: Callable[[str], str] | None = None
    ) -> ServiceError:
        """The problem for a library error; ``rename`` turns staged file paths back into the
        names the client uploaded (see :meth:`ecgbio.service.uploads.Staged.rename`)."""
        status = next((s for kind, s in STATUS_BY_ERROR if isinstance(exc, kind)), 400)
        text = str(exc) if rename is None else rename(str(exc))
        headers = {"Retry-After": "5"} if status == 503 else None
        return cls(status, text, headers)

    def response(self, public: Callable[[str], str] | None = None) -> JSONResponse:
        """The answer; ``public`` rewrites the line first (server paths to names, see
        :func:`answer`)."""
        text = self.message if public is None else shorten(public(self.message))
        return JSONResponse({"error": text}, self.status, headers=self.headers)


def answer(request: Request, error: ServiceError) -> JSONResponse:
    """The one place every error answered by a handler leaves through: its line passes the
    application's ``state.public_text`` when it has one (the engine's: the gallery's and the
    model's paths on the server become their names), whichever layer raised it."""
    public = getattr(request.app.state, "public_text", None)
    return error.response(public if callable(public) else None)


def validation_line(exc: RequestValidationError | Any) -> str:
    """Pydantic's list of errors as one line: the first one, where it is, how many more.

    The input values are never echoed: they may be thousands of samples, or personal data.
    """
    errors = list(exc.errors())
    if not errors:
        return "invalid request"
    first = errors[0]
    # a union's member ("list[list[float]]") is pydantic's detail, not a place in the request
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and "[" not in str(p)]
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{'.'.join(loc) or 'body'}: {message}{more}"


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return answer(request, exc)


async def _library(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EcgbioError)
    return answer(request, ServiceError.from_error(exc))


async def _validation(request: Request, exc: Exception) -> Response:
    return answer(request, ServiceError(422, validation_line(exc)))


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    return answer(request, ServiceError(exc.status_code, str(exc.detail), headers))


async def _bug(request: Request, exc: Exception) -> Response:
    return bug_response(request, exc)


def bug_response(request: Request, exc: BaseException) -> JSONResponse:
    """Log the traceback with an incident id and answer 500 with that id only."""
    incident = secrets.token_hex(4)
    log.error("incident %s: %s %s failed", incident, request.method, request.url.path, exc_info=exc)
    return ServiceError(
        500,
        f"internal error {incident}: a bug in ecgbio serve, not a problem with the request; "
        "the traceback is in the server's log under this id",
    ).response()


#: exceptions a route may raise on purpose, answered by the handlers of :func:`install`
EXPECTED = (ServiceError, EcgbioError, RequestValidationError, StarletteHTTPException)


class GuardedRoute(APIRoute):
    """A route that answers an unexpected exception itself (500, traceback logged once).

    Why: Starlette answers an unhandled exception through its outermost middleware and then
    re-raises it, so the server would log it twice and the client could see the connection
    dropped; here the bug is logged once and the request still gets its one-line JSON.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except EXPECTED:
                raise
            except ClientDisconnect:
                return ServiceError(
                    400, "the client disconnected before the request was read"
                ).response()
            except Exception as exc:
                return bug_response(request, exc)

        return guarded


def install(app: Any) -> None:
    """Register the handlers that turn every expected failure into ``{"error": ...}``."""
    app.add_exception_handler(ServiceError, _problem)
    app.add_exception_handler(EcgbioError, _library)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _bug)  # a bug outside a route (a middleware)
