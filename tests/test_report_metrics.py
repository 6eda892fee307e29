"""Tests of harness/report/metrics.py: every metric on identical populations, on fully separated
ones and on a small case worked out by hand in the comments; shapes and input checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

from harness.report import metrics

LN2 = math.log(2)
A = metrics.KL_ALPHA


def _onehot(idx, c=2) -> np.ndarray:
    return np.eye(c)[np.asarray(idx)]


# =============================================================================================
# probabilities, accuracy, losses
# =============================================================================================
def test_probabilities_by_hand():
    # softmax([0, ln 3]) = [1, 3] / 4
    np.testing.assert_allclose(metrics.probabilities([0.0, math.log(3)]), [0.25, 0.75], rtol=1e-15)


def test_probabilities_float16_any_shape_and_no_overflow():
    z = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float16)
    p = metrics.probabilities(z)
    assert p.dtype == np.float64 and p.shape == z.shape
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(p, metrics.probabilities(z.astype(np.float64) + 100.0), rtol=1e-12)
    # exp(1000) overflows without the max-subtraction; exp(-1000) underflows to exactly 0
    np.testing.assert_array_equal(metrics.probabilities(np.array([1000.0, 0.0], np.float32)), [1.0, 0.0])


def test_probabilities_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        metrics.probabilities([[0.0, np.nan]])


def test_accuracy_by_hand():
    labels = np.array([0, 1, 1, 0])
    right = _onehot(labels) * 3.0                                  # model 0: 4 of 4
    half = _onehot([0, 0, 1, 1]) * 3.0                             # model 1: examples 0 and 2 -> 2 of 4
    acc = metrics.accuracy(np.stack([right, half]).astype(np.float16), labels)
    np.testing.assert_array_equal(acc, [100.0, 50.0])
    assert metrics.accuracy(np.stack([[right, half]]), labels).shape == (1, 2)


def test_losses_by_hand():
    z = np.array([[0.0, math.log(3)], [0.0, math.log(3)], [1000.0, 0.0]])   # [N=3, C=2]
    # p = [1/4, 3/4]: label 1 -> -ln(3/4), label 0 -> ln 4; logits [1000, 0], label 1 -> 1000 exactly
    np.testing.assert_allclose(metrics.losses(z, [1, 0, 1]), [-math.log(0.75), math.log(4), 1000.0], rtol=1e-14)


def test_losses_equal_minus_log_probabilities_with_leading_dims():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(3, 7, 4)), rng.integers(0, 4, 7)
    out = metrics.losses(z, y)
    assert out.shape == (3, 7) and out.dtype == np.float64
    np.testing.assert_allclose(out, -np.log(metrics.probabilities(z)[:, np.arange(7), y]), rtol=1e-12)


@pytest.mark.parametrize("fn", [metrics.accuracy, metrics.losses])
def test_labels_are_checked(fn):
    z = np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match="shape"):
        fn(z, [0, 1, 2])                                           # N = 3 vs 4
    with pytest.raises(ValueError, match="lie in"):
        fn(z, [0, 1, 2, 3])                                        # class 3 of C = 3
    with pytest.raises(ValueError, match="integers"):
        fn(z, [0.0, 1.0, 2.0, 0.0])


# =============================================================================================
# JS divergence, activation distance, ZRF, accuracy by group
# =============================================================================================
def test_js_by_hand():
    # [1,0] vs [0,1]: m = [1/2, 1/2], each KL = ln 2 -> JS = ln 2 (the maximum)
    assert metrics.js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(LN2, rel=1e-15)
    # [1/2,1/2] vs [1,0]: m = [3/4, 1/4]; KL(p||m) = (ln(2/3) + ln 2)/2 = ln(4/3)/2, KL(q||m) = ln(4/3)
    # -> JS = (ln(4/3)/2 + ln(4/3)) / 2 = 3/4 ln(4/3)
    assert metrics.js_divergence([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.75 * math.log(4 / 3), rel=1e-14)


def test_js_identical_zero_symmetric_bounded_and_shaped():
    rng = np.random.default_rng(2)
    p, q = rng.dirichlet([0.3] * 5, size=(4, 6)), rng.dirichlet([0.3] * 5, size=(4, 6))
    np.testing.assert_array_equal(metrics.js_divergence(p, p), 0.0)
    js = metrics.js_divergence(p, q)
    assert js.shape == (4, 6)
    np.testing.assert_allclose(js, metrics.js_divergence(q, p), rtol=1e-14)
    assert np.all(js > 0) and np.all(js <= LN2)
    assert metrics.js_divergence(p, q[0]).shape == (4, 6)            # [K, N, C] against [N, C]
    with pytest.raises(ValueError):
        metrics.js_divergence(p, q[:, :5])                          # N = 6 vs 5
    with pytest.raises(ValueError, match=">= 0"):
        metrics.js_divergence([1.5, -0.5], [0.5, 0.5])


def test_activation_distance_and_mean_js_by_hand():
    pu = _onehot([[0, 0, 1]])                                      # [K=1, N=3, C=2]
    pr = _onehot([[1, 1, 0]])                                      # every example the other one-hot
    # ||[1,0] - [0,1]|| = sqrt 2 on every example
    assert metrics.activation_distance(pu, pr) == pytest.approx(math.sqrt(2), rel=1e-15)
    assert metrics.mean_js(pu, pr) == pytest.approx(LN2, rel=1e-15)
    # [1/2,1/2] vs [1,0] on one example, identical on the other: (sqrt(1/4 + 1/4) + 0) / 2
    half = np.array([[[0.5, 0.5], [0.2, 0.8]]])
    same = np.array([[[1.0, 0.0], [0.2, 0.8]]])
    assert metrics.activation_distance(half, same) == pytest.approx(math.sqrt(0.5) / 2, rel=1e-15)
    assert metrics.mean_js(half, same) == pytest.approx(0.75 * math.log(4 / 3) / 2, rel=1e-14)


def test_identical_outputs_are_at_distance_zero():
    p = np.random.default_rng(3).dirichlet([1.0] * 4, size=(3, 5))
    assert metrics.activation_distance(p, p) == 0.0
    assert metrics.mean_js(p, p) == 0.0


def test_pairing_uses_the_first_min_k_models():
    pr = _onehot([[0, 1], [1, 0]])                                 # K_r = 2
    pu = np.concatenate([pr, _onehot([[1, 0]])])                   # K_u = 3: the extra model differs
    assert metrics.activation_distance(pu, pr) == 0.0
    assert metrics.mean_js(pr, pu) == 0.0
    # model k meets model k, not model j: swapping the retrained models moves every output
    assert metrics.activation_distance(pu, pr[::-1]) == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("fn", [metrics.activation_distance, metrics.mean_js])
def test_paired_metrics_check_shapes(fn):
    with pytest.raises(ValueError, match="same N"):
        fn(np.full((2, 3, 2), 0.5), np.full((2, 4, 2), 0.5))
    with pytest.raises(ValueError, match="same N"):
        fn(np.full((3, 2), 0.5), np.full((3, 2), 0.5))             # not [K, N, C]


def test_zrf():
    untrained = np.full((3, 2), 0.5)                               # [N, C]
    assert metrics.zrf(np.full((2, 3, 2), 0.5), untrained) == 1.0  # outputs like an untrained model
    # one-hots against a one-hot on the other class: JS = ln 2 -> ZRF = 1 - ln 2
    assert metrics.zrf(_onehot([[0, 0]] * 2), _onehot([1, 1])) == pytest.approx(1 - LN2, rel=1e-14)
    # [1,0] against [1/2,1/2] (JS = 3/4 ln(4/3)) on one of two examples, identical on the other
    assert metrics.zrf(np.array([[[1.0, 0.0], [0.5, 0.5]]]), np.full((2, 2), 0.5)) == pytest.approx(
        1 - 0.75 * math.log(4 / 3) / 2, rel=1e-14)
    with pytest.raises(ValueError, match="same N"):
        metrics.zrf(np.full((2, 3, 2), 0.5), np.full((4, 2), 0.5))


def test_accuracy_by_group_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    groups = np.array([7, 2, 7, 2, 5])
    m0 = _onehot(labels)                                           # all right
    m1 = _onehot([1, 0, 1, 0, 0])                                  # wrong on examples 0, 3, 4
    out = metrics.accuracy_by_group(np.stack([m0, m1]), labels, groups)
    # group 2 = examples 1, 3: 3 of 4 right; group 5 = example 4: 1 of 2; group 7 = examples 0, 2: 3 of 4
    assert out == {2: 75.0, 5: 50.0, 7: 75.0}
    assert list(out) == [2, 5, 7] and all(type(g) is int for g in out)
    with pytest.raises(ValueError):
        metrics.accuracy_by_group(np.stack([m0, m1]), labels, groups[:4])


# =============================================================================================
# Membership attack
# =============================================================================================
def test_mia_perfectly_separated():
    rng = np.random.default_rng(4)
    forget, test = rng.uniform(0.0, 0.1, 300), rng.uniform(3.0, 4.0, 500)   # members have small losses
    assert metrics.mia(forget, test) == {"accuracy": 1.0, "auc": 1.0}
    # the other way round also separates: the attack learns the sign
    assert metrics.mia(test, forget) == {"accuracy": 1.0, "auc": 1.0}


def test_mia_identically_distributed_is_chance():
    rng = np.random.default_rng(5)
    out = metrics.mia(rng.exponential(size=2000), rng.exponential(size=2000))
    assert out["accuracy"] == pytest.approx(0.5, abs=0.05)
    assert out["auc"] == pytest.approx(0.5, abs=0.05)


def test_mia_matches_the_starting_kits_simple_mia():
    # equal sizes (no subsampling): the kit's code path, test losses first with label 0
    rng = np.random.default_rng(6)
    forget, test = rng.exponential(0.8, 200), rng.exponential(1.0, 200)
    x = np.concatenate([test, forget]).reshape(-1, 1)
    y = [0] * 200 + [1] * 200
    kit = cross_val_score(LogisticRegression(), x, y, cv=StratifiedShuffleSplit(n_splits=10, random_state=0),
                          scoring="accuracy")
    assert metrics.mia(forget, test, n_splits=10, seed=0)["accuracy"] == pytest.approx(kit.mean(), abs=1e-15)


def test_mia_balances_and_is_seeded():
    rng = np.random.default_rng(7)
    forget, test = rng.exponential(0.5, 400), rng.exponential(1.0, 100)
    a, b = metrics.mia(forget, test, seed=3), metrics.mia(forget, test, seed=3)
    assert a == b and 0.5 < a["accuracy"] < 1.0 and 0.5 < a["auc"] < 1.0


def test_mia_subsamples_at_random():
    # the first 100 forget losses are tiny, the other 900 look like test losses: the first 100 alone
    # would be separated perfectly; a random 100 of the 1000 hold about 10 tiny ones
    rng = np.random.default_rng(11)
    forget = np.concatenate([np.full(100, 0.01), rng.uniform(3.0, 4.0, 900)])
    assert metrics.mia(forget, rng.uniform(3.0, 4.0, 100))["accuracy"] < 0.75


def test_mia_input_checks():
    ok = np.arange(6.0)
    metrics.mia(ok, ok + 10.0)                                     # 6 per class: 2 test examples per split
    with pytest.raises(ValueError, match="both classes"):
        metrics.mia(ok[:5], ok + 10.0)                             # 5 per class: 1 test example per split
    with pytest.raises(ValueError, match="1-D"):
        metrics.mia(ok[None], ok)
    with pytest.raises(ValueError, match="n_splits"):
        metrics.mia(ok, ok, n_splits=0)
    with pytest.raises(ValueError, match="NaN"):
        metrics.mia(np.r_[ok, np.nan], ok)


def test_mia_population():
    n, t, c = 60, 80, 3
    f_labels, t_labels = np.zeros(n, int), np.zeros(t, int)
    rng = np.random.default_rng(8)
    f0 = np.tile([8.0, 0.0, 0.0], (n, 1))                          # model 0: tiny loss on the forget set
    t0 = np.tile([0.0, 0.0, 0.0], (t, 1))                          # ... and ln 3 on the test set
    same = rng.normal(size=(n + t, c))                              # model 1: both sets alike
    out = metrics.mia_population(np.stack([f0, same[:n]]).astype(np.float16), f_labels,
                                 np.stack([t0, same[n:]]).astype(np.float16), t_labels)
    assert out["accuracy_per_model"][0] == 1.0
    assert out["accuracy_per_model"][1] == pytest.approx(0.5, abs=0.2)
    assert out["accuracy"] == pytest.approx(np.mean(out["accuracy_per_model"]))
    # the AUC is the mean of the models' own: model 0 separates perfectly (1.0), model 1 is the
    # attack on its losses alone (from the same float16 logits)
    one = metrics.mia(metrics.losses(same[:n].astype(np.float16), f_labels),
                      metrics.losses(same[n:].astype(np.float16), t_labels))
    assert len(out["accuracy_per_model"]) == 2 and one["accuracy"] == out["accuracy_per_model"][1]
    assert out["auc"] == pytest.approx((1.0 + one["auc"]) / 2, rel=1e-12) and one["auc"] < 0.9
    with pytest.raises(ValueError, match="same"):
        metrics.mia_population(np.stack([f0, f0]), f_labels, t0[None], t_labels)    # K = 2 vs 1


# =============================================================================================
# LiRA and binned KL
# =============================================================================================
def test_lira_identical_separated_and_constant():
    rng = np.random.default_rng(9)
    r = rng.normal(size=(8, 5))
    np.testing.assert_array_equal(metrics.lira(r, r), 0.5)         # every model a tie
    np.testing.assert_array_equal(metrics.lira(r, r + 100.0), 1.0)
    np.testing.assert_array_equal(metrics.lira(np.full((3, 2), 2.0), np.full((4, 2), 5.0)), 1.0)
    np.testing.assert_array_equal(metrics.lira(np.full((3, 2), 2.0), np.full((4, 2), 2.0)), 0.5)
    assert metrics.lira(r, r[:1]).shape == (5,)


def test_lira_two_models_by_hand():
    # retrained [0, 2]: mean 1, var 1; unlearned [1, 5]: mean 3, var 4.
    # log-likelihoods (less a shared constant) -((x-mu)^2/var + ln var)/2:
    #   x=0: retrained -1/2,  unlearned -(9/4 + ln 4)/2 = -1.82  -> retrained (right)
    #   x=2: retrained -1/2,  unlearned -(1/4 + ln 4)/2 = -0.82  -> retrained (right)
    #   x=1: retrained  0,    unlearned -(4/4 + ln 4)/2 = -1.19  -> retrained (wrong)
    #   x=5: retrained -8,    unlearned -(4/4 + ln 4)/2 = -1.19  -> unlearned (right)
    # balanced accuracy = (2/2 + 1/2) / 2 = 0.75
    np.testing.assert_allclose(metrics.lira([[0.0], [2.0]], [[1.0], [5.0]]), [0.75], rtol=1e-15)
    # retrained [0, 2]: mean 1, var 1; unlearned [1, 4]: mean 5/2, var 9/4 (the population variance:
    # the sample variance, 2 and 9/2, would give 0.75), ln(9/4) = 0.81:
    #   x=0: retrained -1/2, unlearned -(25/9 + 0.81)/2 = -1.79 -> retrained (right)
    #   x=2: retrained -1/2, unlearned -(1/9 + 0.81)/2 = -0.46  -> unlearned (wrong)
    #   x=1: retrained  0,   unlearned -(9/9 + 0.81)/2 = -0.91  -> retrained (wrong)
    #   x=4: retrained -9/2, unlearned -(9/9 + 0.81)/2 = -0.91  -> unlearned (right)
    # balanced accuracy = (1/2 + 1/2) / 2 = 0.5
    np.testing.assert_allclose(metrics.lira([[0.0], [2.0]], [[1.0], [4.0]]), [0.5], rtol=1e-15)
    with pytest.raises(ValueError, match="same N"):
        metrics.lira(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="K >= 1"):
        metrics.lira(np.zeros((0, 3)), np.zeros((2, 3)))


def test_lira_ties_count_half():
    # retrained [0, 0, 0, 2^-10]: mean 2^-12, variance 3 * 2^-24 < VAR_FLOOR; unlearned [7 * 2^-12] * 2:
    # variance 0. Both variances are floored to the same value, so the model at 2^-10 = 4 * 2^-12,
    # 3 * 2^-12 from both means (exactly, in binary), is a tie: retrained accuracy (3 + 1/2) / 4,
    # unlearned accuracy 1 -> (7/8 + 1) / 2 = 15/16 (a tie counted as one side would give 7/8 or 1)
    assert metrics.VAR_FLOOR > 3 * 2.0 ** -24
    r = np.array([[0.0], [0.0], [0.0], [2.0 ** -10]])
    u = np.full((2, 1), 7 * 2.0 ** -12)
    np.testing.assert_array_equal(metrics.lira(r, u), [15 / 16])


def _smoothed(freqs) -> np.ndarray:
    f = np.asarray(freqs, dtype=float) + A
    return f / f.sum()


def test_binned_kl_by_hand():
    # pooled range [0, 1], 2 bins [0, 1/2) and [1/2, 1] (the top edge in the last bin):
    # retrained [0, 1/4, 3/4, 1] -> [1/2, 1/2]; unlearned [0, 0.6, 0.9, 1] -> [1/4, 3/4]
    # KL(u || r) = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.1308 (KL(r || u) = 1/2 ln(4/3) = 0.1438 would differ)
    r, u = [[0.0], [0.25], [0.75], [1.0]], [[0.0], [0.6], [0.9], [1.0]]
    pu, pr = _smoothed([0.25, 0.75]), _smoothed([0.5, 0.5])
    out = metrics.binned_kl(r, u, bins=2)
    np.testing.assert_allclose(out, [np.sum(pu * np.log(pu / pr))], rtol=1e-12)
    assert out[0] == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-4)


def test_binned_kl_identical_separated_and_zero_range():
    rng = np.random.default_rng(10)
    r = rng.normal(size=(16, 6))
    np.testing.assert_array_equal(metrics.binned_kl(r, r), 0.0)
    np.testing.assert_array_equal(metrics.binned_kl(np.full((3, 2), 4.0), np.full((5, 2), 4.0)), 0.0)
    # all retrained in the first bin, all unlearned in the last, the other 18 bins empty:
    # KL = [(1+a) ln((1+a)/a) + a ln(a/(1+a))] / (1 + 20a) = ln((1+a)/a) / (1 + 20a)
    out = metrics.binned_kl(np.zeros((4, 3)), np.ones((7, 3)))
    np.testing.assert_allclose(out, math.log((1 + A) / A) / (1 + metrics.KL_BINS * A), rtol=1e-12)
    with pytest.raises(ValueError, match="bins"):
        metrics.binned_kl(r, r, bins=0)
    with pytest.raises(ValueError, match="same N"):
        metrics.binned_kl(r, r[:, :5])
