"""CinC 2017 as a training source: one record, one identity; the noisy records left out and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ecgbio.cli import EXIT_ERROR, app
from ecgbio.config import BeatConfig
from ecgbio.errors import EcgbioError
from ecgbio.prepare import prepare_store
from ecgbio.sources.cinc2017 import cinc2017_listing, cinc2017_records
from ecgbio.store import BeatStore
from tests.conftest import shared, simulate_ecg, write_wfdb

LABELS = {"A00001": "N", "A00002": "A", "A00003": "~", "A00004": "O"}


def fake_cinc(root: Path, labels: dict[str, str] = LABELS, reference: bool = True) -> Path:
    """A PhysioNet-shaped ``training2017/`` folder of short 300 Hz records of one lead ``ECG``."""
    folder = root / "training2017"
    for i, name in enumerate(labels):
        write_wfdb(folder, name, simulate_ecg(8, 300, seed=i), 300, ["ECG"])
    if reference:  # no header, CRLF, as PhysioNet's
        text = "".join(f"{name},{label}\r\n" for name, label in labels.items())
        (folder / "REFERENCE.csv").write_text(text)
    return root


def test_each_record_is_a_person_and_the_noisy_one_is_left_out_and_counted(tmp_path: Path):
    listing = cinc2017_listing(fake_cinc(tmp_path))
    assert listing.left_out_noisy == 1
    assert listing.labels == {"N": 1, "A": 1, "O": 1, "~": 1}
    assert [s.record for s in listing.specs] == [
        "cinc2017/A00001",
        "cinc2017/A00002",
        "cinc2017/A00004",
    ]
    first = listing.specs[0]
    assert first.person == "cinc2017-A00001" and first.session == "" and first.order == 0
    assert first.extra == {"rhythm": "N"} and first.leads == ("ECG",)
    assert first.path == tmp_path / "training2017" / "A00001"
    assert len({s.person for s in listing.specs}) == len(listing.specs)
    assert cinc2017_records(tmp_path) == listing.specs


def test_include_noisy_the_inner_folder_as_root_and_two_store_leads(tmp_path: Path):
    fake_cinc(tmp_path)
    listing = cinc2017_listing(tmp_path / "training2017", include_noisy=True, store_leads=2)
    assert listing.left_out_noisy == 0 and len(listing.specs) == 4
    noisy = [s for s in listing.specs if s.extra["rhythm"] == "~"]
    assert [s.person for s in noisy] == ["cinc2017-A00003"]
    assert {s.leads for s in listing.specs} == {("ECG", "ECG")}


def test_a_missing_reference_csv_is_a_clear_error(tmp_path: Path):
    fake_cinc(tmp_path, reference=False)
    with pytest.raises(EcgbioError, match=r"REFERENCE\.csv.*labels file not found"):
        cinc2017_records(tmp_path)


def test_a_record_without_a_label_is_a_clear_error(tmp_path: Path):
    fake_cinc(tmp_path)
    write_wfdb(tmp_path / "training2017", "A00009", simulate_ecg(8, 300), 300, ["ECG"])
    with pytest.raises(EcgbioError, match=r"REFERENCE\.csv.*no label.*A00009"):
        cinc2017_records(tmp_path)


def test_a_malformed_reference_line_is_a_clear_error(tmp_path: Path):
    fake_cinc(tmp_path)
    (tmp_path / "training2017" / "REFERENCE.csv").write_text("A00001,N\nA00002;A\n")
    with pytest.raises(EcgbioError, match=r"REFERENCE\.csv.*line 2"):
        cinc2017_records(tmp_path)


def test_an_empty_or_missing_root_is_a_clear_error(tmp_path: Path):
    with pytest.raises(EcgbioError, match="no CinC 2017 records"):
        cinc2017_records(tmp_path)
    with pytest.raises(EcgbioError, match="no CinC 2017 records"):
        cinc2017_records(tmp_path / "absent")


def test_cli_prepare_cinc2017_prints_the_noisy_count(tmp_path: Path):
    fake_cinc(tmp_path / "cinc")
    out = tmp_path / "store"
    runner = CliRunner()
    args = ["prepare", "cinc2017", "--root", str(tmp_path / "cinc"), "--out", str(out)]
    result = runner.invoke(app, [*args, "--rate", "100", "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "left out     1 record(s) labelled '~'" in result.output
    store = BeatStore.open(out)
    assert tuple(store.leads) == ("I",)
    assert set(store.records["x_rhythm"]) == {"N", "A", "O"}
    assert store.manifest["source"]["left_out_noisy"] == 1

    result = runner.invoke(
        app, [*args, "--include-noisy", "--overwrite", "--workers", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records_total"] == 4

    result = runner.invoke(app, ["prepare", "cinc2017", "--root", str(tmp_path), "--out", str(out)])
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.startswith("error: ") and "no CinC 2017 records" in result.stderr


@pytest.mark.realdata
def test_real_cinc2017_lists_8528_records_and_prepares_a_few(tmp_path: Path):
    root = shared("cinc2017")
    everything = cinc2017_listing(root, include_noisy=True)
    assert len(everything.specs) == 8528 and everything.left_out_noisy == 0
    assert everything.labels == {"N": 5050, "A": 738, "O": 2456, "~": 284}
    listing = cinc2017_listing(root)
    assert listing.left_out_noisy == 284 and len(listing.specs) == 8528 - 284
    assert len({s.person for s in listing.specs}) == len(listing.specs)

    specs = listing.specs[:5]
    summary = prepare_store(specs, tmp_path / "s", BeatConfig(rate=100), progress=False)
    assert summary.records_read == 5 and summary.beats > 5 * 5
    store = BeatStore.open(tmp_path / "s")
    assert tuple(store.leads) == ("I",)  # stored under the store's lead name ...
    assert set(store.records["leads"]) == {"ECG"}  # ... with what was read kept
    assert list(store.records["x_rhythm"]) == [s.extra["rhythm"] for s in specs]
    assert set(store.records["person"]) == {s.person for s in specs}
