"""The papers' other views of forgetting (PROTOCOL.md section 8), from stored model outputs.

Pure functions, numpy only (scikit-learn for the loss-based membership attack). Shapes: K models,
N examples, C classes; logits and probabilities ``[K, N, C]``, labels ``[N]``, logit-scaled
confidences ``[K, N]`` (``harness.metric.confidences``). Everything is computed in float64;
logarithms are natural, so divergences are in nats.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_validate

# --- Membership attack (the starting kit's simple_mia) ---------------------------------------
MIA_SPLITS = 10          # StratifiedShuffleSplit splits
MIA_TEST_SIZE = 0.1      # test part of each split: scikit-learn's default, which the kit used

# --- Population tests on per-example confidences ---------------------------------------------
VAR_FLOOR = 1e-6         # lira: smallest variance of a population's Gaussian (constant populations)
KL_BINS = 20             # binned_kl: equal bins over an example's pooled range (KLOM's count)
KL_ALPHA = 1e-5          # binned_kl: added to every bin's frequency before renormalising


# =============================================================================================
# Input checks
# =============================================================================================
def _finite(name: str, a) -> np.ndarray:
    """``a`` as a float64 array; ValueError if it is not numeric or holds NaN or infinities."""
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric (got dtype {a.dtype})")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``[..., N, C]`` as float64 and labels ``[N]`` as int64 in [0, C)."""
    z = _finite("logits", logits)
    if z.ndim < 2 or z.shape[-2] == 0 or z.shape[-1] == 0:
        raise ValueError(f"logits must have shape [..., N, C] with N, C >= 1 (got {z.shape})")
    y = np.asarray(labels)
    if y.shape != (z.shape[-2],):
        raise ValueError(f"labels must have shape [N] with N = {z.shape[-2]} (got {y.shape})")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers (got dtype {y.dtype})")
    if y.min() < 0 or y.max() >= z.shape[-1]:
        raise ValueError(f"labels must lie in [0, {z.shape[-1] - 1}] (got {y.min()}..{y.max()})")
    return z, y.astype(np.int64)


def _paired(p_unlearned, p_retrained) -> tuple[np.ndarray, np.ndarray]:
    """Both populations ``[K, N, C]`` cut to their first min(K_u, K_r) models: model k meets model k."""
    a, b = _finite("p_unlearned", p_unlearned), _finite("p_retrained", p_retrained)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"p_unlearned and p_retrained must be [K, N, C] with the same N and C "
                         f"(got {a.shape} and {b.shape})")
    k = min(a.shape[0], b.shape[0])
    if k == 0 or a.shape[1] == 0:
        raise ValueError(f"need at least one model and one example in each (got {a.shape} and {b.shape})")
    return a[:k], b[:k]


def _populations(conf_retrained, conf_unlearned) -> tuple[np.ndarray, np.ndarray]:
    """Confidences ``[K_r, N]`` and ``[K_u, N]``, K >= 1 each, same examples."""
    r, u = _finite("conf_retrained", conf_retrained), _finite("conf_unlearned", conf_unlearned)
    if r.ndim != 2 or u.ndim != 2 or r.shape[1] != u.shape[1] or min(r.shape[0], u.shape[0]) < 1:
        raise ValueError(f"conf_retrained and conf_unlearned must be [K, N] with K >= 1 and the same N "
                         f"(got {r.shape} and {u.shape})")
    return r, u


# =============================================================================================
# Outputs, accuracy, loss
# =============================================================================================
def probabilities(logits) -> np.ndarray:
    """Softmax over the last axis in float64, after subtracting each row's largest logit: any
    leading shape, float16 or float32 logits (stored outputs) lose nothing to overflow."""
    z = _finite("logits", logits)
    if z.ndim < 1 or z.shape[-1] == 0:
        raise ValueError(f"logits need a last (class) axis of length >= 1 (got {z.shape})")
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def accuracy(logits, labels) -> np.ndarray:
    """Percent of examples whose largest logit is the label: ``[..., N, C], [N] -> [...]``."""
    z, y = _logits_labels(logits, labels)
    return 100.0 * np.mean(z.argmax(axis=-1) == y, axis=-1)


def losses(logits, labels) -> np.ndarray:
    """Per-example cross-entropy ``logsumexp(z) - z_y`` in float64: ``[..., N, C], [N] -> [..., N]``."""
    z, y = _logits_labels(logits, labels)
    z = z - z.max(axis=-1, keepdims=True)
    return np.log(np.exp(z).sum(axis=-1)) - z[..., np.arange(y.size), y]


