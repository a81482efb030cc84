"""Pair metrics: every (earlier, later) record pair as a trial, intervals over persons."""

from __future__ import annotations

import numpy as np
import pytest

from ecgbio.errors import ConfigError
from ecgbio.metrics.pairs import (
    PairScores,
    load_pair_scores,
    pair_figures,
    pair_scores,
    paired_difference,
)
from ecgbio.metrics.verification import eer


def unit(rows: list[list[float]]) -> np.ndarray:
    a = np.asarray(rows, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def cohort(seed: int = 0, persons: int = 40, noise: float = 0.8):
    rng = np.random.default_rng(seed)
    t, who, order = [], [], []
    for p in range(persons):
        centre = rng.normal(size=16)
        for k in range(int(rng.integers(2, 5))):
            t.append(centre + rng.normal(scale=noise, size=16))
            who.append(f"p{p:02d}")
            order.append(k)
    return unit(t), np.array(who), np.array(order)


def test_trials_are_every_earlier_later_pair_against_other_persons_first_records():
    # a: records a0 < a1 < a2; b: b0 < b1. a2 resembles b0 more than a1, less than a0.
    t = unit([[1, 0, 0], [0.6, 0.8, 0], [0.8, 0.2, 0.57], [0.3, 0.1, 1], [0, 0, 1]])
    ps = pair_scores(t, np.array(["a", "a", "a", "b", "b"]), np.array([0, 1, 2, 0, 1]))
    # trials: (a0,a1) (a0,a2) (a1,a2) (b0,b1); genuine scores are the earlier-later cosines
    assert ps.hit.size == 4 and ps.genuine.size == 4
    assert list(ps.hit_person) == ["a", "a", "a", "b"]
    scores = t @ t.T
    assert np.allclose(
        sorted(ps.genuine), sorted([scores[0, 1], scores[0, 2], scores[1, 2], scores[3, 4]])
    )
    # a2 vs a1 (0.6*0.8+0.8*0.2=0.64) loses to a2 vs b0's enrolment
    assert scores[2, 1] < scores[2, 3]
    assert list(ps.hit) == [
        scores[1, 0] > scores[1, 3],
        scores[2, 0] > scores[2, 3],
        False,
        scores[4, 3] > scores[4, 0],
    ]
    assert ps.impostor.size == 3 * 2  # every cross-person record pair once


def test_order_not_input_position_decides_which_record_enrols():
    t, who, order = cohort(1, persons=6)
    shuffle = np.random.default_rng(0).permutation(len(t))
    a = pair_scores(t, who, order)
    b = pair_scores(t[shuffle], who[shuffle], order[shuffle])
    assert np.array_equal(a.hit, b.hit) and np.allclose(a.genuine, b.genuine)


def test_figures_match_plain_eer_and_intervals_bracket_them(tmp_path):
    ps = pair_scores(*cohort())
    figures = pair_figures(ps, n_boot=200)
    assert figures["eer"] == pytest.approx(eer(ps.genuine, ps.impostor).eer)
    assert figures["rank1"] == pytest.approx(ps.hit.mean())
    assert figures["rank1_ci"][0] <= figures["rank1"] <= figures["rank1_ci"][1]
    assert figures["eer_ci"][0] <= figures["eer"] <= figures["eer_ci"][1]
    np.savez(tmp_path / "p.npz", **ps.arrays())
    back = load_pair_scores(tmp_path / "p.npz")
    assert np.array_equal(back.hit, ps.hit) and np.array_equal(back.impostor, ps.impostor)


def test_paired_difference_sees_a_better_model_and_not_a_copy():
    t, who, order = cohort(2, persons=60, noise=0.9)
    centres = {p: t[who == p].mean(0) for p in np.unique(who)}
    better = unit([0.5 * row + 0.5 * centres[p] for row, p in zip(t, who, strict=True)])
    base, good = pair_scores(t, who, order), pair_scores(better, who, order)
    diff = paired_difference(good, base, n_boot=300)
    assert diff["rank1_diff"] > 0 and diff["rank1_diff_ci"][0] > 0
    assert diff["eer_diff"] < 0 and diff["eer_diff_ci"][1] < 0
    assert diff["score_diff"] == pytest.approx(diff["rank1_diff"] - diff["eer_diff"])
    assert diff["score_diff_ci"][0] > 0
    same = paired_difference(base, base, n_boot=50)
    assert same["rank1_diff_ci"] == [0.0, 0.0] and same["eer_diff_ci"] == [0.0, 0.0]
    with pytest.raises(ConfigError, match="same trials"):
        paired_difference(base, pair_scores(*cohort(4)))


def test_persons_with_one_record_give_no_figures():
    ps = pair_scores(unit([[1, 0], [0, 1]]), np.array(["a", "b"]), np.array([0, 0]))
    assert pair_figures(ps) == {} and isinstance(ps, PairScores)


def test_unit_weights_reproduce_eer_with_ties_and_a_dropped_person_leaves_whole():
    from ecgbio.metrics.pairs import _boot_figures, _persons_of

    t, who, order = cohort(5, persons=12)
    ps = pair_scores(np.round(t, 1), who, order)  # rounded templates: many tied scores
    ps = PairScores(
        **{**ps.arrays(), "genuine": np.round(ps.genuine, 1), "impostor": np.round(ps.impostor, 1)}
    )
    persons = _persons_of(ps)
    ones = np.ones((1, len(persons)), np.int64)
    rank1, eers = _boot_figures(ps, (persons, ones))
    assert eers[0] == pytest.approx(eer(ps.genuine, ps.impostor).eer)
    assert rank1[0] == pytest.approx(ps.hit.mean())
    # leaving one person out equals recomputing without any comparison that involves them
    gone = persons[0]
    table = ones.copy()
    table[0, 0] = 0
    _, dropped = _boot_figures(ps, (persons, table))
    keep_g = ps.genuine_person != gone
    keep_i = (ps.impostor_person != gone) & (ps.impostor_other != gone)
    assert dropped[0] == pytest.approx(eer(ps.genuine[keep_g], ps.impostor[keep_i]).eer)


def test_paired_difference_refuses_other_records_and_no_resamples():
    t, who, order = cohort(6, persons=8)
    a = pair_scores(t, who, order, records=np.array([f"r{i}" for i in range(len(t))]))
    b = pair_scores(t, who, order, records=np.array([f"x{i}" for i in range(len(t))]))
    with pytest.raises(ConfigError, match="same trials"):
        paired_difference(a, b)
    with pytest.raises(ConfigError, match="n_boot"):
        paired_difference(a, a, n_boot=0)


def test_evaluate_pairs_reuses_evaluate_match_s_embeddings(tmp_path):
    from ecgbio.evaluate import evaluate_match, evaluate_pairs
    from ecgbio.protocols import general_split
    from ecgbio.runs import load_run
    from ecgbio.store import BeatStore
    from tests.fixtures import build_ptbxl_store

    store = BeatStore.open(build_ptbxl_store(tmp_path))
    model = load_run("default").model
    vset = general_split(store).val
    embedded: dict = {}
    evaluate_match(model, store, vset, embeddings_out=embedded)
    assert len(embedded["gallery"]) == len(vset.gallery) and len(embedded["probe"]) == len(
        vset.probe
    )
    again, fresh = (
        evaluate_pairs(model, store, vset, embeddings=embedded),
        evaluate_pairs(model, store, vset),
    )
    assert np.array_equal(again[1].genuine, fresh[1].genuine) and again[0] == fresh[0]


def test_pair_scores_normalise_maps_the_whole_matrix_before_trials_are_read():
    """``normalise`` sees the (records x records) cosine matrix, the persons and the templates in
    the order it is indexed; every trial then comes from its output."""
    rng = np.random.default_rng(1)
    templates = rng.standard_normal((9, 4))
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    persons = np.repeat(["a", "b", "c"], 3)
    order = np.tile([0, 1, 2], 3)
    seen = {}

    def double(scores: np.ndarray, who: np.ndarray, rows: np.ndarray) -> np.ndarray:
        seen["persons"], seen["templates"] = who, rows
        assert np.allclose(rows @ rows.T, scores)  # the templates behind the matrix, same order
        return 2.0 * scores

    plain = pair_scores(templates, persons, order)
    doubled = pair_scores(templates, persons, order, normalise=double)
    assert list(seen["persons"]) == sorted(persons)
    assert np.allclose(doubled.genuine, 2 * plain.genuine)
    assert np.allclose(doubled.impostor, 2 * plain.impostor)
    assert np.array_equal(doubled.hit, plain.hit)  # a monotone map keeps every ranking


def test_evaluate_pairs_with_an_outside_cohort_normalises_by_it(tmp_path):
    """``cohort`` replaces the other persons as cohort: each score is S-normalised by the two
    templates' own statistics against that fixed set, as :class:`ScoreNormalizer` computes them."""
    from ecgbio.evaluate import evaluate_match, evaluate_pairs, record_pair_inputs
    from ecgbio.metrics.norm import ScoreNormalizer
    from ecgbio.protocols import general_split
    from ecgbio.runs import load_run
    from ecgbio.store import BeatStore
    from tests.fixtures import build_ptbxl_store

    store = BeatStore.open(build_ptbxl_store(tmp_path))
    model = load_run("default").model
    vset = general_split(store).val
    embedded: dict = {}
    evaluate_match(model, store, vset, embeddings_out=embedded)
    rng = np.random.default_rng(0)
    outside = rng.standard_normal((40, embedded["gallery"].shape[1])).astype(np.float32)
    outside /= np.linalg.norm(outside, axis=1, keepdims=True)
    _, plain = evaluate_pairs(model, store, vset, embeddings=embedded)
    _, normed = evaluate_pairs(model, store, vset, embeddings=embedded, norm="s", cohort=outside)
    _, others = evaluate_pairs(model, store, vset, embeddings=embedded, norm="s")
    assert not np.allclose(normed.genuine, others.genuine)  # not the other persons' cohort

    def by_outside(scores, persons, rows):
        return ScoreNormalizer("s").fit(outside)(scores, rows, rows)

    rows = np.concatenate([vset.gallery, vset.probe])
    emb = np.concatenate([embedded["gallery"], embedded["probe"]])
    expected = pair_scores(*record_pair_inputs(store, rows, emb), by_outside)
    assert np.allclose(normed.genuine, expected.genuine)
    assert np.allclose(normed.impostor, expected.impostor)
    assert normed.genuine.size == plain.genuine.size
