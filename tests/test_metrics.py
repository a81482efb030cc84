"""Biometric metrics: verification (ROC, EER, TAR@FAR, bootstrap CI), identification, score norms.

Expected numbers are worked out by hand in the comments; random data is checked against
scikit-learn and against brute-force reimplementations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from ecgbio.errors import ConfigError
from ecgbio.metrics.identification import cmc, dir_at_fpir, rank_k_accuracy
from ecgbio.metrics.norm import ScoreNormalizer, asnorm, snorm, tnorm, znorm
from ecgbio.metrics.verification import (
    EerResult,
    auc,
    d_prime,
    eer,
    eer_ci,
    far_frr,
    min_dcf,
    roc,
    split_scores,
    tar_at_far,
    threshold_at_far,
)

# A small case with ties, used throughout. Distinct scores, decreasing: 0.9 0.7 0.5 0.3 0.2.
#   threshold  +inf  0.9   0.7   0.5   0.3   0.2
#   genuine >=  0     1     3     3     4     4     (of 4: the two 0.7s enter together)
#   impostor >= 0     0     1     2     2     4     (of 4: 0.7 ties with two genuine scores)
#   TAR         0    .25   .75   .75    1     1
#   FAR         0     0    .25   .50   .50    1
#   FRR         1    .75   .25   .25    0     0
GEN = np.array([0.9, 0.7, 0.7, 0.3])
IMP = np.array([0.7, 0.5, 0.2, 0.2])


def _random_scores(seed: int, n_gen: int = 300, n_imp: int = 700, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    gen, imp = rng.normal(1.0, 1.0, n_gen), rng.normal(0.0, 1.0, n_imp)
    if decimals is not None:  # many ties, within and across classes
        gen, imp = gen.round(decimals), imp.round(decimals)
    return gen, imp


def _sklearn_form(gen: np.ndarray, imp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.ones(gen.size), np.zeros(imp.size)], np.r_[gen, imp]


# ------------------------------------------------------------------------------------ ROC


def test_roc_by_hand_with_ties() -> None:
    curve = roc(GEN, IMP)
    np.testing.assert_array_equal(curve.thresholds, [np.inf, 0.9, 0.7, 0.5, 0.3, 0.2])
    np.testing.assert_allclose(curve.tar, [0, 0.25, 0.75, 0.75, 1, 1])
    np.testing.assert_allclose(curve.far, [0, 0, 0.25, 0.5, 0.5, 1])
    np.testing.assert_allclose(curve.frr, [1, 0.75, 0.25, 0.25, 0, 0])
    assert len(curve) == 6


@pytest.mark.parametrize("decimals", [None, 1])
def test_roc_matches_sklearn_roc_curve(decimals: int | None) -> None:
    gen, imp = _random_scores(1, decimals=decimals)
    y, s = _sklearn_form(gen, imp)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    curve = roc(gen, imp)
    np.testing.assert_array_equal(curve.thresholds, thr)
    np.testing.assert_allclose(curve.far, fpr)
    np.testing.assert_allclose(curve.tar, tpr)
    # and far_frr at sklearn's (default, thinned) thresholds agrees point by point
    fpr, tpr, thr = roc_curve(y, s)
    for f, t, threshold in zip(fpr, tpr, thr, strict=True):
        far, frr = far_frr(gen, imp, threshold)
        assert far == pytest.approx(f) and 1 - frr == pytest.approx(t)


def test_auc_by_hand_ties_count_half() -> None:
    # 16 genuine-impostor pairs: 0.9 beats all 4; each 0.7 beats 0.5, 0.2, 0.2 and ties 0.7
    # (3.5 each, 7 for both); 0.3 beats the two 0.2s: (4 + 7 + 2) / 16 = 13/16.
    assert auc(GEN, IMP) == pytest.approx(13 / 16)
    # trapezoids under the hand ROC: .25*(.25+.75)/2 + .25*.75 + .5*1 = .125 + .1875 + .5
    curve = roc(GEN, IMP)
    area = np.sum(np.diff(curve.far) * (curve.tar[1:] + curve.tar[:-1]) / 2)
    assert area == pytest.approx(13 / 16)


@pytest.mark.parametrize(("seed", "decimals"), [(2, None), (3, 1), (4, 0)])
def test_auc_matches_sklearn(seed: int, decimals: int | None) -> None:
    gen, imp = _random_scores(seed, decimals=decimals)
    assert auc(gen, imp) == pytest.approx(roc_auc_score(*_sklearn_form(gen, imp)), abs=1e-12)


def test_auc_extremes() -> None:
    assert auc([2, 3], [0, 1]) == 1.0
    assert auc([0, 1], [2, 3]) == 0.0
    assert auc([1, 1], [1, 1, 1]) == 0.5


def test_split_scores() -> None:
    gen, imp = split_scores([1, 0, 1, 0, 0], [0.9, 0.1, 0.8, 0.2, 0.3])
    np.testing.assert_array_equal(gen, [0.9, 0.8])
    np.testing.assert_array_equal(imp, [0.1, 0.2, 0.3])
    gen, imp = split_scores(np.array([True, False]), [0.5, 0.4])
    assert gen.tolist() == [0.5] and imp.tolist() == [0.4]


# ------------------------------------------------------------------------------------ EER


def test_eer_exactly_on_an_operating_point() -> None:
    # FAR - FRR along the hand ROC: -1, -.75, 0, .25, .5, 1: zero exactly at threshold 0.7, where
    # FAR = FRR = .25. Thresholds in (0.5, 0.7] all realise it; the midpoint 0.6 is reported.
    result = eer(GEN, IMP)
    assert isinstance(result, EerResult)
    assert result.eer == pytest.approx(0.25)
    assert result.threshold == pytest.approx(0.6)
    assert far_frr(GEN, IMP, result.threshold) == pytest.approx((0.25, 0.25))


def test_eer_interpolated_between_points() -> None:
    # genuine .6 .4, impostor .5 .3 .1:
    #   threshold  +inf  .6    .5    .4    .3    .1
    #   FAR         0    0    1/3   1/3   2/3    1
    #   FRR         1   1/2   1/2    0     0     0
    #   FAR-FRR    -1  -1/2  -1/6   1/3   2/3    1
    # Sign change between .5 and .4; weight of .4 = (1/6) / (1/6 + 1/3) = 1/3:
    #   FAR = 1/3 (constant), FRR = 1/2 - (1/3)(1/2) = 1/3  -> EER 1/3;
    #   threshold .5 + (1/3)(.4 - .5) = 0.4667.
    result = eer([0.6, 0.4], [0.5, 0.3, 0.1])
    assert result.eer == pytest.approx(1 / 3)
    assert result.threshold == pytest.approx(0.5 - 0.1 / 3)


def test_eer_single_genuine_score() -> None:
    # genuine .5, impostor .1 .2 .3 .9:
    #   threshold +inf  .9   .5   .3 ...
    #   FAR        0   .25  .25  .5
    #   FRR        1    1    0    0
    #   FAR-FRR   -1  -.75  .25
    # between .9 and .5, weight of .5 = .75 / (.75 + .25) = .75: FAR .25, FRR 1 - .75 = .25;
    # threshold .9 + .75 (.5 - .9) = .6
    result = eer([0.5], [0.1, 0.2, 0.3, 0.9])
    assert result == pytest.approx((0.25, 0.6))


def test_eer_perfect_separation() -> None:
    # all genuine accepted and no impostor at threshold 0.8 (FAR = FRR = 0); midpoint to 0.3
    result = eer([0.8, 0.9, 1.0], [0.1, 0.3])
    assert result.eer == 0.0
    assert result.threshold == pytest.approx(0.55)
    assert 0.3 < result.threshold < 0.8


def test_eer_all_scores_equal() -> None:
    # one operating point besides +inf: accept all (FAR 1, FRR 0); halfway is 0.5
    assert eer([0.5, 0.5, 0.5], [0.5, 0.5]) == (0.5, 0.5)


def test_eer_crossing_right_after_infinity_uses_the_highest_score() -> None:
    # genuine .5 .5, impostor .5 .1: points +inf (FAR 0, FRR 1) and .5 (FAR .5, FRR 0);
    # FAR-FRR -1 -> .5, weight of .5 = 1 / 1.5 = 2/3: FAR = 2/3 * .5 = 1/3 = FRR = 1 - 2/3.
    # The upper threshold is +inf, so the threshold reported is 0.5.
    assert eer([0.5, 0.5], [0.5, 0.1]) == pytest.approx((1 / 3, 0.5))


def test_eer_inverted_scores() -> None:
    # impostors always higher: at threshold .9, FAR = FRR = 1 exactly
    assert eer([0.1], [0.9]) == pytest.approx((1.0, 0.5))


def test_eer_is_where_far_and_frr_cross_on_random_data() -> None:
    gen, imp = _random_scores(5, decimals=2)
    result = eer(gen, imp)
    curve = roc(gen, imp)
    d = curve.far - curve.frr
    i = int(np.argmax(d >= 0))
    # the EER lies between the bracketing points' FAR and FRR values
    lo = min(curve.far[i - 1], curve.frr[i])
    hi = max(curve.far[i], curve.frr[i - 1])
    assert lo - 1e-12 <= result.eer <= hi + 1e-12
    assert curve.thresholds[i] <= result.threshold <= curve.thresholds[i - 1]
    assert 0.25 < result.eer < 0.35  # two unit normals one SD apart: Phi(-1/2) = 0.3085


# ------------------------------------------------------------------------- fixed-FAR points


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # from the hand ROC: the last point whose FAR <= target
        (0.0, (0.25, 0.9)),  # ZeroFMR: only 0.9 accepted
        (0.25, (0.75, 0.7)),
        (0.3, (0.75, 0.7)),  # FAR .5 at 0.5 would exceed .3: conservative
        (0.5, (1.0, 0.3)),
        (1.0, (1.0, 0.2)),
    ],
)
def test_tar_at_far_by_hand(target: float, expected: tuple[float, float]) -> None:
    assert tar_at_far(GEN, IMP, target) == pytest.approx(expected)
    assert threshold_at_far(GEN, IMP, target) == pytest.approx(expected[1])


def test_tar_at_far_when_top_score_is_an_impostor() -> None:
    # FAR 0 is only reached by accepting nothing
    assert tar_at_far([0.5, 0.6], [0.9, 0.1], 0.0) == (0.0, math.inf)


def test_tar_at_far_never_exceeds_target_on_random_data() -> None:
    gen, imp = _random_scores(6, n_gen=500, n_imp=5000, decimals=2)
    curve = roc(gen, imp)
    for target in (0.0, 0.001, 0.01, 0.1, 0.5):
        tar, threshold = tar_at_far(gen, imp, target)
        far, frr = far_frr(gen, imp, threshold)
        assert far <= target
        assert tar == pytest.approx(1 - frr)
        # brute force: best TAR over all exact operating points within the target
        assert tar == pytest.approx(curve.tar[curve.far <= target].max())


# -------------------------------------------------------------------------- other summaries


def test_far_frr_by_hand() -> None:
    assert far_frr(GEN, IMP, 0.7) == (0.25, 0.25)  # ties at 0.7 accepted on both sides
    assert far_frr(GEN, IMP, 0.71) == (0.0, 0.75)
    assert far_frr(GEN, IMP, math.inf) == (0.0, 1.0)
    assert far_frr(GEN, IMP, -math.inf) == (1.0, 0.0)


def test_d_prime_by_hand() -> None:
    # genuine mean 2, variance ((1-2)^2 + (3-2)^2) / 2 = 1; impostor mean 0, variance 0:
    # d' = 2 / sqrt((1 + 0) / 2) = 2 sqrt(2)
    assert d_prime([1, 3], [0, 0, 0]) == pytest.approx(2 * math.sqrt(2))
    assert d_prime([0, 0, 0], [1, 3]) == pytest.approx(-2 * math.sqrt(2))
    assert d_prime([1, 1], [0]) == math.inf
    assert math.isnan(d_prime([1, 1], [1]))


def test_min_dcf_by_hand() -> None:
    # p_target .5, unit costs: DCF = .5 FRR + .5 FAR, normalised by min(.5, .5) = .5 -> FRR + FAR
    # over the hand ROC: 1, .75, .5, .75, .5, 1 -> 0.5
    assert min_dcf(GEN, IMP, p_target=0.5) == pytest.approx(0.5)
    # p_target .01: (.01 FRR + .99 FAR) / .01 = FRR + 99 FAR: 1, .75, 25, 49.75, 49.5, 99 -> .75
    assert min_dcf(GEN, IMP) == pytest.approx(0.75)
    # c_miss 10, p .5: (5 FRR + .5 FAR) / .5 = 10 FRR + FAR: 10, 7.5, 2.75, 3, .5, 1 -> .5
    assert min_dcf(GEN, IMP, p_target=0.5, c_miss=10) == pytest.approx(0.5)
    assert min_dcf([1, 2], [0]) == 0.0


def test_min_dcf_matches_brute_force_on_random_data() -> None:
    gen, imp = _random_scores(7, decimals=2)
    cands = np.unique(np.r_[gen, imp, np.inf])
    costs = []
    for t in cands:
        far, frr = far_frr(gen, imp, t)
        costs.append((0.05 * frr * 2 + 0.95 * far) / min(0.05 * 2, 0.95))
    assert min_dcf(gen, imp, p_target=0.05, c_miss=2) == pytest.approx(min(costs))


# -------------------------------------------------------------------- bootstrap over persons


def _person_scores(n_persons: int, seed: int, n_gen: int = 10, n_imp: int = 30):
    """Scores with a per-person effect, so comparisons of one person are correlated."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(0.0, 0.7, n_persons)  # each person's genuine-score quality
    gen_groups = np.repeat(np.arange(n_persons), n_gen)
    imp_groups = np.repeat(np.arange(n_persons), n_imp)
    gen = rng.normal(1.5 + offset[gen_groups], 1.0)
    imp = rng.normal(0.0, 1.0, imp_groups.size)
    return gen, gen_groups, imp, imp_groups