# =============================================================================================
# Distances between the unlearned and the retrained models' outputs
# =============================================================================================
def _kl_terms(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``p * log(p / m)`` with 0 log 0 = 0 (m > 0 wherever p > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(p / m), 0.0)


def js_divergence(p, q) -> np.ndarray:
    """Jensen-Shannon divergence over the last axis, in nats (0 to ln 2); shape = leading dims.

    ``JS = (KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2``. p and q broadcast against
    each other (e.g. ``[K, N, C]`` against ``[N, C]``) and must have the same number of classes.
    """
    p, q = _finite("p", p), _finite("q", q)
    if p.ndim < 1 or q.ndim < 1 or p.shape[-1] != q.shape[-1]:
        raise ValueError(f"p and q need the same last (class) axis (got {p.shape} and {q.shape})")
    if np.any(p < 0) or np.any(q < 0):
        raise ValueError("p and q are probabilities and must be >= 0")
    try:
        p, q = np.broadcast_arrays(p, q)
    except ValueError:
        raise ValueError(f"p {p.shape} and q {q.shape} do not broadcast") from None
    m = (p + q) / 2
    return np.maximum((_kl_terms(p, m) + _kl_terms(q, m)).sum(axis=-1) / 2, 0.0)


def activation_distance(p_unlearned, p_retrained) -> float:
    """Mean over models and examples of ``||p_u - p_r||_2`` (the Sapienza report's "activation
    distance"); unlearned model k is paired with retrained model k, for the first min(K_u, K_r)."""
    a, b = _paired(p_unlearned, p_retrained)                      # [K, N, C] each
    return float(np.linalg.norm(a - b, axis=-1).mean())


def mean_js(p_unlearned, p_retrained) -> float:
    """Mean Jensen-Shannon divergence (nats) over models and examples, paired as activation_distance."""
    a, b = _paired(p_unlearned, p_retrained)
    return float(js_divergence(a, b).mean())


def zrf(p_unlearned, p_untrained) -> float:
    """Zero-retrain forgetting (Chundawat et al., "Can bad teaching induce forgetting?"):
    ``1 - mean JS(p_u, p_untrained)`` over the K models and N forget examples.

    p_unlearned ``[K, N, C]``, p_untrained ``[N, C]`` (a randomly initialised model). With JS in
    nats the score lies in [1 - ln 2, 1]; 1 = outputs like an untrained model's.
    """
    a, t = _finite("p_unlearned", p_unlearned), _finite("p_untrained", p_untrained)
    if a.ndim != 3 or t.shape != a.shape[1:] or a.size == 0:
        raise ValueError(f"p_unlearned must be [K, N, C] and p_untrained [N, C] with the same N and C "
                         f"(got {a.shape} and {t.shape})")
    return float(1.0 - js_divergence(a, t[None]).mean())


def accuracy_by_group(logits, labels, groups) -> dict:
    """Percent correct per group over all K models' predictions on that group's examples:
    logits ``[K, N, C]``, labels ``[N]``, groups ``[N]`` ints -> ``{group: percent}``, sorted."""
    z, y = _logits_labels(logits, labels)
    g = np.asarray(groups)
    if z.ndim != 3 or g.shape != y.shape or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"need logits [K, N, C] and integer groups [N] (got {z.shape} and {g.shape}, {g.dtype})")
    correct = z.argmax(axis=-1) == y                              # [K, N]
    return {int(v): 100.0 * float(correct[:, g == v].mean()) for v in np.unique(g)}


# =============================================================================================
# Membership inference
# =============================================================================================
def mia(forget_losses, test_losses, n_splits: int = MIA_SPLITS, seed: int = 0) -> dict:
    """The starting kit's loss-based membership attack: ``{"accuracy": mean, "auc": mean}``.

    As the kit (unlearning-challenge/starting-kit, unlearning-CIFAR10.ipynb, ``simple_mia``):
    the test examples are non-members (label 0) and come first, the forget examples members
    (label 1); the larger set is cut to the smaller one's size after a shuffle (the kit shuffled
    the forget losses with the unseeded ``np.random.shuffle``; here the shuffle is seeded and
    either set may be the larger); a default ``LogisticRegression()`` on the loss as the only
    feature is scored by cross-validation over ``StratifiedShuffleSplit(n_splits,
    random_state=seed)`` (test_size 0.1). The kit reported the mean "accuracy" only; "auc" is
    the mean ROC AUC of the same fits. An ideal unlearner's forget set looks unseen: ≈ 0.5.

    ValueError unless the test part of every split can hold both classes (with test_size 0.1,
    at least 6 examples in each set).
    """
    f, t = _finite("forget_losses", forget_losses), _finite("test_losses", test_losses)
    if f.ndim != 1 or t.ndim != 1:
        raise ValueError(f"forget_losses and test_losses must be 1-D (got {f.shape} and {t.shape})")
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise ValueError(f"n_splits must be a positive integer (got {n_splits!r})")
    m = min(f.size, t.size)
    n_test = math.ceil(MIA_TEST_SIZE * 2 * m)                     # scikit-learn's rounding
    if n_test < 2 or 2 * m - n_test < 2:
        raise ValueError(f"mia needs both classes in both parts of every split: {f.size} forget and "
                         f"{t.size} test losses give {m} per class and {n_test} test examples per split")
    rng = np.random.default_rng(seed)
    f, t = (a if a.size == m else a[rng.permutation(a.size)[:m]] for a in (f, t))
    x = np.concatenate([t, f])[:, None]                           # [2m, 1]
    y = np.repeat([0, 1], m)
    cv = StratifiedShuffleSplit(n_splits=int(n_splits), test_size=MIA_TEST_SIZE, random_state=seed)
    s = cross_validate(LogisticRegression(), x, y, cv=cv, scoring=("accuracy", "roc_auc"))
    return {"accuracy": float(s["test_accuracy"].mean()), "auc": float(s["test_roc_auc"].mean())}


