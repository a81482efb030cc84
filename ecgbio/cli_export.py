"""``ecgbio export --onnx``: write a run's embedding network as ONNX (see :mod:`ecgbio.export`).

Mounted by ``ecgbio/cli.py`` (``register(app)``), like :mod:`ecgbio.cli_report`; torch and the
exporter load only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ecgbio.cli_common import AsJson, emit, handle_errors
from ecgbio.cli_gallery import ModelDir
from ecgbio.config import DEFAULT_MODEL
from ecgbio.errors import ConfigError


@handle_errors
def export_cmd(
    onnx: Annotated[
        bool,
        typer.Option(
            "--onnx", help="Export to ONNX, for inference without torch (the only format)."
        ),
    ] = False,
    model: ModelDir = DEFAULT_MODEL,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="File to write (default: MODEL_DIR/model.onnx, which auto uses)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    as_json: AsJson = False,
) -> None:
    """Export a model's embedding network, checked against torch before it is written.

    With MODEL_DIR/model.onnx in place, enroll, identify, verify and evaluate run it through ONNX
    Runtime (--backend auto) without importing torch; it is refused once the weights change."""
    if not onnx:
        raise ConfigError("choose the format: --onnx (the only one so far)")
    from ecgbio.export import export_onnx

    result = export_onnx(model, out, force=force)
    emit(result.__dict__, as_json, result.lines())


def register(app: typer.Typer) -> None:
    """Mount ``export`` on ``app`` (the ``ecgbio`` typer app)."""
    app.command("export")(export_cmd)
