"""EDF / EDF+ / BDF and CSV records (``ecgbio.formats``), read everywhere a WFDB record is.

Round trips on real records (ECG-ID Person_01/rec_1 lead I, PTB-XL 00001 with 12 leads): the
record written as EDF (edfio) and as CSV, with and without a time column, gives the beats of the
WFDB original (same R peaks; waves equal within EDF's 16-bit quantisation and CSV's rounding).
Synthetic records check BDF, a ``;``-separated CSV in microvolts, several rates in one EDF,
partial reads, folders that mix formats, the refusals, and the CLI (``beats``, ``enroll``,
``identify``, ``prepare wfdb`` with ``--fs``).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ecgbio.beats import BeatConfig, beats_from_file
from ecgbio.cli import app
from ecgbio.errors import LeadError, RecordError
from ecgbio.records import read_record
from tests.cli_checks import one_line_error
from tests.conftest import shared, simulate_ecg, write_wfdb

edfio = pytest.importorskip("edfio")
runner = CliRunner()

#: Round-trip tolerance on beat waves (mV, default beat config: no normalisation). EDF stores
#: 16-bit samples over the signal's range (a few mV / 65,535: < 0.1 uV a step); the CSVs here
#: are written with 4 decimals (0.1 uV). Measured: 5e-6 mV (ECG-ID), 1.2e-5 mV (PTB-XL) for EDF.
WAVE_TOL_MV = 1e-4


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def assert_refused(result, path: Path, *fragments: str) -> str:
    return one_line_error(result, *fragments, path=path, only_output=True)


def write_edf(
    path: Path,
    signal: np.ndarray,
    fs: float,
    leads: list[str],
    unit: str = "mV",
    startdate: datetime.date | None = None,
) -> Path:
    """``signal`` (samples, leads) in ``unit`` as EDF (or BDF by the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bdf = path.suffix == ".bdf"
    kind, signal_kind = (edfio.Bdf, edfio.BdfSignal) if bdf else (edfio.Edf, edfio.EdfSignal)
    signals = [
        signal_kind(signal[:, i], fs, label=name, physical_dimension=unit)
        for i, name in enumerate(leads)
    ]
    recording = edfio.Recording(startdate=startdate) if startdate else None
    kind(signals, recording=recording).write(path)
    return path


def write_csv(
    path: Path,
    signal: np.ndarray,
    leads: list[str],
    fs: float | None = None,
    sep: str = ",",
    decimals: int = 4,
    comments: tuple[str, ...] = (),
) -> Path:
    """``signal`` (samples, leads) as CSV; a ``time`` column (seconds) when ``fs`` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (["time"] if fs else []) + leads
    rows = [*(f"# {c}" for c in comments), sep.join(header)]
    for k, values in enumerate(signal):
        cells = [f"{k / fs:.6f}"] if fs else []
        cells += [f"{v:.{decimals}f}" for v in values]
        rows.append(sep.join(cells))
    path.write_text("\n".join(rows) + "\n")
    return path


def compare(original, other) -> float:
    """Same R peaks, and the largest difference between the beat waves (mV)."""
    assert len(other) == len(original) and len(original) >= 10
    np.testing.assert_array_equal(other.peaks, original.peaks)
    assert other.leads == original.leads or len(other.leads) == len(original.leads)
    return float(np.abs(other.waves - original.waves).max())


# real records -----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_ecgid_lead_i_round_trips_through_edf_and_csv(tmp_path):
    import wfdb

    record = shared("ecg-id-database-1.0.0") / "Person_01" / "rec_1"
    rec = wfdb.rdrecord(str(record), channels=[0])
    x = rec.p_signal  # (samples, 1) in mV, lead "ECG I"
    edf = write_edf(tmp_path / "rec_1.edf", x, rec.fs, ["ECG I"], "mV", datetime.date(2004, 12, 7))
    timed = write_csv(tmp_path / "timed.csv", x, ["ECG I"], fs=rec.fs)
    plain = write_csv(tmp_path / "plain.csv", x, ["I"])

    original = beats_from_file(record)
    diffs = {
        "edf": compare(original, beats_from_file(edf)),
        "csv+time": compare(original, beats_from_file(timed)),
        "csv": compare(original, beats_from_file(plain, fs=rec.fs)),
    }
    assert max(diffs.values()) < WAVE_TOL_MV, diffs
    assert read_record(edf).session == "2004-12-07" == read_record(record).session


@pytest.mark.realdata
def test_ptbxl_twelve_leads_round_trip_through_edf_and_csv(tmp_path):
    import wfdb

    record = shared("ptb-xl-subset") / "records100" / "00000" / "00001_lr"
    rec = wfdb.rdrecord(str(record))
    names = list(rec.sig_name)
    assert len(names) == 12
    config = BeatConfig(leads=tuple(names))
    # PTB-XL's units are mV; write the EDF in uV to exercise the conversion
    edf = write_edf(tmp_path / "00001.edf", rec.p_signal * 1000, rec.fs, names, "uV")
    timed = write_csv(tmp_path / "00001.csv", rec.p_signal, names, fs=rec.fs)
    plain = write_csv(tmp_path / "00001_plain.csv", rec.p_signal, names, sep=";")

    original = beats_from_file(record, config)
    assert original.waves.shape[1] == 12
    diffs = {
        "edf": compare(original, beats_from_file(edf, config)),
        "csv+time": compare(original, beats_from_file(timed, config)),
        "csv": compare(original, beats_from_file(plain, config, fs=rec.fs)),
    }
    assert max(diffs.values()) < WAVE_TOL_MV, diffs


# synthetic: EDF and BDF --------------------------------------------------------------------------
def test_bdf_in_microvolts_gives_the_wfdb_beats(tmp_path):
    import wfdb

    record = write_wfdb(tmp_path, "rec", simulate_ecg(20, 500, seed=4, n_leads=2), 500)
    original = beats_from_file(record)
    x = wfdb.rdrecord(str(record)).p_signal  # the samples the WFDB record holds
    bdf = write_edf(tmp_path / "rec.bdf", x * 1000, 500, ["ECG I", "ECG II"], "uV")
    rec = read_record(bdf, leads="I,II")
    assert rec.leads == ("ECG I", "ECG II") and rec.fs == 500 and rec.session == ""
    assert compare(original, beats_from_file(bdf)) < WAVE_TOL_MV


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_edf_micro_sign_units_are_microvolts(tmp_path, encoding):
    """The standard says ASCII ("uV"); devices write "µV" in Latin-1 or UTF-8 all the same."""
    x = simulate_ecg(10, 500, seed=11)
    path = write_edf(tmp_path / "mu.edf", x * 1000, 500, ["ECG I"], "uV")
    raw = bytearray(path.read_bytes())
    at = raw.index(b"uV      ", 256)
    unit = "µV".encode(encoding)
    raw[at : at + 8] = unit + b" " * (8 - len(unit))
    path.write_bytes(bytes(raw))
    assert np.abs(read_record(path).signal[0] - x[:, 0]).max() < 1e-4


def test_edf_with_several_rates_eeg_and_annotations(tmp_path):
    """Lead II at half lead I's rate is resampled to it; an EEG signal and the EDF+
    annotations channel are never leads; the start date is the session."""
    x = simulate_ecg(30, 500, seed=5, n_leads=2)
    eeg = np.random.default_rng(0).normal(0, 20, 30 * 100)
    signals = [
        edfio.EdfSignal(x[:, 0], 500, label="ECG I", physical_dimension="mV"),
        edfio.EdfSignal(x[::2, 1] * 1000, 250, label="ECG II", physical_dimension="uV"),
        edfio.EdfSignal(eeg, 100, label="EEG Fpz-Cz", physical_dimension="uV"),
    ]
    path = tmp_path / "night.edf"
    edfio.Edf(
        signals,
        recording=edfio.Recording(startdate=datetime.date(2024, 5, 1)),
        annotations=[edfio.EdfAnnotation(1.0, None, "lights off")],
    ).write(path)

    rec = read_record(path, leads="I,II")
    assert rec.leads == ("ECG I", "ECG II") and rec.fs == 500 and rec.signal.shape == (2, 15000)
    assert rec.session == "2024-05-01"
    assert any("resampled from 250 to 500 Hz" in n for n in rec.notes)
    assert np.abs(rec.signal[1, 100:-100] - x[100:-100, 1]).max() < 0.05  # resampled, in mV
    assert read_record(path, leads="all").leads == ("ECG I", "ECG II")
    with pytest.raises(LeadError, match=r"no lead 'V1' \(leads: ECG I, ECG II, EEG Fpz-Cz\)"):
        read_record(path, leads="V1")


def test_edf_and_csv_read_only_the_first_minutes(tmp_path):
    x = simulate_ecg(60, 250, seed=6)
    edf = write_edf(tmp_path / "long.edf", x, 250, ["I"])
    csv = write_csv(tmp_path / "long.csv", x, ["I"], fs=250)
    for path in (edf, csv):
        rec = read_record(path, max_duration_s=20)
        assert rec.duration_s == 20.0, path
        assert any("read the first 20.0 s" in n for n in rec.notes), rec.notes
        np.testing.assert_allclose(rec.signal[0], x[:5000, 0], atol=1e-3)


def test_a_truncated_edf_is_refused(tmp_path):
    path = write_edf(tmp_path / "cut.edf", simulate_ecg(20, 500), 500, ["I"])
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(RecordError, match="truncated or its header is wrong") as caught:
        read_record(path)
    assert str(caught.value).startswith(str(path))


def test_edf_units_that_are_not_a_voltage_are_refused(tmp_path):
    """As CSV and WFDB: a signal in degC is never read as millivolts."""
    path = write_edf(tmp_path / "temp.edf", simulate_ecg(10, 500), 500, ["ECG I"], unit="degC")
    with pytest.raises(RecordError) as caught:
        read_record(path, leads="I")
    message = str(caught.value)
    assert message == f"{path}: signal ECG I: unit 'degC' is not a voltage (give mV, uV or V)"
    with pytest.raises(RecordError, match="no ECG signal"):
        read_record(path, leads="all")


# synthetic: CSV ---------------------------------------------------------------------------------
def test_csv_with_semicolons_decimal_commas_microvolts_and_a_date(tmp_path):
    x = simulate_ecg(15, 500, seed=7, n_leads=2)
    rows = ["# ECG date: 07.12.2004", "time_ms;I [uV];II (uV)"]
    rows += [
        f"{2 * k};{a * 1000:.1f};{b * 1000:.1f}".replace(".", ",") for k, (a, b) in enumerate(x)
    ]
    path = tmp_path / "eu.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    rec = read_record(path, leads="I,II")
    assert rec.leads == ("I", "II") and rec.fs == 500 and rec.session == "2004-12-07"
    assert np.abs(rec.signal - x.T).max() < 1e-4  # uV -> mV
    assert rec.comments == ("ECG date: 07.12.2004",)


def test_csv_rate_from_rounded_times(tmp_path):
    """360 Hz printed with 3 decimals steps 2 or 3 ms: still regular, still 360 Hz."""
    x = simulate_ecg(10, 360, seed=8)
    rows = ["t,I"] + [f"{k / 360:.3f},{v:.4f}" for k, v in enumerate(x[:, 0])]
    path = tmp_path / "r360.csv"
    path.write_text("\n".join(rows) + "\n")
    assert read_record(path).fs == 360.0


CSV_REFUSALS = [
    ("no-header", lambda x: [f"{a:.4f},{b:.4f}" for a, b in x], {}, "no header row"),
    (
        "text-cell",
        lambda x: (
            ["I,II"] + [f"{a:.4f},{'abc' if k == 99 else f'{b:.4f}'}" for k, (a, b) in enumerate(x)]
        ),
        {"fs": 500},
        "column 'II', data row 100: 'abc' is not a number",
    ),
    (
        "irregular",
        lambda x: (
            ["time,I,II"]
            + [f"{(k + 50 * (k > 500)) / 500:.4f},{a:.4f},{b:.4f}" for k, (a, b) in enumerate(x)]
        ),
        {},
        "time column 'time' is irregular",
    ),
    ("no-rate", lambda x: ["I,II"] + [f"{a:.4f},{b:.4f}" for a, b in x], {}, "no time column"),
    ("empty-column", lambda x: ["I,II"] + [f"{a:.4f}," for a, _ in x], {"fs": 500}, "holds no"),
    ("bad-unit", lambda x: ["I [mmHg],II"] + ["1,2"] * 10, {"fs": 500}, "is not a voltage"),
]


@pytest.mark.parametrize(
    "case, rows, kwargs, fragment", CSV_REFUSALS, ids=[c[0] for c in CSV_REFUSALS]
)
def test_csv_refusals_are_one_clean_line(tmp_path, case, rows, kwargs, fragment):
    path = tmp_path / f"{case}.csv"
    path.write_text("\n".join(rows(simulate_ecg(10, 500, n_leads=2))) + "\n")
    with pytest.raises(RecordError) as caught:
        read_record(path, leads="I,II", **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and fragment in message


# folders and the CLI -----------------------------------------------------------------------------
def _mixed_folder(root: Path) -> Path:
    """Person_01: a WFDB record and an EDF; Person_02: a CSV with a time column and one
    without; plus a persons-like metadata CSV that is not a record."""
    write_wfdb(root / "Person_01", "rec_1", simulate_ecg(12, 500, seed=1), 500)
    date = datetime.date(2024, 5, 2)
    write_edf(
        root / "Person_01" / "rec_2.edf", simulate_ecg(12, 500, seed=2), 500, ["I"], "mV", date
    )
    write_csv(root / "Person_02" / "rec_1.csv", simulate_ecg(12, 500, seed=3), ["I"], fs=500)
    write_csv(root / "Person_02" / "rec_2.csv", simulate_ecg(12, 500, seed=4), ["I"])
    (root / "notes.csv").write_text("record,person\nPerson_01/rec_1,a\n")
    return root


def test_folder_records_mix_formats(tmp_path):
    from ecgbio.sources.folder import folder_records

    root = _mixed_folder(tmp_path / "mixed")
    specs = {s.record: s for s in folder_records(root, fs=500)}
    assert sorted(specs) == [
        "Person_01/rec_1",
        "Person_01/rec_2.edf",
        "Person_02/rec_1.csv",
        "Person_02/rec_2.csv",
    ]
    assert specs["Person_01/rec_2.edf"].session == "2024-05-02"
    assert specs["Person_02/rec_2.csv"].fs == 500 and specs["Person_01/rec_1"].fs is None
    persons = tmp_path / "persons.csv"
    persons.write_text("record,person\nPerson_01/rec_2,alice\nPerson_02/rec_1.csv,bob\n")
    mapped = {s.record: s.person for s in folder_records(root, persons)}
    assert mapped == {"Person_01/rec_2.edf": "alice", "Person_02/rec_1.csv": "bob"}


def test_prepare_wfdb_reads_a_mixed_folder(tmp_path):
    root = _mixed_folder(tmp_path / "mixed")
    common = ("prepare", "wfdb", "--root", root, "--workers", "1", "--json", "-q")
    without = run(*common, "--out", tmp_path / "a")
    assert without.exit_code == 0, without.output
    summary = json.loads(without.stdout)
    assert summary["records_read"] == 3 and summary["records_rejected"] == 1
    assert any("no time column" in r for r in summary["rejected_reasons"]), summary
    with_fs = run(*common, "--out", tmp_path / "b", "--fs", "500")
    assert with_fs.exit_code == 0, with_fs.output
    assert json.loads(with_fs.stdout)["records_read"] == 4


def test_cli_beats_reads_edf_and_csv(tmp_path):
    x = simulate_ecg(15, 500, seed=9)
    date = datetime.date(2024, 1, 2)
    edf = write_edf(tmp_path / "recording.edf", x, 500, ["ECG I"], startdate=date)
    result = run("beats", edf, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["record"] == str(edf) and data["session"] == "2024-01-02" and data["beats"] >= 10

    csv = write_csv(tmp_path / "recording.csv", x, ["I"])
    assert_refused(run("beats", csv), csv, "no time column", "--fs")
    result = run("beats", csv, "--fs", "500", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["beats"] == data["beats"]


def test_cli_enroll_from_csv_and_identify_from_edf(tmp_path):
    x = simulate_ecg(20, 500, seed=10)
    csv = write_csv(tmp_path / "alice.csv", x, ["I"])
    edf = write_edf(tmp_path / "alice.edf", x, 500, ["I"])
    gallery = tmp_path / "people"
    assert_refused(run("enroll", "--gallery", gallery, "--id", "alice", csv), csv, "--fs")
    assert not gallery.exists()
    result = run("enroll", "--gallery", gallery, "--id", "alice", csv, "--fs", "500", "--json")
    assert result.exit_code == 0, result.output
    found = run("identify", "--gallery", gallery, edf, "--json")
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["decision"] == "alice"
    claim = run("verify", "--gallery", gallery, "--claim", "alice", csv, "--fs", "500", "--json")
    assert claim.exit_code == 0 and json.loads(claim.stdout)["decision"] == "accept", claim.output


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("comments", "# note\n" * 12_000 + "I\n1\n", "hold only comments and blank lines"),
        (
            "wide",
            ",".join(f"L{i}" for i in range(20_000)) + "\n" + "1," * 19_999 + "1\n",
            "longer than",
        ),
        ("empty", "", "CSV file is empty"),
        ("header only", "I,II\n", "header row but no samples"),
    ],
)
def test_csv_that_hides_its_header_or_samples_past_what_is_sniffed(tmp_path, name, text, problem):
    """The layout is read from the first 64 KiB: a file whose header or first sample row lies
    beyond says so, rather than calling itself empty."""
    path = tmp_path / "x.csv"
    path.write_text(text)
    with pytest.raises(RecordError, match=problem):
        read_record(path, fs=500)


def test_a_csv_number_beyond_a_float_s_range_is_named(tmp_path):
    """pandas reads 1e400 as no number at all, in its own words: the cell is named instead."""
    path = tmp_path / "huge.csv"
    path.write_text("I,II\n" + "0.1,0.2\n" * 3 + "1e400,0.3\n" + "0.1,0.2\n" * 2000)
    with pytest.raises(RecordError, match=r"column 'I', data row 4: '1e400' is beyond the range"):
        read_record(path, fs=500)
