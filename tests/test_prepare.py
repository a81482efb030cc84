"""prepare + store: records -> beat store, parallel, resumable, refusing to overwrite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ecgbio.cli import app
from ecgbio.config import BeatConfig
from ecgbio.errors import EcgbioError, StoreError
from ecgbio.prepare import CHUNK_RECORDS, LOCK_FILE, PARTS_DIR, prepare_store
from ecgbio.sources.folder import folder_records
from ecgbio.store import BeatStore
from tests.cli_checks import one_line_error
from tests.conftest import shared, simulate_ecg, write_wfdb

runner = CliRunner()


def prepare_cli(root: Path, out: Path, *extra: object):
    """``ecgbio prepare wfdb`` of ``root`` into ``out``, quiet and in this process."""
    args = ["prepare", "wfdb", "--root", root, "--out", out, "--quiet", "--workers", "1", *extra]
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """Three persons in ECG-ID's layout, plus one record that is flat and one that is too short."""
    root = tmp_path / "db"
    for p in range(3):
        for r in range(2):
            sig = simulate_ecg(8, 500, heart_rate=60 + 5 * p + r, seed=10 * p + r, n_leads=2)
            write_wfdb(
                root / f"Person_{p + 1:02d}",
                f"rec_{r + 1}",
                sig,
                500,
                comments=[f"ECG date: 0{r + 1}.12.2004"],
            )
    write_wfdb(root / "Person_04", "rec_1", np.full((4000, 2), 0.2), 500)
    write_wfdb(root / "Person_05", "rec_1", simulate_ecg(1.0, 500, n_leads=2), 500)
    return root


def test_folder_source_reads_ecgid_layout(cohort):
    specs = folder_records(cohort)
    assert len(specs) == 8
    first = [s for s in specs if s.person == "Person_01"]
    assert [s.record for s in first] == ["Person_01/rec_1", "Person_01/rec_2"]
    assert [s.order for s in first] == [0, 1]
    assert first[1].session == "2004-12-02"


