"""The CLI's last line of defence: any failure is one line and exit code 2, never a traceback.

``identify`` and ``verify`` answer with exit codes (0 recognised / accept, 1 unknown / reject), so a
crash that exits 1 would read as an answer; an unexpected exception must exit 2 instead.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import ecgbio.cli_gallery as cli_gallery
from ecgbio.cli import EXIT_ERROR, app
from ecgbio.errors import MAX_MESSAGE, EcgbioError, shorten

runner = CliRunner()


class BoomError(RuntimeError):
    pass


def _explode(*_args, **_kwargs):
    raise BoomError("something nobody planned for")


@pytest.mark.parametrize(
    "argv",
    [
        ["identify", "probe.hea", "--gallery", "g"],
        ["verify", "probe.hea", "--gallery", "g", "--claim", "alice"],
    ],
)
def test_an_unexpected_exception_is_one_line_and_exit_2(monkeypatch, tmp_path, argv):
    monkeypatch.setattr(cli_gallery, "_open", _explode)
    monkeypatch.delenv("ECGBIO_DEBUG", raising=False)
    result = runner.invoke(
        app, [str(tmp_path / a) if a.endswith((".hea", "g")) else a for a in argv]
    )
    assert result.exit_code == EXIT_ERROR
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(
        f"error: {argv[0]}: unexpected BoomError: something nobody planned for"
    )
    assert "--debug" in lines[0] and "Traceback" not in result.output


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr(cli_gallery, "_open", _explode)
    monkeypatch.delenv("ECGBIO_DEBUG", raising=False)
    result = runner.invoke(
        app, ["--debug", "identify", str(tmp_path / "p.hea"), "--gallery", str(tmp_path / "g")]
    )
    assert isinstance(result.exception, BoomError)  # raised through, traceback and all
    monkeypatch.delenv("ECGBIO_DEBUG", raising=False)


def test_long_values_are_cut_in_the_middle_not_echoed_whole():
    person = "x" * 10_000
    error = EcgbioError(f"a person id must be short, got {person!r}", "g" * 5_000)
    text = str(error)
    assert len(text) < MAX_MESSAGE + 300 and "characters cut" in text
    assert text.startswith("ggg") and text.endswith("x'")
    assert shorten("short") == "short" and shorten("a\nb") == "a b"


def test_a_long_person_id_is_refused_in_a_readable_line(tmp_path):
    result = runner.invoke(
        app,
        ["enroll", str(tmp_path / "r.hea"), "--gallery", str(tmp_path / "g"), "--id", "y" * 10_000],
    )
    assert result.exit_code == EXIT_ERROR
    line = result.output.strip()
    assert "\n" not in line and len(line) < MAX_MESSAGE + 300 and line.startswith("error:")
    assert line.startswith("error: --id: a person id must be printable text")
    assert "(10,000 characters)" in line
    assert not (tmp_path / "g").exists()
