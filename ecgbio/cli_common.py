"""What every ``ecgbio`` sub-command module shares: the error wrapper, the printer, the exit codes.

Kept apart from :mod:`ecgbio.cli` so that :mod:`ecgbio.cli_gallery` and :mod:`ecgbio.cli_report` use
the same wrapper without importing the app that mounts them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer

from ecgbio.errors import EcgbioError, shorten

EXIT_ERROR = 2
F = TypeVar("F", bound=Callable[..., Any])
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


#: Set (to anything but 0) to see the traceback behind an unexpected error (``ecgbio --debug``).
DEBUG_ENV = "ECGBIO_DEBUG"


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "0") not in ("", "0")


def handle_errors(func: F) -> F:
    """Turn every failure into a one-line message and exit code 2 (Ctrl-C: 130).

    ecgbio's own errors name the file and the problem. Anything else is a bug, but a traceback
    with exit code 1 would read as an answer to a script (``identify``/``verify`` exit 1 for
    "unknown"/"reject"), so it too becomes one line and exit code 2; ``ecgbio --debug`` (or
    ``ECGBIO_DEBUG=1``) shows the traceback instead.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EcgbioError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing half-written was kept; rerun to resume", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # the CLI framework's own exits and usage errors
        except Exception as exc:
            if debugging():
                raise
            command = func.__name__.removesuffix("_cmd").replace("_", " ")
            typer.echo(
                f"error: {command}: unexpected {type(exc).__name__}: {shorten(str(exc), 300)} "
                f"(a bug: run with ecgbio --debug for the traceback and report it)",
                err=True,
            )
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper  # type: ignore[return-value]


def emit(data: dict[str, Any], as_json: bool, lines: list[str] | None = None) -> None:
    """Print ``data`` as JSON for scripts, or ``lines`` for people."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif lines != []:
        typer.echo(
            "\n".join(lines if lines is not None else [f"{k}: {v}" for k, v in data.items()])
        )