def test_eer_ci_contains_point_estimate_and_narrows_with_more_persons() -> None:
    small = _person_scores(20, seed=1)
    large = _person_scores(400, seed=2)
    lo_s, hi_s = eer_ci(*small, n_boot=300)
    lo_l, hi_l = eer_ci(*large, n_boot=300)
    assert lo_s <= eer(small[0], small[2]).eer <= hi_s
    assert lo_l <= eer(large[0], large[2]).eer <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 2  # ~sqrt(20) times narrower in expectation


def test_eer_ci_one_person_is_the_point_estimate() -> None:
    # every resample draws the single person once: all weights 1, so each bootstrap EER is eer()
    point = eer(GEN, IMP).eer
    assert eer_ci(GEN, ["a"] * 4, IMP, ["a"] * 4, n_boot=10) == pytest.approx((point, point))


def test_eer_ci_equals_brute_force_resampling() -> None:
    # Brute force: rebuild each resample by repeating every drawn person's comparisons, then
    # call eer(). Mirrors the implementation's draws: one (n_boot, n_persons) integers() call
    # (n_boot <= its chunk of 128) over persons in sorted-id order.
    gen, gen_groups, imp, imp_groups = _person_scores(15, seed=3, n_gen=4, n_imp=6)
    gen, imp = gen.round(1), imp.round(1)  # ties across persons and classes
    persons = np.unique(np.r_[gen_groups, imp_groups])
    draws = np.random.default_rng(11).integers(0, persons.size, size=(50, persons.size))
    eers = []
    for row in draws:
        g = np.concatenate([gen[gen_groups == persons[p]] for p in row])
        i = np.concatenate([imp[imp_groups == persons[p]] for p in row])
        eers.append(eer(g, i).eer)
    expected = np.quantile(eers, [0.05, 0.95])
    got = eer_ci(gen, gen_groups, imp, imp_groups, n_boot=50, alpha=0.1, seed=11)
    assert got == pytest.approx(tuple(expected), abs=1e-12)


