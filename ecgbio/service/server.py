"""Run the service on uvicorn: bind the port, TLS if asked, logs, graceful shutdown.

Why the socket is bound here rather than by uvicorn: a port already in use (or a host that does
not resolve) is then refused in one line with exit code 2 like every other ecgbio error, before
the model is loaded, instead of uvicorn's log line and exit code 1; and ``--port 0`` (any free
port) can say which port it got.

TLS: uvicorn's own ``ssl_certfile`` / ``ssl_keyfile``; without them the token and the ECG cross
the network in clear text, so a non-loopback server without TLS warns (a TLS-terminating proxy
in front of it is the other correct set-up).
"""

from __future__ import annotations

import copy
import functools
import signal
import socket
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ecgbio.errors import ConfigError
from ecgbio.service.settings import ServiceSettings, is_loopback

if TYPE_CHECKING:
    from fastapi import FastAPI


def bind(settings: ServiceSettings) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line :class:`ConfigError`."""
    try:
        infos = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"--host {settings.host}: cannot resolve it ({exc.strerror})") from None
    except UnicodeError:  # the IDNA codec refuses the name (an empty label: bad..host)
        raise ConfigError(
            f"--host {settings.host}: not a valid host name (empty or over-long labels)"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)  # connections made before uvicorn starts wait in the backlog
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc})"
        ) from None
    sock.set_inheritable(True)
    return sock


def log_config(access_log: bool) -> dict[str, Any]:
    """uvicorn's logging set-up, with the service's own logger (incidents) beside it."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["ecgbio.service"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    if not access_log:
        config["loggers"]["uvicorn.access"]["handlers"] = []
    return config


def run(app: FastAPI, settings: ServiceSettings, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until SIGINT / SIGTERM (then finish the requests in flight)."""
    import uvicorn

    config = uvicorn.Config(app, **_uvicorn_options(settings, sock))
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then raises the signal again for the
    # handler it found; ours ends the command quietly (exit code 0) instead of a
    # KeyboardInterrupt or a death by SIGTERM
    originals = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except _Stopped:
        return
    finally:
        for sig, handler in originals.items():
            signal.signal(sig, handler)
    if not server.started:
        sys.exit(2)  # uvicorn logged why (the application failed to start, ...)


#: what uvicorn imports in each worker process of ``--workers N``
APP_FACTORY = "ecgbio.service.app:app_from_environment"


def run_workers(
    settings: ServiceSettings, sock: socket.socket, environment: dict[str, str] | None = None
) -> None:
    """Serve with ``settings.workers`` processes sharing ``sock``, under uvicorn's supervisor
    (it restarts a worker that dies, and stops them all on SIGINT / SIGTERM).

    ``environment``: what :func:`~ecgbio.service.settings.worker_environment` made of
    ``settings`` (made here when not given). A worker that cannot build its application exits
    with uvicorn's ``STARTUP_FAILURE`` after one ``error:`` line
    (:func:`~ecgbio.service.app.app_from_environment`); the supervisor then stops them all
    rather than restarting it forever, and this raises a :class:`ConfigError` (exit code 2).

    Why processes: Python runs one thread of a process at a time, and reading a record and
    cutting its beats is Python; the model's own calls release that lock but are a minority of
    a request's work. Each worker is a spawned interpreter that builds its own model and
    gallery connections from the settings left in its environment
    (:func:`~ecgbio.service.settings.to_environment`); the gallery's lock and transactions keep
    their writes apart, as they keep a service's and a CLI's.
    """
    import os

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from ecgbio.service.settings import worker_environment

    # every variable set, the token's too (empty without one): the workers inherit this
    # environment, and must not read a token the parent ignored (--no-auth)
    os.environ.update(environment or worker_environment(settings))
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        workers=settings.workers,
        **_uvicorn_options(settings, sock),
    )
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise ConfigError("a worker process could not start (its error is above); stopped")


def protocol_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's options that bound slow and idle clients (see :mod:`ecgbio.service.deadlines`):
    its HTTP protocol with a deadline for each request and a connection cap, and the idle time
    between two requests of a kept-alive connection (uvicorn's own, 5 s)."""
    from ecgbio.service.deadlines import RequestDeadlines, default_max_connections

    return {
        "http": functools.partial(
            RequestDeadlines,
            request_timeout=settings.request_timeout_s,
            max_connections=settings.max_connections or default_max_connections(),
        ),
        "timeout_keep_alive": 5,
    }


def _uvicorn_options(settings: ServiceSettings, sock: socket.socket) -> dict[str, Any]:
    return {
        **protocol_options(settings),
        "host": settings.host,
        "port": sock.getsockname()[1],
        "ssl_certfile": str(settings.ssl_certfile) if settings.ssl_certfile else None,
        "ssl_keyfile": str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        "log_config": log_config(settings.access_log),
        "access_log": settings.access_log,
        "server_header": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 30,
    }


class _Stopped(Exception):  # noqa: N818 - a signal, not an error
    """SIGINT or SIGTERM, after uvicorn's graceful shutdown (or before it started)."""


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped


def warnings_for(settings: ServiceSettings) -> list[str]:
    """What the operator should know about a set-up that starts but is weaker than it could be."""
    out = []
    if not settings.tls and not is_loopback(settings.host):
        out.append(
            f"serving {settings.host} without TLS: the token and the ECG records cross the "
            "network in clear text; give --ssl-certfile and --ssl-keyfile, or put a "
            "TLS-terminating proxy in front"
        )
    if settings.no_auth:
        out.append(
            "--no-auth: every process on this machine may enrol, identify and remove persons"
        )
    return out


def started_line(settings: ServiceSettings, port: int, persons: int, created: bool) -> str:
    """The one line that says the service is up, where (the port ``--port 0`` got) and how."""
    url = replace(settings, port=port).url
    return (
        f"ecgbio serve: {'created' if created else 'gallery'} {settings.gallery} ({persons} "
        f"person(s)), model {settings.model}, {settings.workers} worker(s) x "
        f"{settings.threads} thread(s); listening on {url} "
        f"({'no token: loopback only' if settings.no_auth else 'bearer token required'}); "
        f"API docs at {url}/docs"
    )
