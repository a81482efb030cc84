"""The README's commands run (#14): every command line of its "## Use" section (the ```bash blocks
and the walk-through's ```console transcript) goes through the real CLI on the shared data, in
README order so that each command's outputs feed the next, or is listed in SKIPPED with the reason
it cannot run here. A README command that is neither run nor listed fails the test, and so does a
long option that the command's ``--help`` does not show.

The commands run verbatim in a folder under tmp_path holding what their placeholder paths name:
``data/ecg-id-database-1.0.0`` is a link to the shared ECG-ID, ``data/ptb-xl`` a small PTB-XL root
(records of 45 patients from the shared subset, as ``ptbxl_database.csv`` + ``records100/``),
``path/to/record.hea``, ``alice_rec1.hea``, ``probe.hea``, ``bob_rec1.hea`` and ``holter.hea``
copies of ECG-ID records (``holter.hea``'s first signal renamed ECG1), ``recording.edf`` and
``dana.csv`` ECG-ID lead I written as EDF and CSV; stores, runs, galleries and evaluations are
created there by the commands themselves. Only ``ecgbio train`` is changed (EDITS): the tiny model
options below replace ``--epochs 40``, so it trains in seconds.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer.main
from typer.testing import CliRunner

from ecgbio.cli import app
from tests.conftest import REPO, shared

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

runner = CliRunner()

ECGID = "ecg-id-database-1.0.0"
PTBXL = "ptb-xl-subset"

# README command (as written, comments dropped) -> why it is not run here.
SKIPPED = {
    "ecgbio download ptbxl --root data/ptb-xl": (
        "needs the network (PhysioNet); prepare ptbxl runs on a small root from the shared subset"
    ),
    "torchrun --nproc_per_node 4 -m ecgbio.cli train --store ... --out ...": (
        "needs torchrun and 4 processes, and names no real store or run ('...'); "
        "DDP training is tested in tests/test_distributed.py"
    ),
}

TINY_MODEL = [
    "--epochs", "1", "--widths", "8,16", "--blocks", "1,1", "--embedding-dim", "16",
    "--batch-size", "16", "--m-per-class", "2",
]  # fmt: skip

# README command -> the argv that runs instead (only training, to keep it to seconds).
EDITS = {
    "ecgbio train --store stores/ptbxl-I --protocol unseen --out runs/unseen --epochs 40": [
        "train", "--store", "stores/ptbxl-I", "--protocol", "unseen", "--out", "runs/unseen",
        *TINY_MODEL,
    ],
    "ecgbio train --store stores/ptbxl-I --out runs/unseen --resume": [
        # --resume needs the interrupted run's own options (the README's run used the defaults)
        "train", "--store", "stores/ptbxl-I", "--out", "runs/unseen", "--resume", *TINY_MODEL,
    ],
}  # fmt: skip

# README command -> the exit code its point is (every other command run must exit 0).
EXPECTED_EXIT = {
    # walk-through: an impostor rejected, a person nobody enrolled refused
    "ecgbio verify ecgid/Person_01/rec_2.hea --gallery people --claim person03": 1,
    "ecgbio identify ecgid/Person_10/rec_1.hea --gallery people": 1,
}

CALIBRATE = "ecgbio gallery calibrate people"


# the README -------------------------------------------------------------------------------------
def use_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("\n## Use\n")
    return text[start : text.index("\n## ", start + 1)]


def fenced(section: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", section, flags=re.S | re.M)


def bash_blocks() -> list[list[str]]:
    """Each ```bash block's command lines, comments dropped, words joined by one space."""
    blocks = []
    for block in fenced(use_section(), "bash"):
        lines = [shlex.split(line, comments=True) for line in block.splitlines()]
        blocks.append([" ".join(words) for words in lines if words])
    return blocks


def console_steps() -> list[tuple[str, list[str]]]:
    """The walk-through's ``$ ecgbio ...`` lines, each with the output printed under it."""
    (block,) = fenced(use_section(), "console")
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((" ".join(shlex.split(line[2:], comments=True)), []))
        else:
            steps[-1][1].append(line)
    return steps


def ecgbio_argv(command: str) -> list[str]:
    """The CLI arguments of a command line (after ``ecgbio`` or ``-m ecgbio.cli``)."""
    words = command.split(" ")
    for i, word in enumerate(words):
        if word in ("ecgbio", "ecgbio.cli"):
            return words[i + 1 :]
    raise AssertionError(f"not an ecgbio command: {command!r}")


def help_of(argv: list[str]) -> tuple[list[str], str]:
    """The (sub)command ``argv`` runs, and its ``--help`` text."""
    command, path = typer.main.get_command(app), []
    for word in argv:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command, path = sub, [*path, word]
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return path, result.output


def invoke(argv: list[str]):
    return runner.invoke(app, argv, env={"COLUMNS": "200"})


def numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", text)]


# the files the README's placeholder paths name --------------------------------------------------
def copy_record(src: Path, dst: Path, first_lead: str | None = None) -> Path:
    """A WFDB record copied under another name (``src``, ``dst`` without suffix)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    lines = src.with_suffix(".hea").read_text().splitlines()
    head = lines[0].split(" ")
    lines[0] = " ".join([dst.name, *head[1:]])
    n_signals = int(head[1])
    for i in range(1, 1 + n_signals):
        fields = lines[i].split(" ", 8)
        fields[0] = f"{dst.name}.dat"
        if i == 1 and first_lead:
            fields[8] = first_lead
        lines[i] = " ".join(fields)
    dst.with_suffix(".hea").write_text("\n".join(lines) + "\n")
    shutil.copyfile(src.with_suffix(".dat"), dst.with_suffix(".dat"))
    return dst.with_suffix(".hea")


def small_ptbxl_root(dst: Path) -> None:
    """A PTB-XL root: all records of 20 patients with several records and of 25 with one."""
    src = shared(PTBXL)
    frame = pd.read_csv(src / "ptbxl_database.csv")
    frame = frame[[(src / f"{name}.hea").is_file() for name in frame["filename_lr"]]]
    counts = frame["patient_id"].value_counts(sort=False)
    patients = set(counts[counts >= 2].index[:20]) | set(counts[counts == 1].index[:25])
    frame = frame[frame["patient_id"].isin(patients)]
    for name in frame["filename_lr"]:
        for suffix in (".hea", ".dat"):
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / f"{name}{suffix}", dst / f"{name}{suffix}")
    frame.to_csv(dst / "ptbxl_database.csv", index=False)


def lead_i(record: Path) -> tuple[np.ndarray, float]:
    import wfdb

    rec = wfdb.rdrecord(str(record), channels=[0])
    return rec.p_signal[:, 0], float(rec.fs)


def write_edf(path: Path, x: np.ndarray, fs: float) -> None:
    import edfio

    edfio.Edf([edfio.EdfSignal(x, fs, label="ECG I", physical_dimension="mV")]).write(path)


def write_csv(path: Path, x: np.ndarray) -> None:
    """One lead I column in mV, no time column (the README's ``--fs 500``)."""
    path.write_text("I\n" + "\n".join(f"{v:.4f}" for v in x) + "\n")


def use_workspace(work: Path) -> None:
    ecgid = shared(ECGID)
    (work / "data").mkdir(parents=True)
    (work / "data" / ECGID).symlink_to(ecgid, target_is_directory=True)
    small_ptbxl_root(work / "data" / "ptb-xl")
    copy_record(ecgid / "Person_01" / "rec_1", work / "path" / "to" / "record")
    copy_record(ecgid / "Person_01" / "rec_1", work / "alice_rec1")
    copy_record(ecgid / "Person_01" / "rec_3", work / "probe")  # 3 weeks after rec_1
    copy_record(ecgid / "Person_02" / "rec_1", work / "bob_rec1")
    copy_record(ecgid / "Person_01" / "rec_6", work / "holter", first_lead="ECG1")


def files_workspace(work: Path) -> None:
    ecgid = shared(ECGID)
    work.mkdir(parents=True)
    x, fs = lead_i(ecgid / "Person_03" / "rec_1")
    write_edf(work / "recording.edf", x, fs)
    x, fs = lead_i(ecgid / "Person_01" / "rec_2")
    assert fs == 500  # the README's --fs 500
    write_csv(work / "dana.csv", x)


def enrol_for_calibration() -> None:
    """What the README says calibrate needs (persons enrolled from 2+ records: --append)."""
    ecgid = shared(ECGID)
    alice = [str(ecgid / "Person_01" / f"rec_{i}.hea") for i in range(2, 6)]
    result = invoke(["enroll", "--gallery", "people", "--id", "alice", "--append", *alice])
    assert result.exit_code == 0, result.output
    carol = [str(ecgid / "Person_03" / f"rec_{i}.hea") for i in range(1, 6)]
    result = invoke(["enroll", "--gallery", "people", "--id", "carol", *carol])
    assert result.exit_code == 0, result.output


def run_readme_command(command: str):
    argv = EDITS.get(command, ecgbio_argv(command))
    if command == CALIBRATE:
        enrol_for_calibration()
    result = invoke(argv)
    expected = EXPECTED_EXIT.get(command, 0)
    assert result.exit_code == expected, f"{command}\n-> exit {result.exit_code}\n{result.output}"
    return result


# the tests --------------------------------------------------------------------------------------
def test_every_readme_command_is_run_or_skipped_with_a_reason():
    use = [c for block in bash_blocks() for c in block]
    walk = [c for c, _ in console_steps()]
    assert len(use) >= 15 and len(walk) >= 5, (use, walk)
    known = {*SKIPPED, *EDITS}
    for command in use + walk:
        if command in SKIPPED:
            continue
        assert command.startswith("ecgbio "), (
            f"README command neither run nor in SKIPPED: {command}"
        )
    stale = known - set(use + walk)
    assert not stale, f"SKIPPED/EDITS name commands the README no longer has: {stale}"
    assert set(EXPECTED_EXIT) <= set(use + walk)


def test_every_long_option_of_a_readme_command_is_in_its_help():
    commands = [c for block in bash_blocks() for c in block] + [c for c, _ in console_steps()]
    for command in commands:
        argv = ecgbio_argv(command)
        path, text = help_of(argv)
        assert path, f"{command}: names no ecgbio command"
        for word in argv:
            option = word.split("=")[0]
            if option.startswith("--") and option != "--help":
                pattern = rf"(?<![\w-]){re.escape(option)}(?![\w-])"
                assert re.search(pattern, text), (
                    f"{command}: {option} not in `{' '.join(path)} --help`"
                )


def test_readme_use_commands_run_in_order_on_real_records(tmp_path, monkeypatch):
    use_block, files_block = bash_blocks()

    work = tmp_path / "use"
    use_workspace(work)
    monkeypatch.chdir(work)
    ran = []
    for command in use_block:
        if command in SKIPPED:
            continue
        result = run_readme_command(command)
        ran.append(command)
        if command.startswith("ecgbio beats "):
            summary = json.loads(result.stdout)
            assert summary["beats"] >= 10 and summary["leads"] == ["ECG I"], summary
        if command.startswith("ecgbio evaluate --store stores/ecgid"):
            summary = json.loads(result.stdout)
            assert summary["persons"] == 89 and summary["protocol"] == "enrol-probe", summary
        if command.startswith("ecgbio identify --gallery people probe.hea"):
            assert json.loads(result.stdout)["person"] == "alice", result.output
        if command.startswith("ecgbio verify --gallery people --claim alice"):
            assert result.stdout.startswith("accept: alice"), result.output
        if command.startswith("ecgbio gallery list people"):
            names = [p["name"] for p in json.loads(result.stdout)["persons"]]
            assert names == ["alice"], names
        if "--lead ECG1" in command:
            assert result.stdout.startswith("identified: alice"), result.output
            assert "lead ECG1 stands in" in result.output, result.output
    assert (work / "stores" / "ptbxl-I").is_dir() and (work / "runs" / "unseen").is_dir()
    assert (work / "evals" / "ecgid" / "report" / "index.html").is_file()  # as the README says
    assert (work / "other").is_dir()
    assert len(ran) == len(use_block) - 2, ran  # all but download and torchrun

    # the formats block: its own folder, as its alice would clash with the gallery above
    work = tmp_path / "files"
    files_workspace(work)
    monkeypatch.chdir(work)
    for command in files_block:
        result = run_readme_command(command)
        if command.startswith("ecgbio enroll"):
            assert result.stdout.startswith("dana: enrolled from 1 record(s)"), result.output


def test_readme_walk_through_prints_what_the_readme_shows(tmp_path, monkeypatch):
    """The transcript's commands run as typed (``ecgid`` a link to the shared ECG-ID); each prints
    the README's lines: the same words, and numbers within 0.002 (another CPU may round apart).

    enroll names each record by its absolute path; the README shows it relative to the folder the
    walk-through ran in, so that folder is taken off before comparing."""
    (tmp_path / "ecgid").symlink_to(shared(ECGID), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for command, expected in console_steps():
        result = run_readme_command(command)
        printed = result.output.replace(f"{tmp_path}/", "").rstrip("\n").splitlines()
        words = [re.sub(r"-?\d+(?:\.\d+)?", "#", line).rstrip() for line in printed]
        readme_words = [re.sub(r"-?\d+(?:\.\d+)?", "#", line).rstrip() for line in expected]
        assert words == readme_words, f"{command}\nprinted:\n{result.output}"
        got, want = numbers("\n".join(printed)), numbers("\n".join(expected))
        np.testing.assert_allclose(got, want, atol=0.002, err_msg=command)