def test_eer_ci_is_reproducible_and_accepts_string_ids() -> None:
    gen, gen_groups, imp, imp_groups = _person_scores(30, seed=4)
    names = np.array([f"p{i:03d}" for i in range(30)])
    a = eer_ci(gen, names[gen_groups], imp, names[imp_groups], n_boot=200, seed=5)
    b = eer_ci(gen, gen_groups, imp, imp_groups, n_boot=200, seed=5)
    assert a == b  # same sorted order of persons, same draws
    assert eer_ci(gen, gen_groups, imp, imp_groups, n_boot=200, seed=6) != b


def test_eer_ci_skips_resamples_without_impostors() -> None:
    # person 1 has only a genuine score, person 0 both: resamples of {1, 1} have no impostor
    lo, hi = eer_ci([0.9, 0.8], [0, 1], [0.1], [0], n_boot=50)
    assert (lo, hi) == (0.0, 0.0)


def test_eer_ci_refuses_when_no_resample_has_both_kinds() -> None:
    # person 0 has only a genuine score, person 1 only an impostor one; with one resample whose
    # two draws are the same person (a seed found by mirroring the implementation's draws),
    # no resample has an EER
    seed = next(
        s for s in range(100) if len(set(np.random.default_rng(s).integers(0, 2, (1, 2))[0])) == 1
    )
    with pytest.raises(ConfigError, match="no bootstrap resample had both genuine and impostor"):
        eer_ci([0.9], [0], [0.1], [1], n_boot=1, seed=seed)


