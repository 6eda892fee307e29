"""Two scored methods side by side (`harness compare A B`): the difference of their scores, its 95%
interval and a p-value, from a paired bootstrap (metric.pairwise).

Two scores of one profile and K are paired: the same retrained models, the same forget examples,
and run i of each made with the same seed. What they share cancels in the difference, so a paired
interval is far narrower than two separate ones that overlap. The runs come from the cache, where
`harness score` keeps them; each is checked against the digest its result published, so the
comparison is of exactly the runs that were scored."""
from __future__ import annotations

import hashlib

import numpy as np

from harness import metric, paths, protocol as protocol_mod, reference_pool, runner

LEVEL = 0.05  # the level a verdict is worded at, and ties are decided at


def _runs(result: dict, pool) -> tuple:
    """A stored score's runs as the metric takes them, (confidences [K, N], retain_acc [K],
    test_acc [K]), read from the cache and each checked against the digest its result published."""
    name = result.get("id", "?")
    if result.get("source", "runner") != "runner":
        raise ValueError(f"result {name} was scored from checkpoints ({result['source']}): a comparison needs the "
                         "runs that `harness score` keeps; score the submission with it")
    folder, runs = runner.result_runs(result, pool.protocol, pool.dir)
    conf = []
    for i, (rec, digest) in enumerate(zip(runs, result["run_digests"])):
        row = None if rec is None else np.asarray(rec["forget_confidences"], dtype=np.float64)
        if row is None or hashlib.sha256(row.tobytes()).hexdigest()[:16] != digest:
            raise FileNotFoundError(f"run {i} of {name} is not in {folder} as it was scored: score it again with "
                                    f"`python -m harness score {result['submission']} --profile {result['profile']} "
                                    f"--k {result['k']}`, then compare")
        conf.append(row)
    acc = {key: np.array([r[key] for r in runs], dtype=np.float64) for key in ("retain_acc", "test_acc")}
    return np.stack(conf), acc["retain_acc"], acc["test_acc"]


def pairwise(results: list[dict], n_boot: int = metric.PAIRED_N_BOOT, seed: int = 0) -> dict:
    """metric.pairwise of stored scores of one profile and K: their pool read once, each one's runs
    from the cache."""
    for other in results[1:]:
        _check_paired(results[0], other)
    pool = reference_pool.load(protocol_mod.from_dict(results[0]["protocol"]), results[0]["k"], paths.cache_dir())
    return metric.pairwise(pool.forget_confidences(), [_runs(x, pool) for x in results],
                           pool.accuracies("retain_acc"), pool.accuracies("test_acc"), n_boot=n_boot, seed=seed)


def _check_paired(a: dict, b: dict) -> None:
    """ValueError unless a and b are scores of one pool and one set of runs' seeds."""
    fix = (f"score both on one profile and K, e.g. `python -m harness score {b.get('submission')} "
           f"--profile {a.get('profile')} --k {a.get('k')}`")
    if a.get("reference_hash") != b.get("reference_hash") or a.get("profile") != b.get("profile"):
        raise ValueError(f"{a.get('id')} and {b.get('id')} were scored on different pools (profiles "
                         f"{a.get('profile')} and {b.get('profile')}): {fix}")
    if a.get("k") != b.get("k") or (a.get("seeds") or {}).get("unlearn") != (b.get("seeds") or {}).get("unlearn"):
        raise ValueError(f"{a.get('id')} and {b.get('id')} hold different runs (K={a.get('k')} and K={b.get('k')}, "
                         f"or other seeds): {fix}")


def ties(results: list[dict], n_boot: int = metric.PAIRED_N_BOOT, seed: int = 0) -> dict:
    """Which of several methods' scores (one profile and K, so paired) the data cannot separate:
    every pair compared on one set of bootstrap draws (metric.pairwise), the p-values of all
    pairs adjusted together (Holm), and a pair tied where its adjusted p-value is LEVEL or more.
    Returns the results' ids and scores, the adjusted p-values ``[P, P]`` and, per id, the ids it
    is tied with."""
    out = pairwise(results, n_boot, seed)
    adjusted = holm_matrix(out["p_value"])
    ids = [x["id"] for x in results]
    return {"profile": results[0]["profile"], "k": results[0]["k"], "reference_hash": results[0]["reference_hash"],
            "ids": ids, "scores": out["scores"].tolist(), "n_boot": n_boot, "seed": seed, "level": LEVEL,
            "method": "paired bootstrap of every pair on one set of draws; normal p-values; Holm over all pairs",
            "p_adjusted": adjusted.tolist(), "tied_with": tied_with(ids, adjusted)}


def holm_matrix(p_value: np.ndarray) -> np.ndarray:
    """A symmetric ``[P, P]`` matrix of pairwise p-values, Holm-adjusted over its P(P-1)/2 pairs
    (1 on the diagonal)."""
    n = p_value.shape[0]
    upper = np.triu_indices(n, 1)
    adjusted = np.ones((n, n))
    adjusted[upper] = metric.holm(p_value[upper])
    return np.minimum(adjusted, adjusted.T)


def tied_with(ids: list[str], adjusted: np.ndarray) -> dict:
    """id -> the ids whose adjusted p-value against it is LEVEL or more (not separated)."""
    return {a: [b for j, b in enumerate(ids) if j != i and adjusted[i, j] >= LEVEL] for i, a in enumerate(ids)}


def compare(a: dict, b: dict, n_boot: int = metric.PAIRED_N_BOOT, seed: int = 0) -> dict:
    """The paired comparison of two stored results of one profile and K (see the module)."""
    out = pairwise([a, b], n_boot, seed)
    return {"a": {"id": a["id"], "submission": a["submission"], "score": float(out["scores"][0])},
            "b": {"id": b["id"], "submission": b["submission"], "score": float(out["scores"][1])},
            "profile": a["profile"], "k": a["k"], "n_forget": a["n_forget"],
            "difference": float(out["difference"][0, 1]),
            "ci95": [float(out["ci_low"][0, 1]), float(out["ci_high"][0, 1])],
            "p_value": float(out["p_value"][0, 1]), "n_boot": out["n_boot"], "seed": seed}


def verdict(c: dict) -> str:
    """The comparison in one line of words, at the 5% level."""
    if c["p_value"] >= LEVEL:
        return f"the data cannot tell them apart at the {LEVEL:.0%} level (a tie)"
    better = "A" if c["difference"] > 0 else "B"
    return f"{better} scores higher (p < {LEVEL:g})"


def text(c: dict) -> str:
    low, high = c["ci95"]
    return "\n".join([
        f"A: {c['a']['submission']}  score {c['a']['score']:.4f}",
        f"B: {c['b']['submission']}  score {c['b']['score']:.4f}",
        f"A - B = {c['difference']:+.4f}, 95% interval [{low:+.4f}, {high:+.4f}], p = {c['p_value']:.3f} "
        f"(paired bootstrap of {c['n_boot']} draws of retrained models, runs and forget examples; profile "
        f"{c['profile']}, K={c['k']}, {c['n_forget']} forget examples)",
        verdict(c)])
