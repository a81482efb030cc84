"""Evaluation: score normalisation with the gallery's other persons as cohort, EER interval, scores.npz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ecgbio.cli import EXIT_ERROR, app
from ecgbio.errors import ConfigError
from ecgbio.evaluate import NORMS, evaluate_run, gallery_cohort_norm
from ecgbio.metrics.norm import asnorm, snorm, tnorm, znorm
from tests.eval_fixtures import build_unseen_run


@pytest.fixture(scope="module")
def unseen_run(tmp_path_factory) -> tuple[Path, Path]:
    return build_unseen_run(tmp_path_factory.mktemp("evalnorm"))


def _unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=(rows, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(name, scores, gallery_scores, g_persons, p_persons, top_k):
    """norm.py's functions, called once per comparison with each side's own cohort."""
    out = np.empty_like(scores)
    for p in range(scores.shape[0]):
        for e in range(scores.shape[1]):
            z_side = gallery_scores[e, g_persons != g_persons[e]][None, :]
            t_side = scores[p, g_persons != p_persons[p]][None, :]
            s = scores[p : p + 1, e : e + 1]
            if name == "z":
                out[p, e] = znorm(s, z_side)[0, 0]
            elif name == "t":
                out[p, e] = tnorm(s, t_side)[0, 0]
            elif name == "s":
                out[p, e] = snorm(s, z_side, t_side)[0, 0]
            else:
                out[p, e] = asnorm(s, z_side, t_side, top_k=top_k)[0, 0]
    return out


@pytest.mark.parametrize("name, top_k", [("z", None), ("t", None), ("s", None), ("as", 3)])
def test_gallery_cohort_norm_equals_norm_py_with_own_person_left_out(name, top_k):
    rng = np.random.default_rng(3)
    gallery, probes = _unit(9, 6, rng), _unit(14, 6, rng)
    g_persons = np.array([f"p{i}" for i in range(8)] + ["p0"])  # p0 enrolled twice
    p_persons = np.array([f"p{i % 10}" for i in range(14)])  # p8, p9 not enrolled (open set)
    scores, gallery_scores = probes @ gallery.T, gallery @ gallery.T
    got = gallery_cohort_norm(scores, gallery_scores, g_persons, p_persons, name, top_k)
    want = _brute_force(name, scores, gallery_scores, g_persons, p_persons, top_k)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    if name == "t":  # a fixed cohort per probe keeps each probe's ranking
        np.testing.assert_array_equal(np.argsort(-got, axis=1), np.argsort(-scores, axis=1))


def test_gallery_cohort_norm_refuses_a_tiny_gallery_and_unknown_names():
    scores, gallery = np.zeros((2, 2)), np.eye(2)
    persons = np.array(["a", "b"])
    with pytest.raises(ConfigError, match="needs >= 3 gallery persons"):
        gallery_cohort_norm(scores, gallery, persons, persons[:2], "z")
    with pytest.raises(ConfigError, match="unknown score normalisation 'x'"):
        gallery_cohort_norm(scores, gallery, persons, persons[:2], "x")
    assert gallery_cohort_norm(scores, gallery, persons, persons[:2], "none") is scores


@pytest.mark.parametrize("norm", NORMS)
def test_evaluate_each_norm_gives_finite_figures_and_an_eer_interval(unseen_run, norm):
    store, run = unseen_run
    figures = evaluate_run(run, store, "enrol-probe", norm=norm, ci_boot=200)
    assert figures["norm"] == norm and np.isfinite(figures["eer"])
    low, high = figures["eer_ci"]
    assert 0.0 <= low <= high <= 1.0
    assert 0.0 <= figures["rank1"] <= 1.0


def test_scores_npz_loads_without_pickle_and_matches_metrics(unseen_run, tmp_path):
    store, run = unseen_run
    evaluate_run(run, store, "enrol-probe", out=tmp_path, norm="s", ci_boot=50)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    with np.load(tmp_path / "scores.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert arrays["genuine"].size == metrics["genuine_scores"] == arrays["genuine_person"].size
    assert arrays["impostor"].size == metrics["impostor_scores"]
    assert arrays["cmc"][0] == pytest.approx(metrics["rank1"])
    assert float(arrays["eer_threshold"]) == pytest.approx(metrics["eer_threshold"])
    assert str(arrays["norm"]) == "s"
    if "other_day" in metrics:
        assert arrays["other_day_genuine"].size == metrics["other_day"]["genuine_scores"]


def test_evaluate_cli_norm_and_figures_line(unseen_run, tmp_path):
    store, run = unseen_run
    args = ["evaluate", "--model", str(run), "--store", str(store), "--protocol", "enrol-probe"]
    result = CliRunner().invoke(app, [*args, "--norm", "t", "--threads", "1"])
    assert result.exit_code == 0, result.output
    for part in ("rank-1", "rank-5", "EER", "95 % CI", "FAR 1 %", "FAR 0.1 %", "persons", "probes"):
        assert part in result.output
    bad = CliRunner().invoke(app, [*args, "--norm", "q"])
    assert bad.exit_code == EXIT_ERROR
    assert bad.output.strip().splitlines() == [
        "error: unknown score normalisation 'q': choose from none, z, t, s, as"
    ]


def _brute_pair_norm(scores, persons, name, blind, top_k):
    """Each cell's statistics gathered one by one: the enrolment's cohort without the probe."""
    n = len(scores)
    out = np.zeros_like(scores)
    for p in range(n):
        for e in range(n):
            z_side = [scores[r, e] for r in range(n) if persons[r] != persons[e] and r != p]
            t_side = [
                scores[p, c] for c in range(n) if (c != p if blind else persons[c] != persons[p])
            ]
            parts = []
            for side in (z_side, t_side):
                values = np.sort(side)[::-1][:top_k] if name == "as" else np.asarray(side)
                parts.append((scores[p, e] - values.mean()) / values.std())
            out[p, e] = sum(parts) / 2
    return out


@pytest.mark.parametrize(("name", "blind"), [("s", False), ("as", False), ("as", True)])
def test_pair_cohort_norm_leaves_each_trial_s_probe_out_of_its_enrolment_s_cohort(name, blind):
    """A high impostor score must not raise its own enrolment's cohort statistics (and so push
    itself down): the vectorised statistics equal cell-by-cell ones without the probe."""
    from ecgbio.evaluate import pair_cohort_norm

    rng = np.random.default_rng(3)
    t = rng.standard_normal((14, 6))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    scores = t @ t.T
    persons = np.repeat(np.array(["a", "b", "c", "d", "e", "f", "g"]), 2)
    got = pair_cohort_norm(
        scores, persons, name, blind_probes=blind, top_k=4 if name == "as" else None
    )
    want = _brute_pair_norm(scores, persons, name, blind, 4)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
