"""The README's results tables are exactly what experiments/results/*.json say."""

from __future__ import annotations

from experiments.readme_tables import MODEL_CARD, README, RESULTS_DOC, render_readme


def test_readme_tables_match_the_results_files():
    text = README.read_text()
    assert "<!-- results:default-summary -->" in text
    assert render_readme(text) == text, "run: python -m experiments.readme_tables --write"


def test_results_page_tables_match_the_results_files():
    text = RESULTS_DOC.read_text()
    for block in ("rpeaks", "protocols", "ecgid", "ecgid-enrol-records", "speed", "score-norm"):
        assert f"<!-- results:{block} -->" in text, block
    assert render_readme(text) == text, "run: python -m experiments.readme_tables --write"


def test_model_card_tables_match_the_results_files():
    text = MODEL_CARD.read_text()
    for block in ("default-model", "default-variants", "default-levers"):
        assert f"<!-- results:{block} -->" in text, block
    assert render_readme(text) == text, "run: python -m experiments.readme_tables --write"


def test_a_variant_row_names_what_changed_and_the_paired_comparison():
    from experiments.readme_tables import _against_shipped, _variant_options

    variant = {
        "train_config": {
            "augment_stretch": 0.08,
            "augment_shift_s": 0.02,
            "metric_loss": "arcface+triplet",
        },
        "model_config": {"input_norm": "none", "widths": [64, 128, 256, 512], "embedding_dim": 256},
        "beat_config": {"before_s": 0.2, "after_s": 0.2},
        "versus_shipped": {
            "rank1_diff": 0.04,
            "rank1_diff_ci": [0.01, 0.08],
            "eer_diff": -0.01,
            "eer_diff_ci": [-0.03, 0.01],
        },
    }
    options = _variant_options(variant)
    assert "arcface+triplet" in options and "widths 64,128,256,512" in options
    assert "256-d embedding" in options and "stretch" not in options
    assert "rank-1 +0.040 (+0.010 to +0.080), EER -1.0 (-3.0 to +1.0) points" in _against_shipped(
        variant
    )


def test_a_variant_row_says_how_it_compares_with_the_shipped_model():
    from experiments.readme_tables import _same_persons

    assert _same_persons({}) == ""
    scored = {"persons": 52, "probes": 62, "rank1": 0.774, "eer": 0.081}
    assert "52 persons / 62 probes, where the model shipped then scores 0.774 / 8.1 %" in (
        _same_persons({"shipped_same_persons": scored})
    )
    skipped = _same_persons({"shipped_same_persons": {"skipped": "another window"}})
    assert "could not be scored on the same persons: another window" in skipped
