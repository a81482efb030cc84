"""The CLI: exit codes, one-line errors, JSON output, on a PTB-XL-shaped synthetic fixture."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ecgbio.cli import EXIT_ERROR, app
from ecgbio.sources.synthetic import write_synthetic_cohort
from tests.cli_checks import one_line_error as assert_one_line_error
from tests.conftest import shared

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ptbxl_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ptbxl")
    return write_synthetic_cohort(
        root,
        n_persons=4,
        records_per_person=[1, 2, 2, 3],
        duration_s=8.0,
        rate=500,
        n_leads=12,
        seed=1,
    )


def test_prepare_ptbxl_on_a_ptbxl_shaped_folder(ptbxl_root, tmp_path):
    out = tmp_path / "store"
    result = run(
        "prepare",
        "ptbxl",
        "--root",
        ptbxl_root,
        "--out",
        out,
        "--rate",
        "500",
        "--leads",
        "I,II",
        "--workers",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["records_total"] == 8 and summary["records_read"] == 8
    assert summary["persons"] == 4 and summary["persons_multi_record"] == 3
    assert summary["leads"] == ["I", "II"] and summary["beats"] > 8 * 5
    info = json.loads(run("store", "info", out, "--json").stdout)
    assert info["shape"][1:] == [2, 200] and info["persons"] == 4


def test_prepare_ptbxl_at_100_hz_prints_a_summary(ptbxl_root, tmp_path):
    result = run(
        "prepare",
        "ptbxl",
        "--root",
        ptbxl_root,
        "--out",
        tmp_path / "s100",
        "--rate",
        "100",
        "--before",
        "0.2",
        "--after",
        "0.2",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert "beats" in result.stdout and "40 samples x 1 lead(s) I at 100 Hz" in result.stdout
    assert "persons      4, 3 with >= 2 records" in result.stdout


def test_prepare_refuses_to_overwrite(ptbxl_root, tmp_path):
    out = tmp_path / "once"
    assert run("prepare", "ptbxl", "--root", ptbxl_root, "--out", out, "-q").exit_code == 0
    result = run("prepare", "ptbxl", "--root", ptbxl_root, "--out", out, "-q")
    assert_one_line_error(result, str(out), "already exists", "--overwrite")


def test_prepare_wfdb_on_a_person_folder_layout(ptbxl_root, tmp_path):
    layout = tmp_path / "persons"
    for i, hea in enumerate(sorted((ptbxl_root / "records100").rglob("*.hea"))[:4]):
        person = layout / f"Person_{i // 2 + 1:02d}"
        person.mkdir(parents=True, exist_ok=True)
        for part in hea.parent.glob(hea.stem + ".*"):
            shutil.copy(part, person / part.name)
    result = run(
        "prepare", "wfdb", "--root", layout, "--out", tmp_path / "st", "--rate", "100", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["persons"] == 2


def test_missing_root_is_a_one_line_error(tmp_path):
    result = run("prepare", "wfdb", "--root", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert_one_line_error(result, "nowhere", "records folder not found")


def test_wrong_rate_folder_says_which_rate_exists(tmp_path):
    root = tmp_path / "only100"
    write_synthetic_cohort(root, n_persons=2, records_per_person=1, duration_s=6.0, seed=2)
    shutil.rmtree(root / "records500")
    result = run("prepare", "ptbxl", "--root", root, "--out", tmp_path / "o", "--rate", "500")
    assert_one_line_error(result, "no records500 files", "use --rate 100")


def test_beats_command_json_and_errors(ptbxl_root):
    record = next((ptbxl_root / "records500").rglob("*.hea"))
    result = run("beats", record, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["beats"] >= 5 and data["window_samples"] == 40 and data["leads"] == ["I"]
    assert_one_line_error(run("beats", record, "--leads", "X9"), record.name, "no lead 'X9'")
    assert_one_line_error(
        run("beats", record.parent / "missing.hea"), "missing.hea", "header file not found"
    )
    assert_one_line_error(run("beats", record, "--normalize", "loud"), "normalize must be one of")


def test_store_info_on_a_missing_store(tmp_path):
    assert_one_line_error(run("store", "info", tmp_path / "x"), "beat store not found")


def test_download_unreachable_is_a_clear_error(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(
        "download",
        "ptbxl",
        "--root",
        tmp_path / "ptbxl",
        "--url",
        f"http://127.0.0.1:{port}/ptb-xl/",
        "-q",
    )
    assert_one_line_error(result, "cannot reach", "check your connection")
    assert not (tmp_path / "ptbxl").exists()


def test_demo_runs_end_to_end(tmp_path):
    args = ("demo", "--out", tmp_path / "demo", "--persons", "10", "--enrolled", "3")
    result = run(*args, "--epochs", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["prepare"]["persons"] == 10 and data["prepare"]["beats"] > 0
    assert data["identification"]["persons"] == 3 and data["identification"]["probes"] == 6
    # a second run replaces the demo's own directory (its evaluation included)
    assert run(*args, "--epochs", "1", "--json").exit_code == 0


def test_demo_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert_one_line_error(run("demo", "--out", tmp_path / "mine"), "not an ecgbio demo directory")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "ecgbio"
    if not exe.exists():
        pytest.skip("ecgbio console script not installed in this environment")
    out = subprocess.run([exe, "beats", "/nonexistent/rec.hea"], capture_output=True, text=True)
    assert out.returncode == EXIT_ERROR
    assert (
        out.stderr.strip() == "error: /nonexistent/rec.hea: header file not found "
        "(expected a WFDB .hea file)"
    )


def test_prepare_real_ptbxl_subset_slice(tmp_path):
    root = shared("ptb-xl-subset")
    from ecgbio.config import BeatConfig
    from ecgbio.prepare import prepare_store
    from ecgbio.sources.ptbxl import ptbxl_records

    specs = ptbxl_records(root, rate=100)[:40]
    summary = prepare_store(specs, tmp_path / "real", BeatConfig(rate=100), progress=False)
    assert summary.records_read >= 38 and summary.beats > 300


def _bad_record(kind: str, directory: Path) -> Path:
    import numpy as np

    from tests.conftest import simulate_ecg, write_wfdb

    if kind == "unparsable header":
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "bad.hea").write_text("not a header\n")
        return directory / "bad.hea"
    if kind == "flat":
        return write_wfdb(directory, "bad", np.full((3000, 1), 0.2), 500)
    if kind == "absurd rate":
        return write_wfdb(directory, "bad", simulate_ecg(4, 500), 20_000_000)
    if kind == "too short":
        return write_wfdb(directory, "bad", simulate_ecg(1, 500), 500)
    if kind == "too few beats":
        return write_wfdb(
            directory, "bad", np.random.default_rng(0).normal(0, 0.05, (5000, 1)), 500
        )
    path = write_wfdb(directory, "bad", simulate_ecg(4, 500), 500)
    dat = Path(str(path) + ".dat")
    if kind == "missing dat":
        dat.unlink()
    else:  # truncated dat
        dat.write_bytes(dat.read_bytes()[:777])
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("unparsable header", "unreadable WFDB header"),
        ("missing dat", "signal file bad.dat is missing"),
        ("truncated dat", "signal file bad.dat is truncated or the header's length is wrong"),
        ("flat", "signal is constant (flat) throughout"),
        ("absurd rate", "is outside 50-20000 Hz"),
        ("too short", "long after cropping; need >= 2 s"),
        ("too few beats", "usable beats (need 3;"),
    ],
)
def test_every_bad_record_is_a_one_line_error_with_exit_code_2(tmp_path, kind, message):
    path = _bad_record(kind, tmp_path / kind.replace(" ", "_"))
    assert_one_line_error(run("beats", path), "bad.hea", message)
