"""The README's results tables are exactly what experiments/results/*.json say."""

from __future__ import annotations

from experiments.readme_tables import README, render_readme


def test_readme_tables_match_the_results_files():
    text = README.read_text()
    for block in (
        "rpeaks",
        "protocols",
        "ecgid",
        "ecgid-enrol-records",
        "default-model",
        "speed",
        "score-norm",
    ):
        assert f"<!-- results:{block} -->" in text, block
    assert render_readme(text) == text, "run: python -m experiments.readme_tables --write"


def test_a_variant_row_says_how_it_compares_with_the_shipped_model():
    from experiments.readme_tables import _same_persons

    assert _same_persons({}) == ""
    scored = {"persons": 52, "probes": 62, "rank1": 0.774, "eer": 0.081}
    assert "52 persons / 62 probes, where the model shipped then scores 0.774 / 8.1 %" in (
        _same_persons({"shipped_same_persons": scored})
    )
    skipped = _same_persons({"shipped_same_persons": {"skipped": "another window"}})
    assert "could not be scored on the same persons: another window" in skipped
