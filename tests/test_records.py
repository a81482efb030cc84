"""records: reading any WFDB record, lead choice, resampling, and every bad input's message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgbio.errors import LeadError, RecordError
from ecgbio.records import (
    constant_runs,
    normalize_lead_name,
    parse_date,
    read_record,
    record_path,
)
from tests.conftest import shared


def test_reads_with_or_without_extension(record_factory):
    path = record_factory("a", seconds=5, fs=500, n_leads=2)
    for given in (path, Path(str(path) + ".hea"), str(path) + ".dat"):
        rec = read_record(given, leads="I")
        assert rec.signal.shape == (1, 2500)
        assert rec.fs == 500.0 and rec.leads == ("I",)
        assert rec.signal.dtype == np.float32


def test_signal_is_in_millivolts(record_factory):
    sig = np.zeros((2000, 1))
    sig[::200, 0] = 1.5  # 1.5 mV spikes
    sig += np.sin(np.arange(2000) / 30.0)[:, None] * 0.01
    rec = read_record(record_factory("mv", signal=sig, fs=500), leads="I")
    assert rec.signal.max() == pytest.approx(1.5 + 0.01, abs=0.01)


def test_lead_selection_by_name_order_and_all(record_factory):
    path = record_factory("m", seconds=4, n_leads=3)
    assert read_record(path, leads="II,I").leads == ("II", "I")
    assert read_record(path, leads="all").leads == ("I", "II", "III")
    assert read_record(path, leads=("i",)).leads == ("I",)


def test_one_lead_can_stand_in_for_several(record_factory):
    path = record_factory("s", seconds=4, n_leads=3)
    rec = read_record(path, leads="II,II,I")  # a stand-in lead read once, copied for each use
    assert rec.leads == ("II", "II", "I")
    assert np.array_equal(rec.signal[0], rec.signal[1])
    assert np.array_equal(rec.signal[2], read_record(path, leads="I").signal[0])


def test_lead_names_ignore_decoration():
    assert normalize_lead_name("ECG I") == "I"
    assert normalize_lead_name("lead aVR") == "AVR"
    assert normalize_lead_name("ECG I filtered") == "I FILTERED"


def test_unknown_lead_names_file_and_choices(record_factory):
    path = record_factory("u", seconds=4, n_leads=2)
    with pytest.raises(LeadError) as err:
        read_record(path, leads="V1")
    msg = str(err.value)
    assert "u.hea" in msg and "no lead 'V1'" in msg and "I, II" in msg and "\n" not in msg


def test_resampling_keeps_duration_and_shape(record_factory):
    path = record_factory("r", seconds=6, fs=360)
    rec = read_record(path, leads="I", rate=500)
    assert rec.fs == 500.0 and rec.signal.shape[1] == 3000
    src = read_record(path, leads="I")
    # the R-peak amplitude survives resampling
    assert rec.signal.max() == pytest.approx(src.signal.max(), rel=0.1)


def test_missing_header(tmp_path):
    with pytest.raises(RecordError, match=r"nothere\.hea: header file not found"):
        read_record(tmp_path / "nothere")


def test_missing_dat(record_factory):
    path = record_factory("nodat", seconds=4)
    Path(str(path) + ".dat").unlink()
    with pytest.raises(RecordError, match=r"nodat\.hea: signal file nodat\.dat is missing"):
        read_record(path)


def test_truncated_dat(record_factory):
    path = record_factory("trunc", seconds=4)
    dat = Path(str(path) + ".dat")
    dat.write_bytes(dat.read_bytes()[:1001])
    with pytest.raises(RecordError, match=r"trunc\.hea: signal file trunc\.dat is truncated"):
        read_record(path)


def test_a_signal_file_longer_than_its_header_says_reads_the_header_s_samples(record_factory):
    """A signal file longer than its header says (a trailing partial frame, a recorder's block
    padding, a header describing part of its file) reads the header's samples, as WFDB does."""
    path = record_factory("long", seconds=4, n_leads=2)
    dat = Path(str(path) + ".dat")
    samples = dat.read_bytes()
    before = read_record(path).signal
    for extra in (b"\x00", bytes(512)):
        dat.write_bytes(samples + extra)
        np.testing.assert_array_equal(read_record(path).signal, before)


