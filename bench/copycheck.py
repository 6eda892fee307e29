"""The copy check's false-positive rate (harness.copies), measured on every run stored on a
profile's ranking pool: after `make score-all`, every method of the library and the oracle. For
each run, each view's distance to the nearest retrained model over its threshold (a margin: under 1
the run was rejected as a copy). Honest methods start from the original and the oracle trains from
its own seed: none of them is a copy, so every run they finished counts, and a rejected one is a
false positive. A run rejected as a copy is not stored, so `score-all`'s failures are the other
place to look: one that says "returned a copy" is a false positive too.

    python -m bench copycheck [PROFILE]
"""
from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np

from harness import copies, evaluate, protocol as protocol_mod, reference_pool, runner

VIEWS = (("weights", copies.NEAR_WEIGHTS), ("spectrum", copies.NEAR_SPECTRUM), ("function", copies.NEAR_FUNCTION))


def margins(near: dict, closest_pair: float) -> dict:
    """Each view's distance over its threshold (the function's is relative to the closest pair)."""
    return {view: near[f"{view}_distance"] / (limit * closest_pair if view == "function" else limit)
            for view, limit in VIEWS}


def main(profile: str = "default") -> dict:
    protocol = protocol_mod.get(profile)
    pool = reference_pool.load(protocol, protocol.k)
    funcs = np.stack([evaluate.function_vector(rec["outputs"]) for rec in pool.retrains])
    closest = copies.closest_pair(funcs)
    by_method: dict = defaultdict(list)
    for path in sorted(pool.dir.glob("runs/*/run_*.json")):
        rec = runner.read_run(path)
        if rec and "spectrum_distance" in (rec.get("nearest_retrained") or {}):
            by_method[path.parent.name.rsplit("-", 1)[0]].append(margins(rec["nearest_retrained"], closest))
    every = [m for ms in by_method.values() for m in ms]
    flagged = sum(min(m.values()) < 1 for m in every)
    out = {"profile": profile, "k": pool.k, "closest_pair": closest, "methods": len(by_method), "runs": len(every),
           "false_positives": flagged,
           "min_margin": {view: min((m[view] for m in every), default=None) for view, _ in VIEWS},
           "per_method": {name: {view: min(m[view] for m in ms) for view, _ in VIEWS} | {"runs": len(ms)}
                          for name, ms in sorted(by_method.items())}}
    print(f"copy check on {profile}'s pool (K={pool.k}): {out['runs']} runs of {out['methods']} methods, "
          f"{flagged} below a threshold; smallest margins (distance / threshold): "
          + ", ".join(f"{v} {out['min_margin'][v]:.1f}x" for v, _ in VIEWS if out["min_margin"][v] is not None))
    for name, m in out["per_method"].items():
        print(f"  {name:28s} {m['runs']:3d} runs  " + "  ".join(f"{v} {m[v]:7.1f}x" for v, _ in VIEWS))
    return out


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "default")
