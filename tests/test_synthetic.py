"""The synthetic cohort must look like a PTB-XL download to every reader, and behave like ECGs.

One cohort is generated per module (8 persons x 3 records x 10 s, as the demo uses) and shared by
the read-only tests; tests that need other arguments generate small cohorts of their own.
"""

from __future__ import annotations

import csv
import re
import time
import warnings
from collections import Counter
from datetime import datetime
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pytest
import wfdb

from ecgbio.sources.synthetic import (
    CSV_COLUMNS,
    PTBXL_LEADS,
    ptbxl_stem,
    write_synthetic_cohort,
)

N_PERSONS = 8
RECORDS_PER_PERSON = 3
DURATION_S = 10.0


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """(root, seconds it took to generate) of the shared demo-sized cohort."""
    start = time.perf_counter()
    root = write_synthetic_cohort(
        tmp_path_factory.mktemp("cohort"),
        n_persons=N_PERSONS,
        records_per_person=RECORDS_PER_PERSON,
        duration_s=DURATION_S,
        seed=3,
    )
    return root, time.perf_counter() - start


def read_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "ptbxl_database.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def rows_by_patient(root: Path) -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in read_rows(root):
        grouped.setdefault(row["patient_id"], []).append(row)
    return grouped


def file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def digital_signals(root: Path) -> set[bytes]:
    """The raw adu of every high-rate record, as bytes (ignores dates and ids)."""
    return {
        wfdb.rdrecord(str(root / row["filename_hr"]), physical=False).d_signal.tobytes()
        for row in read_rows(root)
    }


