"""The paired comparison (metric.paired_difference, `harness compare`): the same numbers as a plain
paired bootstrap, a tie for equal methods, calibrated p-values, and the command on stored scores."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness import compare, metric

from conftest import REPO, run_cli

SUBMISSIONS = REPO / "submissions"


def _population(rng, mu, sd, k, shift=0.0, acc=(60.0, 2.0)):
    """k models' confidences [k, N] around per-example means mu [N], with per-model accuracies."""
    return (rng.normal(mu + shift, sd, (k, len(mu))), rng.normal(*acc, k), rng.normal(acc[0] - 10, acc[1], k))


def _plain_paired(r, a, b, ra, rt, n_boot, seed, level=0.95):
    """A paired bootstrap written without the metric's machinery: each draw copies the drawn
    retrained models, run indices and examples (drawn in that order, as the metric documents) and
    calls forget_quality on the copies of both methods."""
    rng = np.random.default_rng(seed)
    k_r, n = r.shape
    k_u = a[0].shape[0]

    def score(pop, ir, iu, ex):
        conf, retain, test = pop
        return metric.final_score(metric.forget_quality(r[ir][:, ex], conf[iu][:, ex]), retain[iu].mean(),
                                  ra[ir].mean(), test[iu].mean(), rt[ir].mean())

    d = []
    for _ in range(n_boot):
        ir, iu, ex = rng.integers(0, k_r, k_r), rng.integers(0, k_u, k_u), rng.integers(0, n, n)
        d.append(score(a, ir, iu, ex) - score(b, ir, iu, ex))
    d = np.array(d)
    every = np.arange(k_r), np.arange(k_u), np.arange(n)
    point = score(a, *every) - score(b, *every)
    tail = (1 - level) / 2 * 100
    ci = np.percentile(d, [tail, 100 - tail]) + point - d.mean()
    p = math.erfc(abs(point) / d.std(ddof=1) / math.sqrt(2))     # the normal tail, two-sided
    return point, ci, p


def test_paired_difference_is_a_plain_paired_bootstrap():
    rng = np.random.default_rng(4)
    k, n = 12, 40
    mu, sd = rng.normal(1.5, 1.0, n), rng.uniform(0.5, 1.5, n)
    r, ra, rt = _population(rng, mu, sd, k)
    a, b = _population(rng, mu, sd, k, shift=0.2), _population(rng, mu, sd, k, shift=0.6)
    got = metric.paired_difference(r, a, b, ra, rt, n_boot=30, seed=5)
    point, ci, p = _plain_paired(r, a, b, ra, rt, n_boot=30, seed=5)
    assert got["difference"] == pytest.approx(point, abs=1e-12)
    np.testing.assert_allclose(got["ci95"], ci, rtol=0, atol=1e-12)
    assert got["p_value"] == pytest.approx(p, abs=1e-12)
    assert got["difference"] == pytest.approx(got["score_a"] - got["score_b"], abs=1e-15) and got["difference"] != 0
    # Swapping A and B negates the difference and its interval, and keeps the p-value.
    swapped = metric.paired_difference(r, b, a, ra, rt, n_boot=30, seed=5)
    assert swapped["difference"] == pytest.approx(-got["difference"], abs=1e-12)
    np.testing.assert_allclose(swapped["ci95"], [-got["ci95"][1], -got["ci95"][0]], rtol=0, atol=1e-12)
    assert swapped["p_value"] == got["p_value"]


def test_every_pair_at_once_equals_each_pair_alone():
    """pairwise draws the same replicates whatever the number of methods, so its [i, j] entries
    are paired_difference of i and j, to the bit; the matrices are antisymmetric (difference,
    interval) and symmetric (p-value)."""
    rng = np.random.default_rng(3)
    mu, sd = rng.normal(1.5, 1.0, 25), np.ones(25)
    r, ra, rt = _population(rng, mu, sd, 10)
    pops = [_population(rng, mu, sd, 10, shift=s) for s in (0.0, 0.3, 0.8)]
    every = metric.pairwise(r, pops, ra, rt, n_boot=25, seed=2)
    for i in range(3):
        for j in range(3):
            if i != j:
                alone = metric.paired_difference(r, pops[i], pops[j], ra, rt, n_boot=25, seed=2)
                assert every["difference"][i, j] == alone["difference"] and every["p_value"][i, j] == alone["p_value"]
                assert [every["ci_low"][i, j], every["ci_high"][i, j]] == alone["ci95"]
    np.testing.assert_allclose(every["difference"], -every["difference"].T, atol=0)
    np.testing.assert_allclose(every["p_value"], every["p_value"].T, atol=0)
    assert np.all(np.diag(every["p_value"]) == 1)


