"""Fuzzing the record reader: mutated real headers and signal files give beats or one clean error.

A seeded generator takes real records of ../shared/data (ECG-ID, PTB-XL, MIT-BIH, CinC 2017: four
WFDB flavours) and mutates one thing at a time: a header field (sampling rate, length, gain,
baseline, format, units, lead name, signal count), a header line (dropped, duplicated, truncated,
bytes flipped), or the signal file (truncated, emptied, bytes flipped, garbage appended, pinned
to one value). Every outcome of ``ecgbio beats`` must be either beats (exit 0, JSON) or one line
``error: ...`` with exit code 2 that is not the CLI guard's "unexpected" (which means a bug).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ecgbio.cli import EXIT_ERROR, app
from tests.conftest import shared

runner = CliRunner()
CASES = 300
SEED = 20261126
#: (database folder, record path inside it without extension)
SOURCES = [
    ("ecg-id-database-1.0.0", "Person_01/rec_1"),
    ("ptb-xl-subset", "records100/00000/00001_lr"),
    ("mitdb", "100"),
    ("cinc2017", "training2017/A00001"),
]
WEIRD_NUMBERS = ["0", "-1", "-500", "nan", "inf", "1e9", "1e-40", "1e40", "abc", "", "3.5.1"]


def _header_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


def _mutate_field(lines: list[str], rng: random.Random) -> list[str]:
    """One whitespace-separated field of the record line or of a signal line, replaced."""
    data_rows = [i for i, ln in enumerate(lines) if ln and not ln.startswith("#")]
    i = rng.choice(data_rows)
    fields = lines[i].split(" ")
    j = rng.randrange(len(fields))
    if i == data_rows[0] or rng.random() < 0.5:
        fields[j] = rng.choice(WEIRD_NUMBERS)
    else:  # a signal line: gain with units, format, or the lead name
        choice = rng.choice(["gain", "format", "name"])
        if choice == "gain" and len(fields) > 2:
            fields[2] = rng.choice(["1e-40/mV", "0/mV", "-200/mV", "200/V", "200/uV", "nan/mV"])
        elif choice == "format" and len(fields) > 1:
            fields[1] = rng.choice(["8", "80", "310", "311", "999", "16x", "212+3"])
        else:
            fields[-1] = rng.choice(["I", "ECG I", "lead ü", "", "I I", "\u200b"])
    lines[i] = " ".join(fields)
    return lines


def _mutate_lines(lines: list[str], rng: random.Random) -> list[str]:
    i = rng.randrange(len(lines))
    action = rng.choice(["drop", "duplicate", "truncate", "flip", "signals"])
    if action == "drop":
        del lines[i]
    elif action == "duplicate":
        lines.insert(i, lines[i])
    elif action == "truncate":
        lines[i] = lines[i][: rng.randrange(max(1, len(lines[i])))]
    elif action == "flip" and lines[i]:
        k = rng.randrange(len(lines[i]))
        lines[i] = lines[i][:k] + chr(rng.randrange(33, 127)) + lines[i][k + 1 :]
    else:  # the record line's signal count
        fields = lines[0].split(" ")
        if len(fields) > 1:
            fields[1] = str(rng.choice([0, 1, 3, 40, -2]))
            lines[0] = " ".join(fields)
    return lines


def _mutate_signal(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    action = rng.choice(["truncate", "empty", "flip", "append", "pin"])
    if action == "truncate":
        data = data[: rng.randrange(max(1, len(data)))]
    elif action == "empty":
        data = bytearray()
    elif action == "flip":
        for _ in range(rng.randrange(1, 64)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif action == "append":
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 999)))
    else:  # every byte the same: a flat or a railed signal, depending on the format
        data = bytearray([rng.choice([0x00, 0x7F, 0xFF])]) * len(data)
    path.write_bytes(bytes(data))


def _case(rng: random.Random, tmp: Path) -> tuple[Path, str]:
    """Copy one real record into ``tmp`` and mutate it once; return the header and the change."""
    folder, record = rng.choice(SOURCES)
    root = shared(folder)
    src = root / f"{record}.hea"
    name = Path(record).name
    for file in src.parent.glob(f"{name}.*"):
        if file.suffix in (".hea", ".dat", ".mat"):
            shutil.copyfile(file, tmp / file.name)
    header = tmp / f"{name}.hea"
    kind = rng.choice(["field", "lines", "signal"])
    if kind == "signal":
        signal = next(p for p in tmp.iterdir() if p.suffix in (".dat", ".mat"))
        _mutate_signal(signal, rng)
    else:
        mutate: Callable = _mutate_field if kind == "field" else _mutate_lines
        header.write_text("\n".join(mutate(_header_lines(header), rng)) + "\n")
    return header, f"{folder}/{record} ({kind})"


@pytest.mark.realdata
@pytest.mark.slow
def test_mutated_records_give_beats_or_one_clean_error(tmp_path):
    rng = random.Random(SEED)
    outcomes = {"beats": 0, "refused": 0}
    for n in range(CASES):
        case_dir = tmp_path / f"c{n}"
        case_dir.mkdir()
        header, what = _case(rng, case_dir)
        result = runner.invoke(app, ["beats", str(header), "--json"])
        context = f"case {n}: {what}: {result.output[-500:]}"
        assert result.exit_code in (0, EXIT_ERROR), context
        if result.exit_code == 0:
            json.loads(result.stdout)
            outcomes["beats"] += 1
        else:
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), context
            assert "unexpected" not in lines[0], context  # the CLI guard caught a bug
            outcomes["refused"] += 1
        shutil.rmtree(case_dir)
    assert outcomes["beats"] and outcomes["refused"], outcomes  # both kinds were exercised
