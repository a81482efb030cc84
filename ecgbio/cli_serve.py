"""``ecgbio serve``: the gallery as an HTTP identity service (see :mod:`ecgbio.service`).

A thin layer like the other commands: it turns options into :class:`ServiceSettings`, refuses an
unsafe set-up in one line with exit code 2 (no token off loopback, a token file others can read,
``--no-auth`` on a reachable host, half a TLS pair, a port in use), loads the model once, opens
(or creates) the gallery once, and hands over to uvicorn until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ecgbio.cli_common import handle_errors
from ecgbio.cli_gallery import DEFAULT_MAX_MINUTES, MaxMinutes, ModelDir, read_limit_s
from ecgbio.config import DEFAULT_MODEL
from ecgbio.service.settings import (
    DEFAULT_HOST,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT_S,
    TOKEN_ENV,
    ServiceSettings,
    default_workers,
    load_token,
    upload_bytes,
    worker_environment,
)


@handle_errors
def serve(
    gallery: Annotated[
        Path, typer.Option("--gallery", help="Gallery directory (created when missing).")
    ],
    model: ModelDir = DEFAULT_MODEL,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on (0.0.0.0: every interface; needs a token)."
        ),
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = DEFAULT_PORT,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help=f"File holding the bearer token (mode 600); else ${TOKEN_ENV} is read.",
            show_default=False,
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="No token (accepted on 127.0.0.1, ::1, localhost only)."),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="Requests computed at once (default: the CPU count).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Worker processes sharing the port, each with its own model (default: one "
            "per core, at most 4; 1: a single process).",
            show_default=False,
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest request body accepted (413 beyond).")
    ] = DEFAULT_MAX_UPLOAD_MB,
    max_minutes: MaxMinutes = DEFAULT_MAX_MINUTES,
    request_timeout: Annotated[
        float,
        typer.Option(
            "--request-timeout",
            help="Seconds a request may take to arrive, plus 1 s per 500 bytes of body (408 "
            "beyond): slow or stalled clients are cut off.",
        ),
    ] = DEFAULT_REQUEST_TIMEOUT_S,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections",
            help="Connections each worker holds at once (503 beyond); 0: from the open-files "
            "limit (ulimit -n) less 64.",
        ),
    ] = 0,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(
            "--ssl-certfile", help="TLS certificate (PEM), with --ssl-keyfile.", show_default=False
        ),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option("--ssl-keyfile", help="TLS private key (PEM).", show_default=False),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log",
            help="Log every request line (off by default: paths can hold person ids).",
        ),
    ] = False,
) -> None:
    """Serve the gallery over HTTP: enrol, identify, verify, list, remove (docs/service.md)."""
    settings = ServiceSettings(
        gallery=gallery,
        model=model,
        host=host,
        port=port,
        token=load_token(token_file) if not no_auth or token_file else None,
        no_auth=no_auth,
        threads=threads if threads is not None else (os.cpu_count() or 1),
        workers=workers if workers is not None else default_workers(),
        max_upload_bytes=upload_bytes(max_upload_mb),
        read_limit_s=read_limit_s(max_minutes),
        request_timeout_s=request_timeout,
        max_connections=max_connections,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        access_log=access_log,
    ).checked()
    # what the workers will read, read back here first: a refusal is one line now, not a
    # worker that cannot start
    environment = worker_environment(settings) if settings.workers > 1 else None
    from ecgbio.service import server

    sock = server.bind(settings)
    try:
        from ecgbio.service.app import create_app
        from ecgbio.service.engine import start_engine

        engine = start_engine(settings)
        try:
            app = create_app(engine, settings)
            persons = engine.health()["persons"]
            for line in server.warnings_for(settings):
                typer.echo(f"warning: {line}", err=True)
            typer.echo(
                server.started_line(settings, sock.getsockname()[1], persons, engine.created),
                err=True,
            )
            if settings.workers > 1:
                engine.close()  # each worker opens its own; this one only checked the set-up
                server.run_workers(settings, sock, environment)
            else:
                server.run(app, settings, sock)
        finally:
            engine.close()  # closed already when uvicorn shut down; not when it never started
    finally:
        sock.close()
    typer.echo("ecgbio serve: stopped", err=True)


def register(app: typer.Typer) -> None:
    """Mount ``serve`` on ``app`` (the ``ecgbio`` typer app)."""
    app.command("serve")(serve)
