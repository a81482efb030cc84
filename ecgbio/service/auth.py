"""The bearer-token check every API request passes before its body is read.

Why a FastAPI dependency on :class:`fastapi.security.HTTPBearer`: the OpenAPI description then
declares the scheme, so ``/docs`` offers an "Authorize" button and clients generated from it send
the header. The comparison is :func:`hmac.compare_digest` over the tokens' SHA-256 digests: it
takes the same time whichever character differs, and the digests have equal lengths, so neither
the content nor the length of the token leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ecgbio.service.problems import ServiceError

_bearer = HTTPBearer(auto_error=False, description="The token given to `ecgbio serve`.")
#: what a 401 tells the client to send (RFC 6750)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ecgbio"'}


class BearerAuth:
    """A dependency that lets a request through only with ``Authorization: Bearer <token>``.

    ``token`` None (``--no-auth`` on a loopback host) lets every request through.
    """

    def __init__(self, token: str | None) -> None:
        self._digest = None if token is None else hashlib.sha256(token.encode()).digest()

    async def __call__(
        self, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> None:
        if self._digest is None:
            return
        if credentials is None:
            raise ServiceError(
                401,
                "no bearer token: send the header 'Authorization: Bearer <token>'",
                headers=CHALLENGE,
            )
        given = hashlib.sha256(credentials.credentials.encode("utf-8", "replace")).digest()
        if not hmac.compare_digest(given, self._digest):
            raise ServiceError(
                401,
                "wrong bearer token",
                headers={
                    **CHALLENGE,
                    "WWW-Authenticate": ('Bearer realm="ecgbio", error="invalid_token"'),
                },
            )
