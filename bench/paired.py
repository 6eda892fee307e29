"""Calibration of the paired comparison (metric.paired_difference) on real retrained models.

Equal methods, made of real models: 3G retrained models of one pool are split at random into a
reference population of G and two "methods" of G each, which are two draws of the same recipe.
`paired_difference` should then reject "no difference" at the 5% level in about 5% of splits, and
its p-values should be uniform. Writes bench/paired.png (the p-values' empirical distribution
against the uniform line) and returns the rejection rates.

    python -m bench paired [PROFILE]    (default quick: 48 models, trained first if missing)
"""
from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from harness import metric, paths, protocol as protocol_mod, reference_pool

G = 16             # models per population: the reference and each method
SPLITS = 200       # random splits of the 3G models
N_BOOT = 200       # bootstrap draws per comparison
LEVELS = (0.01, 0.05, 0.10)


def main(profile: str = "quick", out_png=None) -> dict:
    protocol = protocol_mod.get(profile)
    pool = reference_pool.ensure(protocol, 3 * G, progress=True)
    conf = pool.forget_confidences()                                           # [3G, N]
    retain, test = pool.accuracies("retain_acc"), pool.accuracies("test_acc")  # [3G]
    rng = np.random.default_rng(0)
    p_values, started = [], time.perf_counter()
    for s in tqdm(range(SPLITS), desc=f"paired comparisons on {profile}", unit="split"):
        r, a, b = np.split(rng.permutation(3 * G), 3)
        out = metric.paired_difference(conf[r], (conf[a], retain[a], test[a]), (conf[b], retain[b], test[b]),
                                       retain[r], test[r], n_boot=N_BOOT, seed=s)
        p_values.append(out["p_value"])
    p = np.array(p_values)
    result = {"profile": profile, "models": 3 * G, "per_population": G, "n_forget": int(conf.shape[1]),
              "splits": SPLITS, "n_boot": N_BOOT, "seconds": time.perf_counter() - started,
              "rejected": {f"{level:g}": float(np.mean(p < level)) for level in LEVELS},
              "mean_p": float(p.mean()), "p_values": p.tolist()}
    if out_png is not None:
        plot(result, out_png)
    return result


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = np.sort(result["p_values"])
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, label="calibrated (uniform p)")
    ax.step(p, np.arange(1, len(p) + 1) / len(p), where="post", color="C0",
            label=f"{result['splits']} splits of real retrained models")
    ax.axvline(0.05, color="C3", lw=0.8, ls="--")
    ax.set_xlabel("p-value of 'no difference'")
    ax.set_ylabel("share of comparisons with a smaller p")
    rate = result["rejected"]["0.05"]
    ax.set_title(f"Equal methods on {result['profile']}: {rate:.1%} rejected at 5%", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = __import__("io").BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    paths.atomic_write_bytes(path, buf.getvalue())
