"""Every protocol recipe runs end to end on the PTB-XL-shaped synthetic fixture.

Synthetic figures are test output only: nothing is written to experiments/results.
"""

from __future__ import annotations

import pytest

from ecgbio.sources.synthetic import write_synthetic_cohort
from experiments import ptbxl_cross_session, ptbxl_seed, ptbxl_unseen
from tests.fixtures import RECORDS_PER_PERSON


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_cohort(
        tmp_path_factory.mktemp("exp") / "synthetic-ptbxl",
        n_persons=len(RECORDS_PER_PERSON),
        records_per_person=RECORDS_PER_PERSON,
        duration_s=20.0,
        rate=500,
        n_leads=12,
        seed=3,
    )


def common(root, tmp_path):
    return [
        "--root",
        str(root),
        "--work",
        str(tmp_path),
        "--epochs",
        "1",
        "--threads",
        "1",
        "--workers",
        "1",
        "--quiet",
        "--results",
        str(tmp_path / "results.json"),
    ]


def test_synthetic_figures_never_go_to_experiments_results(root, tmp_path):
    from experiments._common import RESULTS

    before = sorted(RESULTS.glob("*.json")) if RESULTS.exists() else []
    args = [
        a for a in common(root, tmp_path) if a not in ("--results", str(tmp_path / "results.json"))
    ]
    ptbxl_cross_session.main([*args, "--rate", "100"])
    after = sorted(RESULTS.glob("*.json")) if RESULTS.exists() else []
    assert before == after and not (tmp_path / "results.json").exists()


def test_seed_recipe(tmp_path):
    # 14 s records at 55-95 bpm: some reach the seed's 18 beats, the others pretrain the backbone
    root = write_synthetic_cohort(
        tmp_path / "short",
        n_persons=len(RECORDS_PER_PERSON),
        records_per_person=RECORDS_PER_PERSON,
        duration_s=14.0,
        rate=500,
        n_leads=1,
        seed=3,
    )
    figures = ptbxl_seed.main([*common(root, tmp_path), "--rate", "500"])
    assert set(figures["candidates"]) == {
        "arcface",
        "none",
        "arcface-pretrained",
        "none-pretrained",
    }
    assert figures["pretraining"]["split"]["train_identities"] >= 2
    assert {
        "accuracy",
        "loss",
        "val_accuracy",
        "val_loss",
        "test_accuracy",
        "test_loss",
        "epochs",
        "classes",
    } <= set(figures)
    assert figures["classes"] >= 1 and (tmp_path / "results.json").exists()


def test_seed_recipe_without_persons_to_pretrain_on(tmp_path, capsys):
    # one record per person: nobody is left to pretrain and validate across records on
    root = write_synthetic_cohort(
        tmp_path / "single",
        n_persons=4,
        records_per_person=[1] * 4,
        duration_s=25.0,
        rate=500,
        n_leads=1,
        seed=4,
    )
    figures = ptbxl_seed.main([*common(root, tmp_path), "--rate", "500"])
    out = capsys.readouterr().out
    assert "no pretraining: " in out and "general needs >= 2 persons with >= 2 records" in out
    assert set(figures["candidates"]) == {"arcface", "none"} and figures["pretraining"] is None
    assert figures["classes"] == 4 and (tmp_path / "results.json").exists()


def test_cross_session_recipe(root, tmp_path):
    figures = ptbxl_cross_session.main([*common(root, tmp_path), "--rate", "100"])
    assert figures["persons"] == sum(n >= 2 for n in RECORDS_PER_PERSON)
    assert 0 <= figures["rank1"] <= figures["rank5"] <= 1


@pytest.mark.parametrize("leads", ["I", "all"])
def test_unseen_recipe(root, tmp_path, leads):
    figures = ptbxl_unseen.main([*common(root, tmp_path), "--rate", "100", "--leads", leads])
    assert figures["persons"] == sum(n >= 2 for n in RECORDS_PER_PERSON)
    assert set(figures["by_enrol_beats"]) == {"1", "3", "5", "10", "all"}
    results = (tmp_path / "results.json").read_text()
    assert '"command"' in results and '"hardware"' in results
