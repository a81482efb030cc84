"""Long and lying records (#16 item 4): read in bounded memory, and a header's claimed length checked.

A 24-hour Holter record is a real input, so it is not refused: enrolment and identification read
its first minutes (``--max-minutes``, 10 by default) and say so; only those samples come off the
disk. A header that claims more samples than its signal file holds is refused before reading.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ecgbio.cli import EXIT_ERROR, app
from ecgbio.cli_gallery import DEFAULT_MAX_MINUTES
from ecgbio.embed import READ_LIMIT_S
from ecgbio.errors import RecordError
from ecgbio.records import read_record
from tests.conftest import shared, simulate_ecg, write_wfdb

runner = CliRunner()


def test_the_cli_default_is_the_embedder_s():
    assert DEFAULT_MAX_MINUTES * 60 == READ_LIMIT_S


def test_a_long_record_is_read_up_to_the_limit_and_says_so(tmp_path):
    path = write_wfdb(tmp_path, "long", simulate_ecg(90, 250, seed=3), 250, ["I"])
    whole = read_record(path, ("I",))
    first = read_record(path, ("I",), max_duration_s=30)
    assert whole.duration_s == pytest.approx(90, abs=0.1)
    assert first.duration_s == pytest.approx(30, abs=0.1)
    assert "read the first 30.0 s of 1.5 min" in first.notes
    assert read_record(path, ("I",), max_duration_s=120).notes == whole.notes  # short enough
    result = runner.invoke(app, ["beats", str(path) + ".hea", "--max-minutes", "0.25", "--json"])
    assert result.exit_code == 0 and "read the first 15.0 s" in result.stdout
    bad = runner.invoke(app, ["beats", str(path) + ".hea", "--max-minutes", "-1"])
    assert bad.exit_code == EXIT_ERROR and "--max-minutes must be >= 0" in bad.output


def test_a_header_claiming_more_than_its_file_holds_is_refused(tmp_path):
    path = write_wfdb(tmp_path, "liar", simulate_ecg(10, 250, seed=1), 250, ["I"])
    header = Path(str(path) + ".hea")
    lines = header.read_text().splitlines()
    fields = lines[0].split()
    fields[3] = str(500_000_000)  # 500 M samples, 23 days at 250 Hz
    header.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")
    with pytest.raises(RecordError, match=r"claims 500,000,000 samples a signal \(555.6 h\)"):
        read_record(path, ("I",))
    result = runner.invoke(
        app, ["enroll", str(header), "--gallery", str(tmp_path / "g"), "--id", "x"]
    )
    assert result.exit_code == EXIT_ERROR
    assert result.output.count("\n") == 1 and "and the file holds" in result.output
    assert not (tmp_path / "g").exists()


def test_a_huge_sparse_record_costs_only_its_first_minutes(tmp_path):
    """The review's case: 500 M samples over a 1 GB sparse signal file (no disk used)."""
    path = write_wfdb(tmp_path, "huge", simulate_ecg(10, 250, seed=2), 250, ["I"])
    header = Path(str(path) + ".hea")
    lines = header.read_text().splitlines()
    fields = lines[0].split()
    fields[3] = str(500_000_000)
    header.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")
    signal = tmp_path / lines[1].split()[0]
    with open(signal, "r+b") as handle:
        handle.truncate(1_000_000_000)  # sparse: the 10 s of ECG, then zeros
    assert os.stat(signal).st_blocks * 512 < 50_000_000  # really sparse on this file system
    rec = read_record(path, ("I",), max_duration_s=60)
    assert rec.duration_s <= 60 and any("read the first 1.0 min of 555.6 h" in n for n in rec.notes)


@pytest.mark.realdata
def test_mitdb_half_hour_read_in_part():
    rec = read_record(shared("mitdb") / "100", ("MLII",), max_duration_s=60)
    assert rec.duration_s == pytest.approx(60, abs=0.1)
    assert "read the first 1.0 min of 30.1 min" in rec.notes


def test_prepare_reads_at_most_its_limit_of_a_record(tmp_path, monkeypatch):
    import ecgbio.prepare as prepare
    from ecgbio.config import BeatConfig
    from ecgbio.sources import RecordSpec
    from ecgbio.store import BeatStore

    path = write_wfdb(tmp_path / "db", "holter", simulate_ecg(60, 250, seed=4), 250, ["I"])
    monkeypatch.setattr(prepare, "PREPARE_READ_LIMIT_S", 20.0)  # an hour, scaled down
    spec = RecordSpec(path=path, person="p", record="holter")
    prepare.prepare_store([spec], tmp_path / "s", BeatConfig(), progress=False)
    store = BeatStore.open(tmp_path / "s")
    peaks = store.index["peak"].to_numpy()
    assert len(peaks) >= 10 and peaks.max() < 20 * store.config.rate


def test_a_header_without_a_length_is_still_read_in_part(tmp_path):
    """The length is optional in a WFDB header; wfdb cannot cut such a record by itself."""
    path = write_wfdb(tmp_path, "nolen", simulate_ecg(90, 250, seed=5), 250, ["I"])
    header = Path(str(path) + ".hea")
    lines = header.read_text().splitlines()
    lines[0] = " ".join(lines[0].split()[:3])  # name, signals, rate: no length
    header.write_text("\n".join(lines) + "\n")
    rec = read_record(path, ("I",), max_duration_s=30)
    assert rec.duration_s == pytest.approx(30, abs=0.1)
    assert "read the first 30.0 s of 1.5 min" in rec.notes and rec.path == path
    assert read_record(path, ("I",)).duration_s == pytest.approx(90, abs=0.1)