def _units(path: Path, *units: str) -> Path:
    """The header's gain field of each signal line rewritten with ``units`` (``""``: none)."""
    hea = Path(str(path) + ".hea")
    lines = hea.read_text().splitlines()
    for k, unit in enumerate(units, 1):
        words = lines[k].split()
        words[2] = "1000" + (f"/{unit}" if unit else "")
        lines[k] = " ".join(words)
    hea.write_text("\n".join(lines) + "\n")
    return path


def test_wfdb_units_voltages_empty_and_others(record_factory):
    """An empty unit is WFDB's default mV; a lead in another unit is refused by name and left
    out of "all" (as the EDF reader does), never read as millivolts."""
    path = record_factory("units", seconds=4, n_leads=3)
    mv = read_record(path, leads="all").signal
    _units(path, "", "V", "mmHg")
    rec = read_record(path, leads="all")
    assert rec.leads == ("I", "II")
    np.testing.assert_allclose(rec.signal[0], mv[0])
    np.testing.assert_allclose(rec.signal[1], mv[1] * 1000, rtol=1e-6)
    with pytest.raises(RecordError, match=r"units\.hea: lead III: unit 'mmHg' .* not a voltage"):
        read_record(path, leads="I,III")
    _units(path, "furlong", "degC", "mmHg")
    with pytest.raises(RecordError, match=r"no lead measured in volts .* I \(furlong\)"):
        read_record(path, leads="all")


def test_unparsable_header(tmp_path):
    (tmp_path / "bad.hea").write_text("this is not a header\n!!\n")
    with pytest.raises(RecordError, match=r"bad\.hea: unreadable WFDB header"):
        read_record(tmp_path / "bad")


@pytest.mark.parametrize("fs", [5, 50_000])
def test_absurd_sampling_rate(record_factory, fs):
    path = record_factory("fs", signal=np.random.default_rng(0).normal(size=(500, 1)), fs=fs)
    with pytest.raises(RecordError, match=r"fs\.hea: sampling rate .* is outside 50-20000 Hz"):
        read_record(path)


def test_all_nan_signal(record_factory, tmp_path):
    path = record_factory("nan", seconds=4)
    # rewrite the samples as WFDB's "missing value" code: wfdb reads them back as NaN
    import wfdb

    rec = wfdb.rdrecord(str(path), physical=False)
    rec.d_signal[:] = -32768
    rec.wrsamp(write_dir=str(tmp_path), expanded=False)
    with pytest.raises(RecordError, match=r"nan\.hea: lead I is entirely NaN"):
        read_record(path)


def test_short_nan_gap_is_interpolated(record_factory, tmp_path):
    import wfdb

    path = record_factory("gap", seconds=6)
    rec = wfdb.rdrecord(str(path), physical=False)
    rec.d_signal[1000:1010] = -32768
    rec.wrsamp(write_dir=str(tmp_path), expanded=False)
    out = read_record(path)
    assert np.isfinite(out.signal).all()
    assert any("interpolated 10 NaN samples" in n for n in out.notes)
    assert not out.valid[1000:1010].any()


def test_flat_signal(record_factory):
    path = record_factory("flat", signal=np.full((3000, 1), 0.3), fs=500)
    with pytest.raises(RecordError, match=r"flat\.hea: signal is constant \(flat\) throughout"):
        read_record(path)


def test_nearly_flat_lead(record_factory):
    noise = np.random.default_rng(1).normal(scale=0.0002, size=(3000, 1))
    path = record_factory("tiny", signal=noise, fs=500)
    with pytest.raises(RecordError, match=r"tiny\.hea: lead I is flat"):
        read_record(path)


def test_too_short(record_factory):
    path = record_factory("short", seconds=1.0)
    with pytest.raises(RecordError, match=r"short\.hea: record is 1\.00 s long .* need >= 2 s"):
        read_record(path, min_duration_s=2.0)


