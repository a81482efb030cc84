"""The README's results tables are exactly what experiments/results/*.json say."""

from __future__ import annotations

from experiments.readme_tables import README, render_readme


def test_readme_tables_match_the_results_files():
    text = README.read_text()
    for block in ("rpeaks", "protocols", "ecgid", "default-model", "speed", "score-norm"):
        assert f"<!-- results:{block} -->" in text, block
    assert render_readme(text) == text, "run: python -m experiments.readme_tables --write"
