"""The sweep's bookkeeping: which runs are folds of one variant, and the fold runs judged at one
epoch for all (no per-fold choice of epoch on the persons they are measured on)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from experiments.default_sweep import at_common_epoch, fold_group


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("kfold-f0", "kfold"),
        ("wide256-kfold-f4", "wide256-kfold"),
        ("wide256-kfold-s1-f3", "wide256-kfold-s1"),
        ("cinc-kfold-f2", "cinc-kfold"),
        ("base", None),
        ("base-s1", None),
        ("triplet-wide", None),
    ],
)
def test_fold_group(name: str, group: str | None) -> None:
    assert fold_group(name) == group


def _history(run: Path, rows: list[tuple[int, float, float]]) -> None:
    run.mkdir(parents=True)
    with open(run / "history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "val_pairs_rank1", "val_pairs_eer"])
        writer.writerows(rows)


def test_at_common_epoch_reads_every_fold_at_the_median_selected_epoch(tmp_path: Path) -> None:
    names = ["v-kfold-f0", "v-kfold-f1", "v-kfold-f2"]
    # fold 0 peaks at epoch 1, fold 2 at epoch 3: the common epoch is the median, 2
    _history(tmp_path / "run-default-v-kfold-f0", [(1, 0.9, 0.05), (2, 0.7, 0.10), (3, 0.6, 0.2)])
    _history(tmp_path / "run-default-v-kfold-f1", [(1, 0.5, 0.20), (2, 0.8, 0.08), (3, 0.7, 0.1)])
    _history(tmp_path / "run-default-v-kfold-f2", [(1, 0.4, 0.30), (2, 0.6, 0.12)])
    outcomes = {
        n: {"best_epoch": e, "shipped_same_persons": {"pairs": {"rank1": 0.6, "eer": 0.1}}}
        for n, e in zip(names, [1, 2, 3], strict=True)
    }
    common = at_common_epoch(tmp_path, names, outcomes)
    assert common["epoch"] == 2
    assert common["selected_epochs"] == [1, 2, 3]
    assert common["rank1_mean"] == pytest.approx((0.7 + 0.8 + 0.6) / 3)
    assert common["eer_mean"] == pytest.approx((0.10 + 0.08 + 0.12) / 3)
    assert common["rank1_diff"] == pytest.approx(0.7 - 0.6)
    assert common["eer_diff"] == pytest.approx(0.0, abs=1e-12)


def test_at_common_epoch_takes_a_shorter_runs_last_epoch(tmp_path: Path) -> None:
    """A fold that stopped early before the common epoch is judged at its last epoch."""
    names = ["v-kfold-f0", "v-kfold-f1", "v-kfold-f2"]
    for name, rows in zip(
        names,
        [[(1, 0.5, 0.2)], [(1, 0.5, 0.2), (2, 0.5, 0.2), (3, 0.9, 0.1)], [(1, 0.5, 0.2)] * 1],
        strict=True,
    ):
        _history(tmp_path / f"run-default-{name}", rows)
    outcomes = {
        n: {"best_epoch": e, "shipped_same_persons": {"pairs": {"rank1": 0.5, "eer": 0.2}}}
        for n, e in zip(names, [3, 3, 1], strict=True)
    }
    common = at_common_epoch(tmp_path, names, outcomes)
    assert common["epoch"] == 3
    assert common["rank1_mean"] == pytest.approx((0.5 + 0.9 + 0.5) / 3)