def test_leading_constant_block_is_cropped_and_reported(record_factory):
    from tests.conftest import simulate_ecg

    sig = simulate_ecg(8, 500)
    sig[:1024] = -0.005  # ECG-ID's defect: a block of -1 ADC units
    rec = read_record(record_factory("block", signal=sig, fs=500))
    assert rec.signal.shape[1] == 4000 - 1024
    assert rec.notes and "constant run of 1024 samples at 0 (cropped)" in rec.notes[0]


def test_inner_constant_block_is_masked(record_factory):
    from tests.conftest import simulate_ecg

    sig = simulate_ecg(8, 500)
    sig[2000:2600] = 0.1
    rec = read_record(record_factory("inner", signal=sig, fs=500))
    assert rec.signal.shape[1] == 4000
    assert not rec.valid[2000:2600].any() and rec.valid[:1999].all()


def test_constant_runs_spans():
    x = np.array([[0, 1, 1, 1, 1, 2, 3, 3, 3]], float)
    assert constant_runs(x, 4) == [(1, 5)]
    assert constant_runs(x, 3) == [(1, 5), (6, 9)]


def test_session_date_from_comment(record_factory):
    path = record_factory("dated", seconds=4, comments=["Age: 25", "ECG date: 07.12.2004"])
    assert read_record(path).session == "2004-12-07"


def test_parse_date_formats():
    assert parse_date("07.12.2004") == "2004-12-07"
    assert parse_date("1984-11-09 09:17:34") == "1984-11-09"
    assert parse_date("not a date") == ""


def test_record_path_strips_known_extensions():
    assert record_path("a/b.hea") == Path("a/b")
    assert record_path("a/b") == Path("a/b")


def test_every_shared_wfdb_sample_reads():
    root = shared("wfdb-samples")
    from ecgbio.sources.folder import find_records

    records = find_records(root)
    assert len(records) >= 10
    for path in records:
        rec = read_record(path, leads="all")
        assert rec.signal.ndim == 2 and rec.signal.shape[0] == len(rec.leads) >= 1
        assert np.isfinite(rec.signal).all()


def test_multi_segment_record_reads_by_lead():
    root = shared("wfdb-samples")
    rec = read_record(root / "multi-segment" / "041s" / "041s", leads="I", rate=250)
    assert rec.leads == ("I",) and rec.signal.shape == (1, 4000)


def test_ecgid_defect_records_are_cropped():
    root = shared("ecg-id-database-1.0.0")
    rec = read_record(root / "Person_13" / "rec_2", leads="I")
    assert rec.signal.shape[1] == 10000 - 2048
    assert "constant run of 2048 samples at 0 (cropped)" in rec.notes[0]
    assert rec.session == "2005-04-26"


def test_all_leads_ignores_the_gain_of_a_channel_it_leaves_out(record_factory):
    """Under "all" a channel that is not in volts is not read, so its gain (0: uncalibrated) is
    not checked either; asked for by name, it is refused."""
    path = record_factory("bp", seconds=4, n_leads=2)
    hea = Path(str(path) + ".hea")
    lines = hea.read_text().splitlines()
    words = lines[2].split()
    words[2] = "0/mmHg"
    lines[2] = " ".join(words)
    hea.write_text("\n".join(lines) + "\n")
    assert read_record(path, leads="all").leads == ("I",)
    with pytest.raises(RecordError, match="ADC gain '0'"):
        read_record(path, leads="I,II")


def test_a_read_that_would_decode_too_many_values_is_refused_first(record_factory, monkeypatch):
    """The header's frames x samples a frame bound the memory a read takes, whatever the signal
    file's size (a compressed file decodes from kilobytes to gigabytes); checked before decoding."""
    import ecgbio.records as records

    path = record_factory("big", seconds=4, n_leads=2)
    assert read_record(path).signal.shape == (1, 2000)
    monkeypatch.setattr(records, "MAX_DECODED_VALUES", 3999)  # 2 signals x 2000
    with pytest.raises(RecordError, match=r"big\.hea: the header asks to decode 4,000 sample"):
        read_record(path)
    assert read_record(path, max_duration_s=3.0).signal.shape[1] == 1500  # reading less: fine