def lead_i_median_beat(root: Path, filename: str, rate: int = 500) -> np.ndarray:
    """Median lead-I beat (-0.3..+0.5 s around neurokit2's R-peaks), as a biometric would see it."""
    signal = wfdb.rdrecord(str(root / filename), channel_names=["I"]).p_signal[:, 0]
    clean = nk.ecg_clean(signal, sampling_rate=rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.ecg_peaks(clean, sampling_rate=rate)
    before, after = int(0.3 * rate), int(0.5 * rate)
    peaks = [p for p in info["ECG_R_Peaks"] if before <= p < len(clean) - after]
    return np.median(np.stack([clean[p - before : p + after] for p in peaks]), axis=0)


def test_generation_is_fast(cohort: tuple[Path, float]) -> None:
    _, seconds = cohort
    assert seconds < 10.0, f"8x3x10 s cohort took {seconds:.1f} s"


def test_layout_csv_and_records_file(cohort: tuple[Path, float]) -> None:
    root, _ = cohort
    with open(root / "ptbxl_database.csv", newline="") as handle:
        assert next(csv.reader(handle)) == list(CSV_COLUMNS)
    rows = read_rows(root)
    assert len(rows) == N_PERSONS * RECORDS_PER_PERSON
    assert [int(r["ecg_id"]) for r in rows] == list(range(1, len(rows) + 1))
    for row in rows:
        ecg_id = int(row["ecg_id"])
        stem = f"{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}"
        assert ptbxl_stem(ecg_id) == stem
        assert row["filename_lr"] == f"records100/{stem}_lr"
        assert row["filename_hr"] == f"records500/{stem}_hr"
        assert re.fullmatch(r"\d+\.0", row["patient_id"])
        assert re.fullmatch(r"\d+\.0", row["age"])
        assert row["sex"] in {"0", "1"}
        assert 1 <= int(row["strat_fold"]) <= 10
        datetime.strptime(row["recording_date"], "%Y-%m-%d %H:%M:%S")
        for name in (row["filename_lr"], row["filename_hr"]):
            assert (root / f"{name}.hea").is_file() and (root / f"{name}.dat").is_file()
    listed = (root / "RECORDS").read_text().splitlines()
    expected = [r["filename_lr"] for r in rows] + [r["filename_hr"] for r in rows]
    assert listed == expected
    assert len(rows_by_patient(root)) == N_PERSONS


def test_fold_is_per_patient(cohort: tuple[Path, float]) -> None:
    root, _ = cohort
    for rows in rows_by_patient(root).values():
        assert len({r["strat_fold"] for r in rows}) == 1


def test_record_stem_folders_roll_over_every_1000() -> None:
    assert ptbxl_stem(1) == "00000/00001"
    assert ptbxl_stem(999) == "00000/00999"
    assert ptbxl_stem(1000) == "01000/01000"
    assert ptbxl_stem(21837) == "21000/21837"


def test_every_record_reads_at_both_rates(cohort: tuple[Path, float]) -> None:
    root, _ = cohort
    for row in read_rows(root):
        for column, fs in (("filename_hr", 500), ("filename_lr", 100)):
            record = wfdb.rdrecord(str(root / row[column]))
            assert record.fs == fs
            assert record.sig_len == int(DURATION_S * fs)
            assert record.sig_name == list(PTBXL_LEADS)
            assert record.units == ["mV"] * 12
            assert record.fmt == ["16"] * 12
            assert record.adc_gain == [1000.0] * 12
            assert np.isfinite(record.p_signal).all()


def test_low_rate_copy_is_the_same_recording(cohort: tuple[Path, float]) -> None:
    root, _ = cohort
    row = read_rows(root)[0]
    high = wfdb.rdrecord(str(root / row["filename_hr"])).p_signal
    low = wfdb.rdrecord(str(root / row["filename_lr"])).p_signal
    for lead in range(12):
        assert np.corrcoef(high[::5, lead], low[:, lead])[0, 1] > 0.9


def test_single_lead_and_other_rate(tmp_path: Path) -> None:
    root = write_synthetic_cohort(
        tmp_path, n_persons=2, records_per_person=1, duration_s=4.0, rate=250, n_leads=1
    )
    row = read_rows(root)[0]
    assert row["filename_hr"].startswith("records250/")
    high = wfdb.rdrecord(str(root / row["filename_hr"]))
    low = wfdb.rdrecord(str(root / row["filename_lr"]))
    assert (high.fs, high.sig_len, high.sig_name) == (250, 1000, ["I"])
    assert (low.fs, low.sig_len, low.sig_name) == (100, 400, ["I"])


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    kwargs = {"n_persons": 3, "records_per_person": 2, "duration_s": 5.0}
    first = file_bytes(write_synthetic_cohort(tmp_path / "a", seed=11, **kwargs))
    again = file_bytes(write_synthetic_cohort(tmp_path / "b", seed=11, **kwargs))
    other = file_bytes(write_synthetic_cohort(tmp_path / "c", seed=12, **kwargs))
    assert len(first) == 3 + 3 * 2 * 2 * 2  # CSV, RECORDS, SYNTHETIC, (hea+dat) x 2 rates x 6
    assert first == again
    dats = [name for name in first if name.endswith(".dat")]
    assert all(first[name] != other.get(name) for name in dats)
    assert first["ptbxl_database.csv"] != other["ptbxl_database.csv"]


def test_persons_do_not_depend_on_cohort_size(tmp_path: Path) -> None:
    """A person's heart comes from its own random stream: adding persons does not change it."""
    small = write_synthetic_cohort(
        tmp_path / "s", n_persons=2, records_per_person=[1, 1], duration_s=3.0, seed=5
    )
    large = write_synthetic_cohort(
        tmp_path / "l", n_persons=4, records_per_person=[1, 1, 1, 1], duration_s=3.0, seed=5
    )
    small_signals = digital_signals(small)
    assert len(small_signals) == 2
    assert small_signals <= digital_signals(large)


def test_per_person_record_counts(tmp_path: Path) -> None:
    counts = [1, 4, 2, 1, 3]
    root = write_synthetic_cohort(
        tmp_path, n_persons=5, records_per_person=counts, duration_s=2.0, n_leads=1
    )
    grouped = rows_by_patient(root)
    assert len(grouped) == 5
    assert Counter(len(rows) for rows in grouped.values()) == Counter(counts)


def test_dates_increase_per_person_on_different_days(cohort: tuple[Path, float]) -> None:
    root, _ = cohort
    for rows in rows_by_patient(root).values():
        dates = [datetime.strptime(r["recording_date"], "%Y-%m-%d %H:%M:%S") for r in rows]
        days = [d.date() for d in dates]
        assert dates == sorted(dates)
        assert len(set(days)) == len(days)
    all_dates = [r["recording_date"] for r in read_rows(root)]
    assert all_dates == sorted(all_dates)  # ecg_id is chronological, as in PTB-XL


def test_r_peaks_detectable_on_lead_i(cohort: tuple[Path, float]) -> None:
    root, _ = cohort
    for row in read_rows(root):
        for column, rate in (("filename_hr", 500), ("filename_lr", 100)):
            signal = wfdb.rdrecord(str(root / row[column]), channel_names=["I"]).p_signal[:, 0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, info = nk.ecg_peaks(nk.ecg_clean(signal, sampling_rate=rate), sampling_rate=rate)
            rr = np.diff(info["ECG_R_Peaks"]) / rate
            # 55-95 bpm with modest HRV: every interval is a plausible beat-to-beat interval
            assert 8 <= len(info["ECG_R_Peaks"]) <= 17, row[column]
            assert rr.min() > 0.5 and rr.max() < 1.3, (row[column], rr)


def test_amplitudes_within_ptbxl_range(cohort: tuple[Path, float]) -> None:
    root, _ = cohort
    for row in read_rows(root):
        signal = wfdb.rdrecord(str(root / row["filename_hr"])).p_signal
        assert np.percentile(np.abs(signal), 99.5) < 2.0
        assert np.abs(signal).max() < 4.0
        assert (signal.std(axis=0) > 0.02).all()  # no flat lead


def test_limb_leads_follow_einthoven(cohort: tuple[Path, float]) -> None:
    root, _ = cohort
    signal = wfdb.rdrecord(str(root / read_rows(root)[0]["filename_hr"])).p_signal
    lead_i, lead_ii, lead_iii, avr, avl, avf = signal[:, :6].T
    tolerance = 0.0025  # three 1-uV quantisation steps
    assert np.abs(lead_iii - (lead_ii - lead_i)).max() < tolerance
    assert np.abs(avr + (lead_i + lead_ii) / 2).max() < tolerance
    assert np.abs(avl - (lead_i - lead_ii / 2)).max() < tolerance
    assert np.abs(avf - (lead_ii - lead_i / 2)).max() < tolerance


def test_persons_differ_more_than_sessions(cohort: tuple[Path, float]) -> None:
    root, _ = cohort
    beats = {
        patient: [lead_i_median_beat(root, r["filename_hr"]) for r in rows]
        for patient, rows in rows_by_patient(root).items()
    }

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a, b)[0, 1])

    within = [corr(bs[i], bs[j]) for bs in beats.values() for i in range(len(bs)) for j in range(i)]
    people = list(beats.values())
    between = [corr(people[i][0], people[j][0]) for i in range(len(people)) for j in range(i)]
    assert len(within) == N_PERSONS * 3 and len(between) == N_PERSONS * (N_PERSONS - 1) // 2
    assert np.mean(within) > np.mean(between) + 0.05
    assert np.median(within) > np.percentile(between, 75)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_persons": 0}, "n_persons"),
        ({"n_persons": 2, "records_per_person": [1]}, "records_per_person"),
        ({"n_persons": 2, "records_per_person": [1, 0]}, "at least one"),
        ({"n_leads": 13}, "n_leads"),
        ({"rate": 50}, "rate"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_arguments_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_synthetic_cohort(tmp_path, **kwargs)
    assert not (tmp_path / "ptbxl_database.csv").exists()
