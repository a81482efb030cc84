"""What every ``ecgbio`` sub-command module shares: the error wrapper, the printer, the exit codes.

Kept apart from :mod:`ecgbio.cli` so that :mod:`ecgbio.cli_gallery` and :mod:`ecgbio.cli_report` use
the same wrapper without importing the app that mounts them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer

from ecgbio.errors import EcgbioError

EXIT_ERROR = 2
F = TypeVar("F", bound=Callable[..., Any])
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def handle_errors(func: F) -> F:
    """Turn ecgbio errors (and Ctrl-C) into a one-line message and a non-zero exit code."""

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

    return wrapper  # type: ignore[return-value]


def emit(data: dict[str, Any], as_json: bool, lines: list[str] | None = None) -> None:
    """Print ``data`` as JSON for scripts, or ``lines`` for people."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif lines != []:
        typer.echo(
            "\n".join(lines if lines is not None else [f"{k}: {v}" for k, v in data.items()])
        )