# ------------------------------------------------------------------------- identification

# Gallery: persons A (two templates), B, C. Person scores are the max over templates.
GALLERY = ["A", "A", "B", "C"]
SEARCH = np.array(
    [
        [0.2, 0.9, 0.5, 0.1],  # probe of A: A = max(.2, .9) = .9 > B .5 > C .1 -> rank 1
        [0.8, 0.3, 0.6, 0.7],  # probe of B: A .8, C .7 above B .6 -> rank 3
        [0.4, 0.4, 0.4, 0.4],  # probe of C: three-way tie, pessimistic -> rank 3
        [0.6, 0.1, 0.6, 0.2],  # probe of A: A .6 ties B .6, pessimistic -> rank 2
    ]
)
PROBES = ["A", "B", "C", "A"]


def test_cmc_by_hand() -> None:
    # ranks 1, 3, 3, 2: CMC(1) = 1/4, CMC(2) = 2/4, CMC(3) = 4/4
    np.testing.assert_allclose(cmc(SEARCH, GALLERY, PROBES), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(cmc(SEARCH, GALLERY, PROBES, max_rank=5), [0.25, 0.5, 1, 1, 1])
    np.testing.assert_allclose(cmc(SEARCH, GALLERY, PROBES, max_rank=1), [0.25])
    assert rank_k_accuracy(SEARCH, GALLERY, PROBES) == 0.25
    assert rank_k_accuracy(SEARCH, GALLERY, PROBES, k=2) == 0.5


def test_cmc_multi_template_uses_the_best_template() -> None:
    # probe 0 with only A's first template (.2) would be at rank 2 behind B (.5)
    assert rank_k_accuracy(SEARCH[:1, [0, 2, 3]], ["A", "B", "C"], ["A"]) == 0.0
    assert rank_k_accuracy(SEARCH[:1], GALLERY, ["A"]) == 1.0
    # template order and the type of ids do not matter: A, B, C -> 1, 2, 3, columns permuted
    perm = [3, 1, 2, 0]  # gallery becomes C A B A
    np.testing.assert_allclose(
        cmc(SEARCH[:, perm], [3, 1, 2, 1], [1, 2, 3, 1]), cmc(SEARCH, GALLERY, PROBES)
    )


def test_cmc_pessimistic_ties() -> None:
    # a constant matrix: every true person ties with all 3 persons -> rank 3 for every probe
    np.testing.assert_allclose(cmc(np.ones((2, 3)), [1, 2, 3], [1, 3]), [0, 0, 1])


# Open set: gallery A, B; mated probes of A, A, B, B and non-mated probes X, Y, Z, W.
OPEN = np.array(
    [
        [0.9, 0.2],  # A: rank 1 at .9                 -> hit score .9
        [0.5, 0.6],  # A: B scores higher, rank 2       -> never identified at rank 1
        [0.1, 0.7],  # B: rank 1 at .7                  -> hit score .7
        [0.4, 0.4],  # B: tie with A, pessimistic rank 2 -> never identified
        [0.8, 0.3],  # X: best .8
        [0.2, 0.6],  # Y: best .6
        [0.3, 0.1],  # Z: best .3
        [0.65, 0.0],  # W: best .65
    ]
)
OPEN_PROBES = ["A", "A", "B", "B", "X", "Y", "Z", "W"]


@pytest.mark.parametrize(
    ("fpir", "expected"),
    [
        # non-mated bests .8 .65 .6 .3; hits .9 .7 (of 4 mated searches)
        (0.0, (0.25, 0.9)),  # no false positive: threshold above .8 -> .9, DIR 1/4
        (0.25, (0.5, 0.7)),  # .8 may pass: lowest threshold above .65 is .7, DIR 2/4
        (0.3, (0.5, 0.7)),  # 1.2 false positives allowed -> still 1
        (0.5, (0.5, 0.65)),  # .8 and .65 may pass: threshold .65 (FPIR exactly .5)
        (1.0, (0.5, 0.3)),  # everything passes: lowest candidate score
    ],
)
def test_dir_at_fpir_by_hand(fpir: float, expected: tuple[float, float]) -> None:
    assert dir_at_fpir(OPEN, ["A", "B"], OPEN_PROBES, fpir) == pytest.approx(expected)


def test_dir_at_fpir_matches_brute_force_on_random_data() -> None:
    rng = np.random.default_rng(9)
    gallery = np.repeat(np.arange(20), 2)  # 20 persons, 2 templates each (columns 2p, 2p + 1)
    probes = rng.integers(0, 40, 200)  # persons 20-39 are not enrolled: about half non-mated
    mated = probes < 20
    scores = rng.normal(0, 1, (200, 40))
    rows = np.flatnonzero(mated)
    scores[rows, 2 * probes[rows]] += 1.5  # one good template per mated search
    scores = scores.round(1)  # ties
    person = scores.reshape(200, 20, 2).max(axis=2)
    best = person.max(axis=1)
    true = np.full(200, -np.inf)
    true[rows] = person[rows, probes[rows]]
    rank1 = mated & (np.sum(person >= true[:, None], axis=1) == 1)
    candidates = np.unique(np.r_[best[~mated], true[rank1], np.inf])
    for target in (0.0, 0.05, 0.2, 1.0):
        t = min(c for c in candidates if np.mean(best[~mated] >= c) <= target)
        expected_dir = np.sum(rank1 & (true >= t)) / mated.sum()
        assert dir_at_fpir(scores, gallery, probes, target) == pytest.approx((expected_dir, t))


# ---------------------------------------------------------------------- score normalisation

SCORES = np.array([[1.0, 0.5], [0.2, 0.0]])  # (2 probes, 2 enrolments)
# enrolment 0: cohort .1 .3 -> mean .2, std .1; enrolment 1: -.2 .2 -> mean 0, std .2
ENROL_COHORT = np.array([[0.1, 0.3], [-0.2, 0.2]])
# probe 0: cohort 0 .4 -> mean .2, std .2; probe 1: -.3 .1 -> mean -.1, std .2
PROBE_COHORT = np.array([[0.0, 0.4], [-0.3, 0.1]])
# Z: [(1-.2)/.1, (.5-0)/.2], [(.2-.2)/.1, (0-0)/.2]
Z = np.array([[8.0, 2.5], [0.0, 0.0]])
# T: [(1-.2)/.2, (.5-.2)/.2], [(.2+.1)/.2, (0+.1)/.2]
T = np.array([[4.0, 1.5], [1.5, 0.5]])


def test_znorm_tnorm_snorm_by_hand() -> None:
    np.testing.assert_allclose(znorm(SCORES, ENROL_COHORT), Z)
    np.testing.assert_allclose(tnorm(SCORES, PROBE_COHORT), T)
    np.testing.assert_allclose(snorm(SCORES, ENROL_COHORT, PROBE_COHORT), (Z + T) / 2)
    # S = [[6, 2], [.75, .25]]
    np.testing.assert_allclose(snorm(SCORES, ENROL_COHORT, PROBE_COHORT), [[6, 2], [0.75, 0.25]])


def test_znorm_is_standardisation_against_each_enrolments_cohort() -> None:
    rng = np.random.default_rng(10)
    scores, cohort = rng.normal(size=(5, 3)), rng.normal(size=(3, 40))
    z = znorm(scores, cohort)
    for p in range(5):
        for e in range(3):
            assert z[p, e] == pytest.approx((scores[p, e] - cohort[e].mean()) / cohort[e].std())


def test_asnorm_by_hand_uses_top_k_cohort_scores() -> None:
    # four cohort members; the top 2 of each row are the hand cohorts above, so the statistics,
    # and hence the result, are those of the S-norm test: [[6, 2], [.75, .25]]
    enrol = np.array([[0.1, 0.3, -0.5, -0.9], [0.2, -0.7, -0.2, -0.4]])
    probe = np.array([[-1.0, 0.0, 0.4, -2.0], [-0.3, 0.1, -0.5, -0.8]])
    np.testing.assert_allclose(asnorm(SCORES, enrol, probe, top_k=2), [[6, 2], [0.75, 0.25]])
    # top_k = cohort size is plain S-norm
    np.testing.assert_allclose(asnorm(SCORES, enrol, probe, top_k=4), snorm(SCORES, enrol, probe))


def test_score_normalizer_by_hand() -> None:
    cohort = np.array([[1.0, 0.0], [0.0, 1.0]])
    enrol = np.array([[1.0, 0.0]])  # cohort scores 1, 0: mean .5, std .5
    probe = np.array([[0.6, 0.8]])  # cohort scores .6, .8: mean .7, std .1
    scores = probe @ enrol.T  # .6
    # Z = (.6 - .5) / .5 = .2; T = (.6 - .7) / .1 = -1; S = -.4
    for name, expected in (("none", 0.6), ("z", 0.2), ("t", -1.0), ("s", -0.4), ("as", -0.4)):
        norm = ScoreNormalizer(name, top_k=2 if name == "as" else None).fit(cohort)
        assert norm(scores, enrol, probe)[0, 0] == pytest.approx(expected)
    assert ScoreNormalizer()(scores)[0, 0] == pytest.approx(0.6)  # "none" needs no cohort


def test_score_normalizer_matches_functions() -> None:
    rng = np.random.default_rng(12)

    def unit(n: int) -> np.ndarray:
        x = rng.normal(size=(n, 8)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    cohort, enrol, probe = unit(30), unit(4), unit(6)
    scores = probe @ enrol.T
    # the normaliser computes in float64 from the float32 embeddings; so does the reference
    ec, pc = enrol @ cohort.T.astype(np.float64), probe @ cohort.T.astype(np.float64)
    norm = ScoreNormalizer("as", top_k=10).fit(cohort)
    np.testing.assert_allclose(norm(scores, enrol, probe), asnorm(scores, ec, pc, 10), rtol=1e-5)
    np.testing.assert_allclose(
        ScoreNormalizer("z").fit(cohort)(scores, enrol), znorm(scores, ec), rtol=1e-5
    )
    assert "cohort=30" in repr(norm) and ScoreNormalizer("t").fitted is False


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: roc([], [0.1]), "no genuine scores"),
        (lambda: roc([0.1], []), "no impostor scores"),
        (lambda: eer([0.1, np.nan], [0.2]), "genuine scores contain 1 NaN"),
        (lambda: auc([0.1], [np.inf]), "impostor scores contain 1 NaN or infinite"),
        (lambda: eer([[0.1]], [0.2]), "genuine scores must be a 1-D array"),
        (lambda: eer(["a"], [0.2]), "genuine scores must be numbers"),
        (lambda: split_scores([1, 0, 2], [0.1, 0.2, 0.3]), "labels must be 0 (impostor) or 1"),
        (lambda: split_scores([1, 0], [0.1, 0.2, 0.3]), "labels and scores differ in length"),
        (lambda: split_scores([1, 1], [0.1, 0.2]), "no impostor scores"),
        (lambda: split_scores(["1", "0"], [0.1, 0.2]), "labels must be 0 (impostor) or 1"),
        (lambda: far_frr(GEN, IMP, float("nan")), "threshold is NaN"),
        (lambda: far_frr(GEN, IMP, "high"), "threshold must be a number"),
        (lambda: tar_at_far(GEN, IMP, 1.5), "far_target must be in [0, 1]"),
        (lambda: tar_at_far(GEN, IMP, float("nan")), "far_target must be in [0, 1]"),
        (lambda: threshold_at_far(GEN, IMP, -0.1), "far_target must be in [0, 1]"),
        (lambda: min_dcf(GEN, IMP, p_target=0.0), "p_target must be in (0, 1)"),
        (lambda: min_dcf(GEN, IMP, c_miss=-1), "costs must be > 0"),
        (lambda: min_dcf(GEN, IMP, c_fa=float("nan")), "c_fa must be a finite number"),
        (lambda: eer_ci(GEN, [0, 1], IMP, [0] * 4), "genuine scores and groups differ"),
        (lambda: eer_ci(GEN, [0] * 4, IMP, [0] * 3), "impostor scores and groups differ"),
        (lambda: eer_ci(GEN, [[0] * 4], IMP, [0] * 4), "genuine groups must be a 1-D"),
        (lambda: eer_ci(GEN, [0] * 4, IMP, [0] * 4, n_boot=0), "n_boot must be a positive"),
        (lambda: eer_ci(GEN, [0] * 4, IMP, [0] * 4, alpha=1.0), "alpha must be in (0, 1)"),
        (lambda: eer_ci(GEN, [0] * 4, IMP, ["a"] * 4), "groups must be ids of one kind"),
        (lambda: eer_ci([], [], [0.1], [1]), "no genuine scores"),
    ],
)
def test_verification_errors(call, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cmc(SEARCH, GALLERY, ["A", "B", "Q", "A"]), "1 are not: Q"),
        (lambda: cmc(SEARCH[:3], GALLERY, PROBES), "scores must be (probes, gallery templates)"),
        (lambda: cmc(SEARCH, GALLERY[:3], PROBES), "= (4, 3), got shape (4, 4)"),
        (lambda: cmc(np.where(SEARCH >= 0.8, np.nan, SEARCH), GALLERY, PROBES), "contain 2 NaN"),
        (lambda: cmc(np.zeros((0, 4)), GALLERY, []), "no probe labels"),
        (lambda: cmc(np.zeros((1, 0)), [], ["A"]), "no gallery labels"),
        (lambda: cmc(SEARCH, [1, 1, 2, 3], PROBES), "labels must be ids of one kind"),
        (lambda: cmc(SEARCH, [GALLERY], PROBES), "gallery labels must be a 1-D array"),
        (lambda: cmc(SEARCH, GALLERY, PROBES, max_rank=0), "max_rank must be a positive"),
        (lambda: rank_k_accuracy(SEARCH, GALLERY, PROBES, k=0), "k must be a positive"),
        (lambda: dir_at_fpir(OPEN[:4], ["A", "B"], OPEN_PROBES[:4], 0.1), "non-mated probes"),
        (lambda: dir_at_fpir(OPEN[4:], ["A", "B"], OPEN_PROBES[4:], 0.1), "needs mated probes"),
        (lambda: dir_at_fpir(OPEN, ["A", "B"], OPEN_PROBES, 2), "fpir_target must be in [0, 1]"),
    ],
)
def test_identification_errors(call, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


UNIT = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: znorm(SCORES, ENROL_COHORT[:1]),
            "enrolment cohort scores have 1 rows, expected 2",
        ),
        (lambda: tnorm(SCORES, PROBE_COHORT.T[:, :1]), "cohort has 1 member(s)"),
        (lambda: znorm(SCORES, [[0.1, 0.1], [0.0, 0.2]]), "enrolment 0 has constant cohort"),
        (lambda: znorm(SCORES[0], ENROL_COHORT), "scores must be a 2-D array"),
        (lambda: znorm([[np.nan, 0.0]], ENROL_COHORT), "scores contain 1 NaN"),
        (lambda: znorm(np.zeros((0, 2)), ENROL_COHORT), "no scores: the array is empty"),
        (lambda: asnorm(SCORES, ENROL_COHORT, PROBE_COHORT, top_k=3), "top_k=3 exceeds"),
        (lambda: asnorm(SCORES, ENROL_COHORT, PROBE_COHORT, top_k=1), "top_k must be an integer"),
        (lambda: ScoreNormalizer("zt"), "unknown score normalisation 'zt'"),
        (lambda: ScoreNormalizer("as"), "needs top_k"),
        (lambda: ScoreNormalizer("z", top_k=5), "top_k applies only"),
        (lambda: ScoreNormalizer("z")(SCORES[:1, :1], UNIT[:1]), "is not fitted"),
        (lambda: ScoreNormalizer("z").fit(UNIT * 2), "row 0 has norm 2"),
        (lambda: ScoreNormalizer("z").fit(UNIT[:1]), "cohort has 1 member(s)"),
        (lambda: ScoreNormalizer("as", top_k=4).fit(UNIT), "top_k=4 exceeds the cohort size 3"),
        (lambda: ScoreNormalizer("t").fit(UNIT)(SCORES[:1, :1]), "needs the probe embeddings"),
        (
            lambda: ScoreNormalizer("z").fit(UNIT)([[0.5]], np.ones((1, 3)) / 3**0.5),
            "dimension 3, the cohort's is 2",
        ),
        (lambda: ScoreNormalizer("z").fit(UNIT)(SCORES, UNIT[:1]), "1 enrolment embeddings for 2"),
    ],
)
def test_norm_errors(call, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    assert message in str(info.value)
    assert "\n" not in str(info.value)
