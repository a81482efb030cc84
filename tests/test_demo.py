"""The demo's model identifies unseen synthetic persons far above chance (machinery check)."""

from __future__ import annotations

import pytest

from ecgbio.demo import run_demo


@pytest.mark.slow
def test_demo_identifies_unseen_persons_well_above_chance(tmp_path):
    result = run_demo(
        tmp_path / "demo",
        n_persons=30,
        n_enrolled=6,
        epochs=8,
        workers=1,
        progress=False,
        echo=None,
    )
    ident = result["identification"]
    assert ident["persons"] == 6 and ident["probes"] == 12
    assert ident["rank1"] >= 3 * result["chance_rank1"]  # chance: 1 in 6
    assert ident["eer"] < 0.35
    gallery = result[
        "gallery"
    ]  # the same persons enrolled from 5 beats, identified by the CLI path
    assert gallery["persons"] == 6 and gallery["probes"] == 12
    assert gallery["top1_right"] >= 3 * gallery["probes"] * result["chance_rank1"]