def test_holm_adjusts_the_smallest_p_value_most():
    """Holm's step-down: sorted p-values times m, m-1, ..., made non-decreasing, capped at 1."""
    np.testing.assert_allclose(metric.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(metric.holm([0.5, 0.6]), [1.0, 1.0])
    assert metric.holm([0.02]).tolist() == [0.02]


def test_ties_are_decided_on_p_values_corrected_for_every_pair():
    """Three methods: a-b at p 0.03 would separate alone, but Holm over the three pairs makes it
    0.06 (a tie); a-c at 0.001 stays separated (0.003); b-c at 0.3 is a tie."""
    p = np.array([[1, 0.03, 0.001], [0.03, 1, 0.3], [0.001, 0.3, 1]])
    adjusted = compare.holm_matrix(p)
    np.testing.assert_allclose(adjusted, [[1, 0.06, 0.003], [0.06, 1, 0.3], [0.003, 0.3, 1]])
    assert compare.tied_with(["a", "b", "c"], adjusted) == {"a": ["b"], "b": ["a", "c"], "c": ["b"]}


def test_one_method_against_itself_is_a_tie_and_bad_pairs_are_refused():
    rng = np.random.default_rng(0)
    mu, sd = rng.normal(1.5, 1.0, 30), np.ones(30)
    r, ra, rt = _population(rng, mu, sd, 8)
    a = _population(rng, mu, sd, 8)
    same = metric.paired_difference(r, a, a, ra, rt, n_boot=20)
    assert same["difference"] == 0 and same["ci95"] == [0, 0] and same["p_value"] == 1
    with pytest.raises(ValueError, match="hold the same runs to be paired"):
        metric.paired_difference(r, a, _population(rng, mu, sd, 7), ra, rt, n_boot=20)
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        metric.paired_difference(r, a, a, ra, rt, n_boot=0)


def test_pairing_is_narrower_than_two_separate_intervals():
    """Methods whose runs share a seed-dependent part (a run's accuracy and confidences move
    together in both): the paired interval of the difference is narrower than the gap the two
    separate intervals leave undecided, and it separates methods that the separate ones cannot."""
    rng = np.random.default_rng(7)
    k, n = 16, 50
    mu, sd = rng.normal(1.5, 1.0, n), rng.uniform(0.5, 1.5, n)
    r, ra, rt = _population(rng, mu, sd, k)
    run_effect = rng.normal(0, 4.0, k)                       # the seed's share, common to both methods
    conf = rng.normal(mu, sd, (k, n))
    a = (conf, 60 + run_effect, 50 + run_effect)
    b = (conf, 59 + run_effect, 49 + run_effect)              # one point lower in every run
    paired = metric.paired_difference(r, a, b, ra, rt, n_boot=100)
    low_a, high_a = metric.score_interval(r, conf, a[1], ra, a[2], rt, n_boot=100)
    low_b, high_b = metric.score_interval(r, conf, b[1], ra, b[2], rt, n_boot=100)
    assert low_a < high_b                                     # the separate intervals overlap
    assert paired["ci95"][0] > 0 and paired["p_value"] < 0.05  # the paired one separates them
    assert paired["ci95"][1] - paired["ci95"][0] < 0.5 * min(high_a - low_a, high_b - low_b)


def test_p_values_of_equal_methods_are_uniform_and_of_unequal_ones_small():
    """Equal methods: A, B and the retrained models are three draws of one population, 40 times.
    Their p-values should be uniform: mean near 1/2 (standard error 0.046 at 40), about half of
    them below 1/2, and at the 5% level about 2 of 40 rejected. A method that moved its
    confidences is rejected nearly always. (bench/paired.py measures the same on real models.)"""
    rng = np.random.default_rng(12)
    k, n = 16, 30
    equal, unequal = [], []
    for _ in range(40):
        mu, sd = rng.normal(1.5, 1.0, n), rng.uniform(0.5, 1.5, n)
        r, ra, rt = _population(rng, mu, sd, k)
        a, b = _population(rng, mu, sd, k), _population(rng, mu, sd, k)
        equal.append(metric.paired_difference(r, a, b, ra, rt, n_boot=50)["p_value"])  # 9 s: the fast tier
        if len(unequal) < 10:
            moved = _population(rng, mu, sd, k, shift=1.0)
            unequal.append(metric.paired_difference(r, a, moved, ra, rt, n_boot=50)["p_value"])
    equal = np.array(equal)
    assert 0.35 < equal.mean() < 0.65, equal
    assert np.mean(equal < 0.05) <= 0.15, equal
    assert 0.25 < np.mean(equal < 0.5) < 0.75, equal
    assert np.mean(np.array(unequal) < 0.05) >= 0.8, unequal


# ---- the command, on stored scores -------------------------------------------------------------

@pytest.mark.slow
def test_compare_two_stored_scores_and_refuses_what_does_not_pair(quick_pool, results, tmp_path):
    scored = {}
    for name in ("finetune", "noop"):
        out = run_cli("score", str(SUBMISSIONS / f"{name}.py"), "--profile", "quick", "--k", "4", "--json", "--quiet")
        assert out.returncode == 0, out.stderr[-2000:]
        scored[name] = tmp_path / f"{name}.json"
        scored[name].write_text(out.stdout)                  # what `score --json > file` leaves
    a, b = (json.loads(scored[x].read_text().strip().splitlines()[-1]) for x in ("finetune", "noop"))

    out = run_cli("compare", str(scored["finetune"]), str(scored["noop"]), "--json", "--n-boot", "50")
    assert out.returncode == 0, out.stderr[-2000:]
    c = json.loads(out.stdout)
    assert c["difference"] == pytest.approx(a["score"] - b["score"], abs=1e-12)
    assert c["a"]["score"] == a["score"] and c["b"]["score"] == b["score"]
    assert c["ci95"][0] <= c["difference"] <= c["ci95"][1] and 0 < c["p_value"] <= 1 and c["n_boot"] == 50
    # A submission path means its stored score: the same comparison, in words.
    words = run_cli("compare", str(SUBMISSIONS / "finetune.py"), str(SUBMISSIONS / "noop.py"), "--profile", "quick",
                    "--k", "4", "--n-boot", "50")
    assert words.returncode == 0, words.stderr[-2000:]
    assert f"A - B = {c['difference']:+.4f}" in words.stdout and f"p = {c['p_value']:.3f}" in words.stdout
    itself = json.loads(run_cli("compare", str(scored["noop"]), str(scored["noop"]), "--json", "--n-boot", "20").stdout)
    assert itself["difference"] == 0 and itself["p_value"] == 1

    # Other K: the runs do not pair up.
    other = run_cli("score", str(SUBMISSIONS / "noop.py"), "--profile", "quick", "--k", "2", "--json", "--quiet")
    (tmp_path / "k2.json").write_text(other.stdout)
    bad = run_cli("compare", str(scored["finetune"]), str(tmp_path / "k2.json"))
    assert bad.returncode == 2 and "hold different runs" in bad.stderr and "--k 4" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    # Not a result.
    (tmp_path / "junk.json").write_text("not json\n")
    junk = run_cli("compare", str(scored["finetune"]), str(tmp_path / "junk.json"))
    assert junk.returncode == 2 and "holds no result JSON" in junk.stderr


@pytest.mark.slow
def test_compare_refuses_runs_that_are_not_the_ones_scored(own_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path / "results"))
    out = run_cli("score", str(SUBMISSIONS / "noop.py"), "--profile", "quick", "--k", "2", "--json", "--quiet")
    saved = tmp_path / "noop.json"
    saved.write_text(out.stdout)
    run = next((own_cache.dir / "runs").glob("noop-*/run_0001.json"))
    rec = json.loads(run.read_text())
    rec["forget_confidences"][0] += 1.0                       # a run record changed after the score
    run.write_text(json.dumps(rec))
    bad = run_cli("compare", str(saved), str(saved))
    assert bad.returncode == 2 and "run 1 of" in bad.stderr and "as it was scored" in bad.stderr
