"""How a CLI refusal must look, for every test that feeds a command bad input."""

from __future__ import annotations

from pathlib import Path

from click.testing import Result

from ecgbio.cli_common import EXIT_ERROR


def one_line_error(
    result: Result, *fragments: str, path: Path | str | None = None, only_output: bool = False
) -> str:
    """Exit code 2 and one line ``error: ...`` on stderr holding every fragment: no traceback,
    not the guard's "unexpected" (a bug), nothing raised but the exit. ``path``: the line must
    name that file first. ``only_output``: nothing else was printed either (a script reading
    stdout sees no answer). Returns the line."""
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = result.stderr.strip()
    assert text.startswith("error: ") and "\n" not in text, text
    assert "Traceback" not in result.output and "unexpected" not in text, text
    if path is not None:
        assert text.startswith(f"error: {path}"), text
    if only_output:
        assert result.output.strip() == text, result.output
    for fragment in fragments:
        assert fragment in text, text
    return text