def mia_population(forget_logits, forget_labels, test_logits, test_labels,
                   n_splits: int = MIA_SPLITS, seed: int = 0) -> dict:
    """``mia`` on each model's losses: forget ``[K, N, C]``, test ``[K, T, C]`` (the same K models).
    Returns ``{"accuracy": mean over models, "auc": mean, "accuracy_per_model": [K]}``."""
    lf, lt = losses(forget_logits, forget_labels), losses(test_logits, test_labels)
    if lf.ndim != 2 or lt.ndim != 2 or lf.shape[0] != lt.shape[0] or lf.shape[0] == 0:
        raise ValueError(f"forget_logits and test_logits must be [K, N, C] and [K, T, C] of the same "
                         f"K >= 1 models (got losses {lf.shape} and {lt.shape})")
    per = [mia(a, b, n_splits, seed) for a, b in zip(lf, lt)]
    return {"accuracy": float(np.mean([r["accuracy"] for r in per])),
            "auc": float(np.mean([r["auc"] for r in per])),
            "accuracy_per_model": [r["accuracy"] for r in per]}


# =============================================================================================
# Per-example tests between the retrained and the unlearned populations
# =============================================================================================
def _gauss_loglik(x: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """log N(x; mu, var) without the constant -log(2π)/2 (it cancels in a ratio)."""
    return -0.5 * ((x - mu) ** 2 / var + np.log(var))


def lira(conf_retrained, conf_unlearned) -> np.ndarray:
    """U-LiRA-style likelihood-ratio test per forget example: ``[K_r, N], [K_u, N] -> [N]``.

    One Gaussian per population (mean, variance floored at VAR_FLOOR); each of the K_r + K_u
    models is called "retrained" when that Gaussian gives its confidence the higher likelihood,
    "unlearned" when the other does, half each on a tie. Returns the balanced accuracy (mean of
    the two populations' accuracies): 0.5 = indistinguishable, 1.0 = fully separated.
    """
    r, u = _populations(conf_retrained, conf_unlearned)           # [K_r, N], [K_u, N]
    c = np.concatenate([r, u])                                    # [K_r + K_u, N]
    llr = (_gauss_loglik(c, r.mean(axis=0), np.maximum(r.var(axis=0), VAR_FLOOR))
           - _gauss_loglik(c, u.mean(axis=0), np.maximum(u.var(axis=0), VAR_FLOOR)))
    says_r = (llr > 0) + 0.5 * (llr == 0)                         # [K_r + K_u, N]
    k = r.shape[0]
    return (says_r[:k].mean(axis=0) + (1.0 - says_r[k:]).mean(axis=0)) / 2


def _bin_freqs(idx: np.ndarray, bins: int) -> np.ndarray:
    """Bin indices ``[K, N]`` -> smoothed frequencies ``[N, bins]`` (each row sums to 1)."""
    k, n = idx.shape
    counts = np.bincount((np.arange(n) * bins + idx).ravel(), minlength=n * bins).reshape(n, bins)
    f = counts / k + KL_ALPHA
    return f / f.sum(axis=1, keepdims=True)


def binned_kl(conf_retrained, conf_unlearned, bins: int = KL_BINS) -> np.ndarray:
    """Per-example KL(unlearned || retrained) in nats between histograms: ``[K_r, N], [K_u, N] -> [N]``.

    KLOM-style: both populations are binned into ``bins`` equal bins spanning the example's
    pooled range (the top edge falls in the last bin), KL_ALPHA is added to every bin's
    frequency and each histogram renormalised. Identical populations (and a zero range) give 0.
    """
    r, u = _populations(conf_retrained, conf_unlearned)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer (got {bins!r})")
    c = np.concatenate([r, u])                                    # [K_r + K_u, N]
    lo, width = c.min(axis=0), np.ptp(c, axis=0)                  # [N]
    scaled = (c - lo) / np.where(width > 0, width, 1.0) * bins    # zero range: all in bin 0
    idx = np.clip(np.floor(scaled), 0, bins - 1).astype(np.int64)
    k = r.shape[0]
    p_r, p_u = _bin_freqs(idx[:k], bins), _bin_freqs(idx[k:], bins)   # [N, bins]
    return np.maximum(np.sum(p_u * np.log(p_u / p_r), axis=1), 0.0)