def test_prepare_builds_a_store_with_summary(cohort, tmp_path):
    out = tmp_path / "store"
    summary = prepare_store(folder_records(cohort), out, BeatConfig(), progress=False)
    assert summary.records_total == 8
    assert summary.records_read == 6 and summary.records_rejected == 2
    assert summary.persons == 3 and summary.persons_multi_record == 3
    assert any("flat" in r for r in summary.rejected_reasons)
    assert any("long after cropping" in r for r in summary.rejected_reasons)
    store = BeatStore.open(out)
    assert len(store) == summary.beats > 30
    assert store.beats.dtype == np.float16
    assert store.beats.shape[1:] == (1, BeatConfig().window_samples)
    assert isinstance(store.beats, np.memmap)
    assert list(store.index.columns) == ["person", "record", "session", "beat", "peak", "quality"]
    assert store.config == BeatConfig()
    # beats of a record are contiguous and in time order
    for _, rows in store.index.groupby("record"):
        assert np.all(np.diff(rows.index) == 1) and rows["beat"].tolist() == list(range(len(rows)))
    rejected = store.records[store.records["status"] == "rejected"]
    assert set(rejected["person"]) == {"Person_04", "Person_05"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["neurokit2"] and manifest["summary"]["beats"] == summary.beats


def test_float16_store_matches_float32_beats(cohort, tmp_path):
    from ecgbio.beats import beats_from_file

    out = tmp_path / "s16"
    prepare_store(folder_records(cohort), out, BeatConfig(), progress=False)
    store = BeatStore.open(out)
    rows = store.index.index[store.index["record"] == "Person_02/rec_1"]
    direct = beats_from_file(cohort / "Person_02" / "rec_1")
    np.testing.assert_allclose(store.waves(rows), direct.waves, atol=2e-3)


def test_parallel_and_serial_stores_are_identical(cohort, tmp_path):
    specs = folder_records(cohort)
    prepare_store(specs, tmp_path / "a", BeatConfig(), workers=1, progress=False)
    prepare_store(specs, tmp_path / "b", BeatConfig(), workers=2, progress=False)
    assert (tmp_path / "a/beats.npy").read_bytes() == (tmp_path / "b/beats.npy").read_bytes()
    assert (tmp_path / "a/beats.csv").read_text() == (tmp_path / "b/beats.csv").read_text()


def test_existing_store_is_never_silently_overwritten(cohort, tmp_path):
    out = tmp_path / "s"
    specs = folder_records(cohort)
    prepare_store(specs, out, BeatConfig(), progress=False)
    before = (out / "beats.npy").read_bytes()
    with pytest.raises(StoreError, match="a beat store already exists here; use --overwrite"):
        prepare_store(specs, out, BeatConfig(rate=250), progress=False)
    assert (out / "beats.npy").read_bytes() == before
    prepare_store(specs, out, BeatConfig(rate=250), overwrite=True, progress=False)
    assert BeatStore.open(out).config.rate == 250


def test_refuses_a_foreign_non_empty_directory(cohort, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not empty and is not an ecgbio store"):
        prepare_store(folder_records(cohort), out, BeatConfig(), progress=False)
    assert (out / "thesis.tex").read_text() == "precious"


def test_interrupted_prepare_resumes(tmp_path, monkeypatch):
    import ecgbio.prepare as prep

    root = tmp_path / "many"
    for i in range(CHUNK_RECORDS + 6):
        write_wfdb(root / f"P{i:03d}", "r", simulate_ecg(5, 250, heart_rate=80, seed=i), 250)
    specs = folder_records(root)
    config = BeatConfig(rate=250)
    out = tmp_path / "store"
    real = prep._PartWriter.write
    calls = {"n": 0}

    def write_then_die(self, results):
        real(self, results)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(prep._PartWriter, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        prepare_store(specs, out, config, progress=False)
    with pytest.raises(StoreError, match="preparation was interrupted"):
        BeatStore.open(out)
    monkeypatch.setattr(prep._PartWriter, "write", real)
    with pytest.raises(StoreError, match="interrupted preparation with a different config"):
        prepare_store(specs, out, BeatConfig(rate=200), progress=False)
    summary = prepare_store(specs, out, config, progress=False)
    assert summary.records_resumed == CHUNK_RECORDS
    assert summary.records_total == len(specs)
    prepare_store(specs, tmp_path / "ref", config, progress=False)
    assert (out / "beats.npy").read_bytes() == (tmp_path / "ref/beats.npy").read_bytes()
    assert not (out / ".parts").exists()


def test_persons_from_csv(cohort, tmp_path):
    mapping = tmp_path / "persons.csv"
    pd.DataFrame(
        {"record": ["Person_01/rec_1", "Person_02/rec_2"], "person": ["alice", "alice"]}
    ).to_csv(mapping, index=False)
    specs = folder_records(cohort, mapping)
    assert [(s.record, s.person) for s in specs] == [
        ("Person_01/rec_1", "alice"),
        ("Person_02/rec_2", "alice"),
    ]


def test_persons_csv_errors(cohort, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,who\nx,y\n")
    with pytest.raises(
        EcgbioError, match=r"bad\.csv: persons CSV lacks column\(s\) person, record"
    ):
        folder_records(cohort, bad)
    with pytest.raises(EcgbioError, match="persons CSV not found"):
        folder_records(cohort, tmp_path / "none.csv")


def test_empty_folder(tmp_path):
    with pytest.raises(EcgbioError, match="no WFDB records"):
        folder_records(tmp_path)


def test_all_records_rejected_stores_nothing(tmp_path):
    root = tmp_path / "flat"
    write_wfdb(root / "A", "r", np.full((4000, 1), 0.2), 500)
    with pytest.raises(StoreError, match="no record gave usable beats"):
        prepare_store(folder_records(root), tmp_path / "out", BeatConfig(), progress=False)
    # a verdict, not an interruption: no lock and no .parts to block a run with other options
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["manifest", "beats", "index"])
def test_corrupt_store_gives_a_clear_error(cohort, tmp_path, damage):
    out = tmp_path / "s"
    prepare_store(folder_records(cohort), out, BeatConfig(), progress=False)
    if damage == "manifest":
        (out / "manifest.json").write_text("{not json")
        pattern = "manifest.json: corrupt manifest"
    elif damage == "beats":
        data = (out / "beats.npy").read_bytes()
        (out / "beats.npy").write_bytes(data[: len(data) // 2])
        pattern = "beats.npy: unreadable beats array"
    else:
        lines = (out / "beats.csv").read_text().splitlines()
        (out / "beats.csv").write_text("\n".join(lines[:-3]) + "\n")
        pattern = "inconsistent store"
    with pytest.raises(StoreError, match=pattern):
        BeatStore.open(out)


def test_missing_store(tmp_path):
    with pytest.raises(StoreError, match="beat store not found"):
        BeatStore.open(tmp_path / "nope")


def test_ecgid_prepares_with_all_persons(tmp_path):
    root = shared("ecg-id-database-1.0.0")
    specs = [s for s in folder_records(root) if s.person in {"Person_13", "Person_15", "Person_74"}]
    summary = prepare_store(specs, tmp_path / "ecgid", BeatConfig(), workers=2, progress=False)
    assert summary.records_read == len(specs)
    assert summary.persons == 3
    assert any("constant run" in note for note in summary.repaired)


def test_a_lead_view_shares_the_beats_and_says_its_leads(cohort, tmp_path):
    store = prepare_store(
        folder_records(cohort), tmp_path / "s2", BeatConfig(leads=("I", "II")), progress=False
    )
    store = BeatStore.open(tmp_path / "s2")
    view = store.select_leads(("I",))
    assert view.leads == ("I",) and view.config.leads == ("I",)
    assert view.beats.shape == (len(store), 1, store.beats.shape[2])
    assert np.array_equal(view.waves([3, 0]), store.waves([3, 0])[:, :1])
    assert np.shares_memory(view.beats, store.beats)  # a view, not a copy
    assert store.select_leads(("II",)).waves(slice(0, 2)).shape[1] == 1
    with pytest.raises(StoreError, match="no lead"):
        store.select_leads(("V1",))
    with pytest.raises(StoreError, match="not a contiguous run"):
        store.select_leads(("II", "I"))
    prepare_store(
        folder_records(cohort),
        tmp_path / "on-ii",
        BeatConfig(leads=("I", "II"), detect_lead="II"),
        progress=False,
    )
    with pytest.raises(StoreError, match="found on lead II"):
        BeatStore.open(tmp_path / "on-ii").select_leads(("I",))


@pytest.mark.parametrize(
    "content, fragments",
    [
        (b"record,person\nPerson_01/rec_1,J\xfcrgen\n", ["not UTF-8", "0xfc on line 2"]),
        (bytes(range(256)) * 4, ["not UTF-8"]),
        (b"", ["persons CSV is empty"]),
        (
            b"record,person\nPerson_02/rec_1,bob\nPerson_01/rec_1,\n",
            ["data row 2", "(record Person_01/rec_1)", "empty person"],
        ),
        (
            b"record,person\nPerson_01/rec_1,alice\nPerson_02/rec_1,bob\nPerson_01/rec_1.hea,eve\n",
            ["record Person_01/rec_1", "2 different persons (alice, eve)", "data rows 1, 3"],
        ),
        (
            b"record,person\nPerson_01/rec_1,alice,x\nPerson_02/rec_1,bob,y\n",
            ["more values than its header names", "shifted"],
        ),
        (
            b"record,person\nPerson_01/rec_1,alice,\nPerson_02/rec_1,,\n",
            ["data row 2", "(record Person_02/rec_1)", "empty person"],
        ),
    ],
    ids=["latin-1", "binary", "empty", "empty-person", "two-persons", "shifted", "trailing-comma"],
)
def test_a_bad_persons_csv_is_one_line_naming_it(cohort, tmp_path, content, fragments):
    """Not UTF-8 (was: unexpected UnicodeDecodeError), an empty person (was: stored as person
    ""), one record given two persons (was: the first row won silently)."""
    persons = tmp_path / "persons.csv"
    persons.write_bytes(content)
    result = prepare_cli(cohort, tmp_path / "out", "--persons", persons)
    one_line_error(result, *fragments, path=persons)
    assert not (tmp_path / "out").exists()


def test_a_persons_csv_may_have_a_bom_and_repeat_a_row(cohort, tmp_path):
    persons = tmp_path / "persons.csv"
    persons.write_bytes(
        b"\xef\xbb\xbfrecord,person\nPerson_01/rec_1,alice\nPerson_01/rec_1,alice\n"
    )
    assert [(s.record, s.person) for s in folder_records(cohort, persons)] == [
        ("Person_01/rec_1", "alice")
    ]


def test_a_non_utf8_folder_name_is_stored_escaped(tmp_path):
    """A folder named with byte 0xff (was: unexpected UnicodeEncodeError, and a .lock and .parts
    left behind): its person and records are stored with a \\xff escape."""
    root = tmp_path / "db"
    odd = root / os.fsdecode(b"P\xff")
    try:
        odd.mkdir(parents=True)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    write_wfdb(odd, "rec_1", simulate_ecg(8, 500, seed=1), 500)
    write_wfdb(root / "B", "rec_1", simulate_ecg(8, 500, heart_rate=80, seed=2), 500)
    result = prepare_cli(root, tmp_path / "out")
    assert result.exit_code == 0, result.output
    store = BeatStore.open(tmp_path / "out")
    assert set(store.index["person"]) == {"B", "P\\xff"}
    assert "P\\xff/rec_1" in set(store.records["record"])


def test_a_failed_prepare_leaves_no_lock_nor_empty_parts(cohort, tmp_path, monkeypatch):
    """What a run that failed before finishing a chunk made is removed: the folder it made, or
    its lock and .parts in a folder that was there (which stays)."""
    import ecgbio.prepare as prep

    def disk_full(self, results):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prep._PartWriter, "write", disk_full)
    specs = folder_records(cohort)
    out = tmp_path / "store"
    with pytest.raises(OSError, match="No space"):
        prepare_store(specs, out, BeatConfig(), progress=False)
    assert not out.exists()
    out.mkdir()
    with pytest.raises(OSError, match="No space"):
        prepare_store(specs, out, BeatConfig(), progress=False)
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    prepare_store(specs, out, BeatConfig(rate=250), progress=False)  # other options: not blocked
    assert BeatStore.open(out).config.rate == 250
    assert not (out / PARTS_DIR).exists() and (out / LOCK_FILE).exists()


def test_an_unknown_peak_method_is_refused_before_any_work(cohort, tmp_path):
    """Was: refused per record, leaving a .parts that blocked the next run with other options."""
    out = tmp_path / "out"
    result = prepare_cli(cohort, out, "--peak-method", "bogus")
    one_line_error(result, "unknown R-peak detector 'bogus'", "rodrigues2021")
    assert not out.exists()
    assert prepare_cli(cohort, out).exit_code == 0


def _damage_index(out: Path, edit) -> None:
    table = pd.read_csv(out / "beats.csv", dtype=str, keep_default_na=False)
    edit(table)
    table.to_csv(out / "beats.csv", index=False)


def _set(column: str, row: int, value: str):
    def edit(table: pd.DataFrame) -> None:
        table.loc[row, column] = value

    return edit


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (lambda t: t.drop(columns="person", inplace=True), ["no column(s) person"]),
        (_set("person", 2, ""), ["data row 3 has an empty person"]),
        (_set("beat", 3, "abc"), ["column beat must hold whole numbers", "data row 4", "'abc'"]),
        (_set("quality", 0, "nan"), ["column quality must hold finite numbers", "data row 1"]),
    ],
    ids=["no-person-column", "empty-person", "text-beat", "nan-quality"],
)
def test_a_damaged_beats_table_is_one_line_naming_it(cohort, tmp_path, edit, fragments):
    """Was: unexpected KeyError: 'person' (and empty persons or text beats went unnoticed)."""
    out = tmp_path / "s"
    prepare_store(folder_records(cohort), out, BeatConfig(), progress=False)
    _damage_index(out, edit)
    with pytest.raises(StoreError, match="corrupt store table"):
        BeatStore.open(out)
    one_line_error(
        runner.invoke(app, ["store", "info", str(out)]), *fragments, path=out / "beats.csv"
    )


def test_nan_beats_are_named_with_the_store_when_evaluated(cohort, tmp_path):
    """Was: 'scores contain 49 NaN or infinite value(s)', naming no file."""
    out = tmp_path / "s"
    prepare_store(folder_records(cohort), out, BeatConfig(), progress=False)
    beats = np.load(out / "beats.npy", mmap_mode="r+")
    beats[[1, 4]] = np.nan
    beats[7, 0, 3] = np.inf
    beats.flush()
    del beats
    store = BeatStore.open(out)
    with pytest.raises(StoreError, match=r"3 of the 5 beats read hold NaN or infinite samples"):
        store.check_finite([0, 1, 4, 7, 9])
    store.check_finite([0, 2, 3])
    result = runner.invoke(app, ["evaluate", "--store", str(out), "--protocol", "enrol-probe"])
    one_line_error(result, "beats read hold NaN or infinite samples", path=out / "beats.npy")
