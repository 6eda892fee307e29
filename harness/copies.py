"""Is a returned model a copy of one of the reference pool's retrained models? (numpy only)

The sandbox keeps the pool out of a run's reach and secret seeds keep it from being rebuilt; this
check is the third line, for a platform that refused the sandbox, a public-seed pool, or a leak
nobody has found yet. A model that is (nearly) a retrained model makes the two populations alike
and scores far above what unlearning reaches, so such a run is rejected like any other broken one.

A network has symmetries: changes of its weights that leave its function alone. A check on raw
weights is fooled by them: scale a convolution by c and its batch norm's running mean by c and
running variance by c² and the weights move far while the function stays; permute the hidden
channels of a layer (and the next layer's inputs with them) and nothing lines up. So the weights
are compared where those symmetries cannot reach, and layer by layer, the median over layers, so
that noise on a few layers (the head, say) does not hide the rest:

- canonical layers: each convolution or linear layer with its batch norm folded in (w·γ/√(σ²+ε),
  and (b − μ)·γ/√(σ²+ε) + β), then balanced (Sinkhorn: every output row, and every input channel's
  block of columns, scaled to unit norm in turn). That is the form of a layer that no positive
  rescaling of its output or input channels changes: what batch norm statistics and ReLU's
  positive homogeneity allow.
- weights: the relative L2 distance of each canonical layer (on fixed coordinates) to the same
  layer of a retrained model. Independently trained models are at ~1 in every layer; a copy,
  rescaled or not, at 0 in every layer it did not add noise to.
- spectrum: the relative distance of each canonical layer's singular values. Those do not change
  when hidden channels are permuted either; independently trained models are at 0.007 (ResNet-18)
  to 0.03 (the small CNN) at the least, a copy at 0.
- function: the logits on the forget set and on the test images the trusted side keeps, each
  example's logits centred (adding one number to every class changes no probability). The RMS
  difference to the nearest retrained model, against the closest that two retrained models
  (independent seeds) ever come to each other: closer than NEAR_FUNCTION of that is not a model
  trained independently of the pool, whatever its weights look like.

The thresholds' false-positive rate, measured on every method of the library and the oracle, is in
docs/threat-model.md.
"""
from __future__ import annotations

import numpy as np

NEAR_WEIGHTS = 0.1        # median over layers of the canonical layers' relative distance (independent: >= 1)
NEAR_SPECTRUM = 0.002     # median over layers of the singular values' relative distance (independent: >= 0.007)
NEAR_FUNCTION = 0.25      # fraction of the closest pair of retrained models, in centred logits
BN_EPS = 1e-5             # torch's BatchNorm2d default, which every architecture here uses
SINKHORN_ROUNDS = 12      # balancing rounds: the distance between two copies is then below 1e-6
LAYER_COORDS = 4096       # a layer's weights compared on at most this many fixed coordinates
BN_PARTS = ("weight", "bias", "running_mean", "running_var")


def layers(keys: list[str]) -> list[tuple[str, str | None, str | None]]:
    """(weight key, bias key, batch norm prefix) of every convolution and linear layer, in the order
    of a state dict's keys (the trusted original's: a run may reorder its own). A batch norm
    belongs to the convolution before it (conv-BN, conv-pool-BN, and ResNet's blocks and shortcuts)."""
    found: list[list] = []
    names = set(keys)
    for key in keys:
        prefix, _, leaf = key.rpartition(".")
        if leaf == "running_mean" and all(f"{prefix}.{p}" in names for p in BN_PARTS):
            if found and found[-1][2] is None:
                found[-1][2] = prefix
        elif leaf == "weight" and f"{prefix}.running_mean" not in names:
            found.append([key, f"{prefix}.bias" if f"{prefix}.bias" in names else None, None])
    return [tuple(x) for x in found]


def _array(v) -> np.ndarray:
    return np.asarray(v.detach().cpu().double()) if hasattr(v, "detach") else np.asarray(v, dtype=np.float64)


def _balanced(m: np.ndarray, blocks: int) -> np.ndarray:
    """m [O, I*k + 1] (the last column the bias), balanced: rows and input-channel blocks of k
    columns to unit norm, in turn (Sinkhorn), rows last. The rounds run on scale vectors over the
    squared block sums [O, I], not on m itself: k times less work, the same result."""
    sq = m * m
    blocks_sq = sq[:, :-1].reshape(m.shape[0], blocks, -1).sum(axis=2)   # [O, I]
    bias_sq = sq[:, -1]                                                  # [O]
    r, c = np.ones(m.shape[0]), np.ones(blocks)                          # m -> r[o] * m[o, i*k + j] * c[i]

    def rows() -> None:
        r[:] /= np.maximum(r * np.sqrt(blocks_sq @ (c * c) + bias_sq), 1e-12)

    for _ in range(SINKHORN_ROUNDS):
        rows()
        c[:] /= np.maximum(c * np.sqrt((r * r) @ blocks_sq), 1e-12)
    rows()
    scale = np.append(np.repeat(c, (m.shape[1] - 1) // blocks), 1.0)   # [I*k + 1]: the bias has no block
    return m * r[:, None] * scale[None, :]


def singular_values(m: np.ndarray) -> np.ndarray:
    """m's singular values, largest first, from the eigenvalues of its smaller Gram matrix: ~8x
    faster than an SVD on ResNet-18's [512, 4609] layers, and within 1e-14 of it (relative, the
    check's measure)."""
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None))


