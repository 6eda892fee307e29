"""Speed of ``harness.metric.epsilons`` against a direct evaluation of the organisers' grids.

Run: ``python -m bench.metric_bench``. K_r = K_u = 512 models, N = 500 forget examples,
overlapping populations (retrain ~ normal(0, 1), unlearned ~ normal(0.3, 1.2), seed 0). The
direct evaluation compares every model with every threshold, as the organisers' scorer does;
it runs on the first few examples only and its time per example is extrapolated to N.
"""
from __future__ import annotations

import time

import numpy as np

from harness import metric

K = 512
N = 500
N_DIRECT = 3
SEED = 0
TARGET_SECONDS = 2.0


def _rule_eps(pred_pos_a: np.ndarray, pred_pos_b: np.ndarray) -> np.ndarray:
    """ε of rules from the predictions [K, T] on population a (the one called positive) and b:
    float32 means over models, float32 formula, inf on perfect separation, NaN = no estimate."""
    tpr = pred_pos_a.mean(axis=0, dtype=np.float32)
    fnr = (~pred_pos_a).mean(axis=0, dtype=np.float32)
    fpr = pred_pos_b.mean(axis=0, dtype=np.float32)
    tnr = (~pred_pos_b).mean(axis=0, dtype=np.float32)
    with np.errstate(all="ignore"):
        a = np.log(np.float32(1 - metric.DELTA) - fpr) - np.log(fnr)
        b = np.log(np.float32(1 - metric.DELTA) - fnr) - np.log(fpr)
        e = np.clip(np.fmax(a, b), 0, None)
    perfect = ((fpr + fnr) == 0) & ((tpr + tnr) == 2)
    e = np.where(perfect, np.inf, e)
    return np.where(~perfect & (fpr * fnr == 0), np.nan, e)


def direct_epsilon(retrain: np.ndarray, unlearned: np.ndarray) -> float:
    """ε of one example ([K_r], [K_u]) by comparing every model with every threshold."""
    pos, neg = (retrain, unlearned) if np.median(retrain) > np.median(unlearned) else (unlearned, retrain)
    pd, nd = np.ptp(pos), np.ptp(neg)
    largest, smallest = (pd, nd) if pd > nd else (nd, pd)
    with np.errstate(all="ignore"):
        if smallest / largest < metric.RANGE_RATIO_MIN:
            return metric.EPS_CAP
    best = []
    # Interval rule, one right end at a time (400 left ends each).
    p, q = (neg, pos) if pd >= nd else (pos, neg)
    lo, hi = p.min() + smallest - metric.INTERVAL_BUFFER, p.max() + metric.INTERVAL_BUFFER
    for r in np.linspace(lo, hi, int(np.ceil((hi - lo) * metric.GRID_POINTS_PER_UNIT))):
        lefts = np.linspace(r - smallest - metric.INTERVAL_BUFFER, r - smallest + metric.INTERVAL_BUFFER,
                            metric.N_LEFT_ENDS)
        e = _rule_eps((lefts <= p[:, None]) & (p[:, None] <= r), (lefts <= q[:, None]) & (q[:, None] <= r))
        if np.any(~np.isnan(e)):
            best.append(np.nanmax(e))
    # Single threshold on the float32 grid (each point rounded once, as metric.py documents).
    allc = np.concatenate([pos, neg])
    n = int(np.ceil(np.ptp(allc) * metric.GRID_POINTS_PER_UNIT))
    if n:
        i = np.arange(n)
        t = metric._f32_grid_points(np.full(n, allc.min()), np.full(n, allc.max()), np.full(n, n), i)
        e = _rule_eps(pos[:, None] >= t, neg[:, None] >= t)
        if np.any(~np.isnan(e)):
            best.append(np.nanmax(e))
    return float(np.clip(max(best), 0, metric.EPS_CAP)) if best else 0.0


def main() -> dict:
    rng = np.random.default_rng(SEED)
    retrain = rng.normal(0.0, 1.0, (K, N))
    unlearned = rng.normal(0.3, 1.2, (K, N))

    metric.epsilons(retrain[:, :2], unlearned[:, :2])           # warm-up (ε tables are cached)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        eps = metric.epsilons(retrain, unlearned)
        runs.append(time.perf_counter() - t0)
    fast_total = min(runs)

    t0 = time.perf_counter()
    direct = [direct_epsilon(retrain[:, i], unlearned[:, i]) for i in range(N_DIRECT)]
    direct_per_example = (time.perf_counter() - t0) / N_DIRECT

    result = {
        "k": K,
        "n": N,
        "fast_total_s": fast_total,
        "fast_per_example_s": fast_total / N,
        "direct_per_example_s": direct_per_example,
        "direct_examples": N_DIRECT,
        "speedup": direct_per_example * N / fast_total,
        "agree": bool(np.array_equal(eps[:N_DIRECT], np.array(direct))),
        "target_s": TARGET_SECONDS,
        "target_met": bool(fast_total < TARGET_SECONDS and direct_per_example * N / fast_total > 1000),
    }
    print(f"epsilons, K={K}, N={N}: fast total {fast_total:.3f} s (best of 3), "
          f"{result['fast_per_example_s'] * 1e3:.3f} ms per example")
    print(f"direct evaluation: {direct_per_example:.3f} s per example (mean of {N_DIRECT}), "
          f"{direct_per_example * N:.0f} s extrapolated to N={N}")
    print(f"ratio (direct per example x N / fast total): {result['speedup']:.0f}x; "
          f"same ε on the {N_DIRECT} examples: {result['agree']}; "
          f"target (< {TARGET_SECONDS:g} s and > 1000x) met: {result['target_met']}")
    return result


if __name__ == "__main__":
    main()
