"""MIT-BIH as a training source: a stand-in lead, one person behind records 201 and 202."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecgbio.config import BeatConfig
from ecgbio.errors import EcgbioError
from ecgbio.prepare import prepare_record, prepare_store
from ecgbio.sources.mitdb import mitdb_records
from ecgbio.store import BeatStore
from tests.conftest import shared, simulate_ecg, write_wfdb


def test_mlii_stands_in_for_lead_i_and_201_202_are_one_person(tmp_path: Path):
    for i, name in enumerate(("100", "201", "202")):
        write_wfdb(
            tmp_path / "db", name, simulate_ecg(8, 360, seed=i, n_leads=2), 360, ["MLII", "V1"]
        )
    write_wfdb(tmp_path / "db", "102", simulate_ecg(8, 360, n_leads=2), 360, ["V5", "V2"])
    specs = mitdb_records(tmp_path / "db")
    assert {s.person for s in specs} == {"mitdb-100", "mitdb-201", "mitdb-102"}
    assert {s.record for s in specs if s.person == "mitdb-201"} == {"mitdb/201", "mitdb/202"}
    summary = prepare_store(specs, tmp_path / "s", BeatConfig(rate=100), progress=False)
    assert summary.records_rejected == 1  # 102 has no MLII
    store = BeatStore.open(tmp_path / "s")
    assert tuple(store.leads) == ("I",)  # stored under the store's lead name ...
    ok = store.records[store.records["status"] == "ok"]
    assert set(ok["leads"]) == {"MLII"}  # ... with what was read kept in the records table
    rejected = store.records[store.records["status"] != "ok"]
    assert "no lead 'MLII'" in rejected["reason"].iloc[0]


def test_a_stand_in_lead_must_match_the_store_s_lead_count(tmp_path: Path):
    write_wfdb(tmp_path / "db", "100", simulate_ecg(8, 360, n_leads=2), 360, ["MLII", "V1"])
    spec = mitdb_records(tmp_path / "db")[0]
    result = prepare_record(0, spec, BeatConfig(leads=("I", "II")))
    assert "must be as many" in result.error and "mitdb/100" in result.error


def test_empty_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(EcgbioError, match="no MIT-BIH records"):
        mitdb_records(tmp_path)


@pytest.mark.realdata
def test_real_mitdb_lists_47_persons():
    specs = mitdb_records(shared("mitdb"))
    assert len(specs) == 48 and len({s.person for s in specs}) == 47
