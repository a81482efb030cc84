"""``ecgbio report``: figures and an HTML page from an evaluation or run directory.

Mounted by ``ecgbio/cli.py`` (``register(app)``), like :mod:`ecgbio.cli_gallery`; the shared
``handle_errors`` and ``emit`` are looked up when the command runs, so importing this module never
imports :mod:`ecgbio.cli` (which imports this one) or matplotlib (which only ``report`` needs).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """``ecgbio.cli.handle_errors``, resolved when the command runs (no import cycle)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ecgbio.cli import handle_errors as shared

        return shared(func)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@handle_errors
def report_cmd(
    source: Annotated[
        Path,
        typer.Argument(
            help="EVAL_DIR (from `ecgbio evaluate --out`: all figures) or RUN_DIR (from "
            "`ecgbio train`: training curves, enrolment beats and the table only)."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default: SOURCE/report).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing report.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Draw ROC, DET, score histograms, CMC, training curves and an HTML page of the figures."""
    from ecgbio.cli import emit
    from ecgbio.report import make_report

    report = make_report(source, out, overwrite=overwrite)
    emit(report.__dict__, as_json, report.lines())


def register(app: typer.Typer) -> None:
    """Mount ``report`` on ``app`` (the ``ecgbio`` typer app)."""
    app.command("report")(report_cmd)
