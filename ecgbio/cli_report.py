"""``ecgbio report``: figures and an HTML page from an evaluation or run directory.

Mounted by ``ecgbio/cli.py`` (``register(app)``), like :mod:`ecgbio.cli_gallery`; importing this
module never imports matplotlib (which only ``report`` needs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ecgbio.cli_common import AsJson, emit, handle_errors


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
    as_json: AsJson = False,
) -> None:
    """Draw ROC, DET, score histograms, CMC, training curves and an HTML page of the figures."""
    from ecgbio.report import make_report

    report = make_report(source, out, overwrite=overwrite)
    emit(report.__dict__, as_json, report.lines())


def register(app: typer.Typer) -> None:
    """Mount ``report`` on ``app`` (the ``ecgbio`` typer app)."""
    app.command("report")(report_cmd)