def canonical(state: dict, structure: list[tuple[str, str | None, str | None]]) -> list[np.ndarray]:
    """Each layer's canonical form (module docstring): [O, I*k + 1] per layer."""
    out = []
    for weight, bias, bn in structure:
        w = _array(state[weight])
        w = w.reshape(w.shape[0], w.shape[1], -1)                      # [O, I, k]
        b = _array(state[bias]) if bias else np.zeros(w.shape[0])
        if bn:
            g, beta, mean, var = (_array(state[f"{bn}.{p}"]) for p in BN_PARTS)
            s = g / np.sqrt(np.maximum(var, 0.0) + BN_EPS)
            w, b = w * s[:, None, None], (b - mean) * s + beta
        out.append(_balanced(np.concatenate([w.reshape(w.shape[0], -1), b[:, None]], axis=1), w.shape[1]))
    return out


def view(state: dict, structure: list[tuple[str, str | None, str | None]]) -> dict:
    """A model's weights as the check compares them: per layer, canonical weights on fixed
    coordinates ("weights", [L] arrays) and singular values ("spectra", [L] arrays)."""
    weights, spectra = [], []
    for m in canonical(state, structure):
        flat = m.ravel()
        if flat.size > LAYER_COORDS:  # the same coordinates for every model of one architecture
            flat = flat[np.sort(np.random.default_rng(flat.size).choice(flat.size, LAYER_COORDS, replace=False))]
        weights.append(flat)
        spectra.append(singular_values(m))
    return {"weights": weights, "spectra": spectra}


def stack(views: list[dict]) -> dict:
    """The pool's views, layer by layer: {"weights": [L] arrays [K, m_l], "spectra": [L] arrays [K, r_l]}."""
    return {part: [np.stack([v[part][i] for v in views]) for i in range(len(views[0][part]))]
            for part in ("weights", "spectra")}


def function_vector(*logits: np.ndarray) -> np.ndarray:
    """Logits [N, C] of several sets, each example's centred, flattened: float64 [sum N * C]."""
    parts = [np.asarray(lg, dtype=np.float64) for lg in logits]
    return np.concatenate([(lg - lg.mean(axis=1, keepdims=True)).ravel() for lg in parts])


def rms_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS difference of each row of a [P, N] to each row of b [Q, N]: [P, Q]."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(sq, 0.0, None) / max(a.shape[1], 1))


def closest_pair(functions: np.ndarray) -> float:
    """The smallest RMS difference between two different retrained models ([K, N] function vectors)."""
    d = rms_distances(functions, functions)
    np.fill_diagonal(d, np.inf)
    return float(d.min()) if d.size > 1 else float("inf")


def _median_relative(one: list[np.ndarray], pool: list[np.ndarray]) -> np.ndarray:
    """[K]: for each pool model, the median over layers of ||one_l − pool_l|| / ||pool_l||."""
    rel = [np.linalg.norm(p - o[None], axis=1) / np.maximum(np.linalg.norm(p, axis=1), 1e-12) for o, p in zip(one, pool)]
    return np.median(np.stack(rel), axis=0)


def nearest(model: dict, func: np.ndarray, pool: dict, pool_funcs: np.ndarray) -> dict:
    """Distances of one model (its `view`, its function [N]) to the nearest retrained models (the
    pool's `stack`ed views, pool_funcs [K, N])."""
    w, s = _median_relative(model["weights"], pool["weights"]), _median_relative(model["spectra"], pool["spectra"])
    f = rms_distances(func[None], pool_funcs)[0]
    return {"weights_model": int(w.argmin()), "weights_distance": float(w.min()),
            "spectrum_model": int(s.argmin()), "spectrum_distance": float(s.min()),
            "function_model": int(f.argmin()), "function_distance": float(f.min())}


def copy_reason(found: dict, pool_closest_pair: float) -> str | None:
    """Why a model counts as a copy of a retrained model, or None."""
    if found["weights_distance"] < NEAR_WEIGHTS:
        return (f"its weights are retrained model {found['weights_model']}'s, up to rescaling (median relative distance "
                f"{found['weights_distance']:.2g} < {NEAR_WEIGHTS} over its batch-norm-folded, balanced layers)")
    if found["spectrum_distance"] < NEAR_SPECTRUM:
        return (f"its weights are retrained model {found['spectrum_model']}'s, up to rescaling and permuted channels "
                f"(median relative distance of the layers' singular values {found['spectrum_distance']:.2g} < "
                f"{NEAR_SPECTRUM})")
    if found["function_distance"] < NEAR_FUNCTION * pool_closest_pair:
        return (f"its outputs are retrained model {found['function_model']}'s (RMS difference of centred logits on the "
                f"forget and test images {found['function_distance']:.3g}, while two independently retrained models "
                f"are never closer than {pool_closest_pair:.3g})")
    return None
