"""Is a returned model one of the reference pool's retrained models? (numpy only)

The sandbox keeps the pool out of a run's reach; this check is the second line, for a platform
that refused the sandbox or a leak nobody has found yet. A model that is (nearly) a retrained
model makes the two populations identical and scores F = 1, which no unlearning can reach, so
such a run is rejected like any other broken one. Two views, each with a threshold that honest
models are far from:

- weights: the relative L2 distance ||θ_u − θ_j|| / ||θ_j|| to the nearest retrained model, over
  the learned weights. Two models trained from different seeds are at a distance of order 1; a
  copy is at 0; a copy with a little noise added to slip past an equality test stays under
  NEAR_WEIGHTS. Batch-norm running statistics are left out: they follow the data's scale, not
  the seed (on raw 0..255 pixels the first layer's running variance is 99% of a ResNet's norm,
  and every model would look like every other).
- function: the RMS difference of forget-set confidences to the nearest retrained model, against
  the closest that two retrained models (independent seeds) ever come to each other. A run closer
  than NEAR_FUNCTION of that is not a model trained independently of the pool.
"""
from __future__ import annotations

import numpy as np

NEAR_WEIGHTS = 0.1        # relative L2 distance below which weights count as a copy (independent models: ~0.8)
STATISTICS = ("running_mean", "running_var")  # state-dict entries that are not learned weights
NEAR_FUNCTION = 0.25      # fraction of the closest pair of retrained models, in forget confidences
MAX_COORDS = 1 << 16      # weights compared on at most this many fixed coordinates (ResNet-18: 11M)
_COORD_SEED = 0


def weight_vector(state: dict) -> np.ndarray:
    """Learned floating-point tensors of a state dict, flattened in key order: float64 [M]; above
    MAX_COORDS, the same fixed random coordinates for every model of one architecture."""
    parts = [v.detach().cpu().double().reshape(-1).numpy() for k, v in sorted(state.items())
             if v.is_floating_point() and not k.endswith(STATISTICS)]
    vec = np.concatenate(parts) if parts else np.zeros(0)
    if vec.size > MAX_COORDS:
        idx = np.sort(np.random.default_rng(_COORD_SEED).choice(vec.size, MAX_COORDS, replace=False))
        vec = vec[idx]
    return vec


def rms_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS difference of each row of a [P, N] to each row of b [Q, N]: [P, Q]."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(sq, 0.0, None) / max(a.shape[1], 1))


def closest_pair(confidences: np.ndarray) -> float:
    """The smallest RMS confidence difference between two different retrained models ([K, N])."""
    d = rms_distances(confidences, confidences)
    np.fill_diagonal(d, np.inf)
    return float(d.min()) if d.size > 1 else float("inf")


def nearest(vec: np.ndarray, conf: np.ndarray, pool_vecs: np.ndarray, pool_conf: np.ndarray) -> dict:
    """Distances of one model (weights [M], confidences [N]) to the nearest retrained models
    (pool_vecs [K, M], pool_conf [K, N])."""
    w = np.linalg.norm(pool_vecs - vec[None], axis=1) / np.maximum(np.linalg.norm(pool_vecs, axis=1), 1e-12)
    f = rms_distances(conf[None], pool_conf)[0]
    return {"weights_model": int(w.argmin()), "weights_distance": float(w.min()),
            "function_model": int(f.argmin()), "function_distance": float(f.min())}


def copy_reason(found: dict, pool_closest_pair: float) -> str | None:
    """Why a model counts as a copy of a retrained model, or None."""
    if found["weights_distance"] < NEAR_WEIGHTS:
        return (f"its weights are retrained model {found['weights_model']}'s (relative distance "
                f"{found['weights_distance']:.2g} < {NEAR_WEIGHTS})")
    if found["function_distance"] < NEAR_FUNCTION * pool_closest_pair:
        return (f"its forget-set confidences are retrained model {found['function_model']}'s (RMS difference "
                f"{found['function_distance']:.3g}, while two independently retrained models are never closer "
                f"than {pool_closest_pair:.3g})")
    return None
