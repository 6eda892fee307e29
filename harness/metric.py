"""The competition's forget-quality metric and final score (PROTOCOL.md sections 4 and 5).

Pure numpy, pure functions, no I/O. Array shapes are written ``[K, N]``: K models (rows) by N
forget examples (columns).

The organisers' scorer compares every model with every threshold of two grids (about 700
single thresholds and 160 000 intervals per forget example at K = 512). This module returns
the same ε, to the last bit, about a thousand times faster:

* A threshold only matters through two integer counts (models of each population it calls
  positive). Each example's values are sorted once; a threshold's counts come from
  ``np.searchsorted`` on the merged values of both populations (exactly the float64
  comparisons ``c >= t`` and ``l <= c <= r``, ties included, against the exact grid values).
* The rates and ε depend only on those counts, so ε is read from a table holding the
  organisers' float32 arithmetic once for every pair of counts.
* ε decreases in both error counts, so the counts at the two ends of a run of monotone
  thresholds bound ε over the whole run. Both rule families are searched by halving such runs
  (the interval rule as a quadtree over right end x left end) and skipping those whose bound
  cannot beat the best ε already found. Skipped thresholds provably hold no larger ε: the
  result is the maximum over every threshold of the organisers' grids.
* The bootstrap (``score_interval``) needs only the points of each example, so its search also
  skips rules that cannot move ε into a higher bucket.
"""
from __future__ import annotations

import functools
import math

import numpy as np

# --- Protocol numbers (PROTOCOL.md section 4) -----------------------------------------------
DELTA = 1e-5                 # δ of the (ε, δ) estimate
PROB_GUARD = 1e-45           # added to both probabilities before the log (organisers' LiRA guard)
EPS_CAP = 50.0               # ε is clipped to [0, EPS_CAP]; also the answer of the range-ratio rule
BUCKET_WIDTH = 0.5           # points: ε is bucketed in steps of this width
RANGE_RATIO_MIN = 0.01       # smaller range / larger range below this → ε = EPS_CAP
GRID_POINTS_PER_UNIT = 100   # thresholds per unit of confidence, both rule families
INTERVAL_BUFFER = 2.0        # interval rule: buffer around the peakier population
N_LEFT_ENDS = int(math.ceil(2 * INTERVAL_BUFFER * GRID_POINTS_PER_UNIT))  # 400 left ends per right end

# --- Defaults of the harness's additions ---------------------------------------------------
NULL_SPLITS = 5              # null_forget_quality: random half/half splits averaged
NULL_SEED = 0
N_BOOT = 100                 # score_interval: bootstrap replicates (about 5 s at K=512, N=500)
PAIRED_N_BOOT = 500          # pairwise: draws, each scoring every method compared
BOOT_LEVEL = 0.95

# --- Implementation limits (not protocol numbers) -----------------------------------------
MAX_ABS_CONFIDENCE = 1e6        # |c| <= 1e6 (confidences() gives |c| < 104): grids < 2**28 points
_EX_CHUNK = 2048                 # forget examples per batch (memory of the counting structures)
_TABLE_MAX_ENTRIES = 1 << 22     # larger (K_fn+1)(K_fp+1): ε computed from counts on the fly
_ONFLY_BOUND_SLACK = 1e-3        # float32 rounding slack on bounds computed without a table
_LEAF = 4                        # interval blocks of at most this many rules: evaluated one by one


# =============================================================================================
# Confidences
# =============================================================================================
def confidences(logits, labels) -> np.ndarray:
    """Logit-scaled confidence of every model on every example: ``[M, N, C], [N] -> [M, N]``.

    ``c = log(p_y + 1e-45) - log(sum_{c != y} p_c + 1e-45)`` with the softmax taken in float64
    after subtracting each row's largest logit, as the organisers do. The sum of the wrong-class
    probabilities is taken directly (not as ``1 - p_y``) so that confident models do not lose it
    to cancellation; the 1e-45 guard keeps ``log(0)`` finite (≈ -103.6) when a probability
    underflows.
    """
    z = np.asarray(logits)
    y = np.asarray(labels)
    if z.ndim != 3:
        raise ValueError(f"logits must have shape [M, N, C] (got ndim={z.ndim}, shape={z.shape})")
    if y.ndim != 1 or y.shape[0] != z.shape[1]:
        raise ValueError(f"labels must have shape [N] with N = logits.shape[1] = {z.shape[1]} (got {y.shape})")
    if z.shape[2] < 2:
        raise ValueError(f"logits need at least 2 classes (got C={z.shape[2]})")
    if not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
        raise ValueError(f"labels must be integers (got dtype {y.dtype})")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= z.shape[2]):
        raise ValueError(f"labels must lie in [0, {z.shape[2] - 1}] (got {y.min()}..{y.max()})")
    z = z.astype(np.float64)                                      # [M, N, C]
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or infinite values")
    z = z - z.max(axis=2, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=2, keepdims=True)                             # softmax in float64
    onehot = np.zeros(z.shape[1:], dtype=bool)                    # [N, C]
    onehot[np.arange(z.shape[1]), y] = True
    p_correct = p[:, onehot]                                      # [M, N] (one True per row)
    p_wrong = np.where(onehot[None], 0.0, p).sum(axis=2)          # [M, N]
    return np.log(p_correct + PROB_GUARD) - np.log(p_wrong + PROB_GUARD)


# =============================================================================================
# Input checks
# =============================================================================================
def _check_confs(retrain_conf, unlearned_conf) -> tuple[np.ndarray, np.ndarray]:
    """Both populations as float64 ``[K, N]``; ValueError naming the problem otherwise."""
    out = []
    for name, a in (("retrain_conf", retrain_conf), ("unlearned_conf", unlearned_conf)):
        a = np.asarray(a)
        if a.ndim != 2:
            raise ValueError(f"{name} must have shape [K, N] (models x forget examples); got ndim={a.ndim}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{name} must be numeric (got dtype {a.dtype})")
        a = a.astype(np.float64)
        if a.shape[0] < 2:
            raise ValueError(f"{name} has K={a.shape[0]} models; the metric needs K >= 2 in each population")
        if a.shape[1] == 0:
            raise ValueError(f"{name} has N=0 forget examples; the forget set must not be empty")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite confidences")
        if np.max(np.abs(a)) > MAX_ABS_CONFIDENCE:
            raise ValueError(f"{name} has confidences beyond +-{MAX_ABS_CONFIDENCE:g}: they are log-odds, and "
                             f"the organisers' grids (100 points per unit) are not defined for such ranges")
        out.append(a)
    if out[0].shape[1] != out[1].shape[1]:
        raise ValueError(f"retrain_conf and unlearned_conf must cover the same forget examples: "
                         f"N={out[0].shape[1]} vs N={out[1].shape[1]}")
    return out[0], out[1]


# =============================================================================================
# ε of one rule, from its two counts
# =============================================================================================
def _eps_from_counts(fn, fp, k_fn: int, k_fp: int, delta: float) -> np.ndarray:
    """ε of rules with ``fn`` false negatives out of ``k_fn`` and ``fp`` false positives out of ``k_fp``.

    The organisers' arithmetic: each rate is a float32 mean over models (= the count divided by K,
    rounded to float32), ``max(log(1-δ-FPR) - log FNR, log(1-δ-FNR) - log FPR)`` is evaluated in
    float32 and clipped at 0; ``fn = fp = 0`` (perfect separation) gives +inf. A rule that gives
    no estimate (exactly one of FNR, FPR zero, or both log terms NaN) returns 0: the example's ε
    is the maximum over rules and every real estimate is >= 0, so 0 never hides one, and an
    example without any estimate gets ε = 0 (see ``epsilons``).
    """
    fn = np.asarray(fn, dtype=np.int64)
    fp = np.asarray(fp, dtype=np.int64)
    kf = np.float32(k_fn)
    kp = np.float32(k_fp)
    fnr = fn.astype(np.float32) / kf
    tpr = (k_fn - fn).astype(np.float32) / kf
    fpr = fp.astype(np.float32) / kp
    tnr = (k_fp - fp).astype(np.float32) / kp
    one_minus_delta = np.float32(1 - delta)           # Python float (1 - δ) meets a float32 array
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(one_minus_delta - fpr) - np.log(fnr)
        b = np.log(one_minus_delta - fnr) - np.log(fpr)
        e = np.clip(np.fmax(a, b), np.float32(0), None)  # fmax = nanmax of the two terms
    perfect = ((fpr + fnr) == 0) & ((tpr + tnr) == 2)
    skipped = ~perfect & ((fpr * fnr) == 0)
    e = np.where(perfect, np.float32(np.inf), e)
    e = np.where(skipped | np.isnan(e), np.float32(0), e)
    return e.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _tables(k_fn: int, k_fp: int, delta: float):
    """``(T, U)``, both float32 ``[k_fn+1, k_fp+1]``; None when too large to tabulate.

    ``T[fn, fp]`` is ``_eps_from_counts``. ``U[a, b]`` is the largest ``T[a', b']`` over
    ``a' >= a, b' >= b`` with ``a', b' >= 1``: an upper bound for every rule whose counts are at
    least (a, b) and that is not a perfect or skipped rule. Used only for pruning.
    """
    if (k_fn + 1) * (k_fp + 1) > _TABLE_MAX_ENTRIES:
        return None
    fn, fp = np.meshgrid(np.arange(k_fn + 1), np.arange(k_fp + 1), indexing="ij")
    t = _eps_from_counts(fn, fp, k_fn, k_fp, delta)
    t.setflags(write=False)
    inner = t.copy()
    inner[0, :] = 0
    inner[:, 0] = 0
    u = np.maximum.accumulate(inner[::-1], axis=0)[::-1]
    u = np.ascontiguousarray(np.maximum.accumulate(u[:, ::-1], axis=1)[:, ::-1])
    u.setflags(write=False)
    return t, u


class _Rates:
    """ε of rules, and upper bounds over blocks of rules, for one (k_fn, k_fp) pair."""

    def __init__(self, k_fn: int, k_fp: int, delta: float):
        self.k_fn, self.k_fp, self.delta = k_fn, k_fp, delta
        self.tables = _tables(k_fn, k_fp, float(delta))

    def eps(self, fn, fp) -> np.ndarray:
        if self.tables is not None:
            return self.tables[0][fn, fp]
        return _eps_from_counts(fn, fp, self.k_fn, self.k_fp, self.delta)

    def bound(self, fn_lo, fn_hi, fp_lo, fp_hi) -> np.ndarray:
        """Upper bound of ε over all rules with fn in [fn_lo, fn_hi] and fp in [fp_lo, fp_hi].

        ε decreases in both counts (fewer errors, more evidence), apart from the border rows:
        fn = 0 or fp = 0 are skipped rules (0) except fn = fp = 0 (perfect separation, +inf).
        """
        a = np.maximum(fn_lo, 1)
        b = np.maximum(fp_lo, 1)
        if self.tables is not None:
            inner = self.tables[1][a, b]
        else:
            inner = _eps_from_counts(a, b, self.k_fn, self.k_fp, self.delta) + np.float32(_ONFLY_BOUND_SLACK)
        out = np.where((fn_hi >= 1) & (fp_hi >= 1), inner, np.float32(0))
        return np.where((fn_lo == 0) & (fp_lo == 0), np.float32(np.inf), out)


# =============================================================================================
# Counting against sorted populations, many examples at once
# =============================================================================================
class _Merged:
    """Both populations of every example, merged and sorted, for counting many thresholds at once.

    One ``np.searchsorted`` on complex keys ``row + 1j*value`` answers queries of all examples
    (numpy orders complex numbers lexicographically: real part, then imaginary part), comparing
    the float64 values exactly. The position among an example's merged values gives both counts
    through prefix counts of retrain values and of all values. The prefix counts may weigh each
    value (a model drawn several times by the bootstrap counts several times), so a resample
    searches the original keys.
    """

    def __init__(self, values: np.ndarray, is_retrain: np.ndarray):
        """values ``[n, K_r + K_u]`` sorted along axis 1; is_retrain ``[n, K_r + K_u]`` marks the
        retrain values (the order among equal values does not matter for the counts)."""
        n, k = values.shape
        keys = np.empty((n, k), dtype=np.complex128)
        keys.real = np.arange(n, dtype=np.float64)[:, None]
        keys.imag = values
        self.keys = keys.ravel()
        self.k = k
        self.key_row = np.arange(n)
        cum_r = np.zeros((n, k + 1), dtype=np.int64)              # retrain values among the first q
        np.cumsum(is_retrain, axis=1, dtype=np.int64, out=cum_r[:, 1:])
        self.cum_r, self.cum_a = cum_r.ravel(), None              # cum_a None: all weights 1

    def set_weights(self, w_r: np.ndarray, w_u: np.ndarray, key_row: np.ndarray | None = None) -> None:
        """Count value q of key row ``key_row[e]`` w_r[e, q] times as retrain and w_u[e, q] times
        as unlearned (both ``[n, K_r + K_u]``); example e of the queries is that row."""
        if key_row is not None:
            self.key_row = key_row
        n = w_r.shape[0]
        cum_r = np.zeros((n, self.k + 1), dtype=np.int64)
        cum_a = np.zeros((n, self.k + 1), dtype=np.int64)
        np.cumsum(w_r, axis=1, out=cum_r[:, 1:])
        np.cumsum(w_r + w_u, axis=1, out=cum_a[:, 1:])
        self.cum_r, self.cum_a = cum_r.ravel(), cum_a.ravel()

    @classmethod
    def of(cls, rs: np.ndarray, us: np.ndarray) -> "_Merged":
        """From each population's sorted values, rs ``[n, K_r]`` and us ``[n, K_u]``."""
        both = np.concatenate([rs, us], axis=1)                   # [n, K_r + K_u]
        order = np.argsort(both, axis=1, kind="stable")
        return cls(np.take_along_axis(both, order, axis=1), order < rs.shape[1])

    def count(self, ex: np.ndarray, x: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
        """(#retrain, #unlearned) values of example ``ex`` that are ``< x`` (side='left') or
        ``<= x`` (side='right'); ex and x are arrays of the same shape."""
        row = self.key_row[ex]
        q = np.empty(x.shape, dtype=np.complex128)
        q.real = row
        q.imag = x
        at = ex * (self.k + 1) + np.searchsorted(self.keys, q, side=side) - row * self.k
        n_r = self.cum_r[at]
        n_all = (at - ex * (self.k + 1)) if self.cum_a is None else self.cum_a[at]
        return n_r, n_all - n_r


class _Pair:
    """The two populations of a rule family, A (positive, or peakier) and B (the other), for a
    subset ``sel`` of examples: counts by local example index, in the family's orientation.
    ``a_is_retrain`` ``[len(sel)]`` says per example whether A is the retrain population."""

    def __init__(self, merged: _Merged, sel: np.ndarray, a_is_retrain: np.ndarray):
        self.merged, self.sel, self.a_is_retrain = merged, sel, a_is_retrain

    def count(self, e_local: np.ndarray, x: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
        n_r, n_u = self.merged.count(self.sel[e_local], x, side)
        n_a = np.where(self.a_is_retrain[e_local], n_r, n_u)
        return n_a, (n_r + n_u) - n_a


def _round_sum_f32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` rounded once to float32 (a fused multiply-add's rounding), as float64.

    a and b are exact float64 numbers (a float32 start and an exact float32*integer product).
    Their float64 sum may round; rounding that sum again to float32 could then double-round.
    Rounding to odd first (nudging an inexact, even float64 sum one ulp towards the lost part)
    makes the second rounding exact, because float64 has more than 24 + 1 bits.
    """
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)                           # TwoSum: a + b = s + err exactly
    fix = (err != 0) & ((s.view(np.int64) & 1) == 0)
    if np.any(fix):
        s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32).astype(np.float64)


def _f32_grid_points(lo: np.ndarray, hi: np.ndarray, n: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Point ``i`` of the organisers' float32 single-threshold grid of ``n`` points from lo to hi.

    torch.linspace(min, max, n) with the default float32 dtype: start and end rounded to float32,
    ``step = (end - start) / (n - 1)`` in float32, point ``start + step*i`` for ``i < n // 2`` and
    ``end - step*(n - 1 - i)`` otherwise; one point is ``start``. Each point is computed with a
    single rounding (fused multiply-add), which is what torch 2.x's CPU kernel gives on x86-64
    with FMA (checked against torch 2.14 on 2 000 random grids: identical; without FMA 93% of
    those grids differ in at least one point). The choice only matters for a confidence lying
    exactly on a grid point (PROTOCOL.md: the organisers' platforms differ there too).
    """
    start = lo.astype(np.float32)
    end = hi.astype(np.float32)
    nm1 = np.maximum(n - 1, 1).astype(np.float32)
    step = ((end - start) / nm1).astype(np.float32).astype(np.float64)
    first = i < n // 2
    # The integer multiplier is converted to float32 as in C++ (exact below 2**24 points), so
    # the product of two 24-bit significands is exact in float64.
    k = np.where(first, i, n - 1 - i).astype(np.float32).astype(np.float64)
    prod = step * k
    pts = _round_sum_f32(np.where(first, start.astype(np.float64), end.astype(np.float64)),
                         np.where(first, prod, -prod))
    return np.where(n == 1, start.astype(np.float64), pts)


def _np_linspace_points(start: np.ndarray, stop: np.ndarray, num: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Point ``i`` of ``np.linspace(start, stop, num)`` (float64, endpoint=True), elementwise.

    numpy computes ``step = (stop - start) / (num - 1)``, point ``i*step + start`` and sets the
    last point to ``stop``; when the step is 0 it uses ``(i / (num - 1)) * delta + start``.
    """
    delta = stop - start
    div = np.maximum(num - 1, 1).astype(np.float64)
    step = delta / div
    fi = i.astype(np.float64)
    y = np.where(step == 0, (fi / div) * delta, fi * step) + start
    y = np.where((i == num - 1) & (num > 1), stop, y)
    return np.where(num == 1, start, y)


# =============================================================================================
# The two rule families, searched by bisection with exact bounds
# =============================================================================================
def _grid_count(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Points of a grid over [lo, hi]: ceil((hi - lo) * 100), in float64 as the organisers."""
    return np.maximum(np.ceil((hi - lo) * GRID_POINTS_PER_UNIT), 0).astype(np.int64)


def _pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a[0], b[0], a[1], b[1], ...: children stay next to their parent, so the arrays of blocks
    stay grouped by example and every batch of queries walks the sorted keys in order (several
    times faster than scattered queries, which miss the cache)."""
    return np.stack([a, b], axis=1).ravel()


def _bisect_max(seg_ex, seg_lo, seg_hi, counts_at, rates: _Rates, best: np.ndarray, need) -> None:
    """Raise ``best[e]`` to the largest ε over the rules of every segment of example e.

    A segment is a run of rules ``j = seg_lo..seg_hi`` (inclusive) whose counts are monotone in
    j: fn never decreases and fp never increases (the threshold moves right). ``counts_at(s, j)``
    gives the exact (fn, fp) of rule j of segment s. Both ends of a block are evaluated exactly;
    a block whose bound ``rates.bound`` is not above ``need(best)`` cannot change the answer and
    is dropped, otherwise its middle rule is evaluated and the block is halved. With
    ``need = identity`` the result is the exact maximum over all rules of all segments.
    ``best`` (float32 ``[n]``) is updated in place.
    """
    segs = np.arange(seg_ex.size)
    fn0, fp0 = counts_at(segs, seg_lo)
    np.maximum.at(best, seg_ex, rates.eps(fn0, fp0))
    more = seg_hi > seg_lo
    segs, j0, j1, fn0, fp0 = segs[more], seg_lo[more], seg_hi[more], fn0[more], fp0[more]
    fn1, fp1 = counts_at(segs, j1)
    np.maximum.at(best, seg_ex[segs], rates.eps(fn1, fp1))
    # Invariant: every rule not yet evaluated lies strictly inside an active block (j0, j1).
    while segs.size:
        ex = seg_ex[segs]
        keep = (j1 - j0 >= 2) & (rates.bound(fn0, fn1, fp1, fp0) > need(best[ex]))
        if not np.any(keep):
            return
        segs, j0, j1 = segs[keep], j0[keep], j1[keep]
        fn0, fp0, fn1, fp1 = fn0[keep], fp0[keep], fn1[keep], fp1[keep]
        jm = (j0 + j1) // 2
        fnm, fpm = counts_at(segs, jm)
        np.maximum.at(best, seg_ex[segs], rates.eps(fnm, fpm))
        segs = _pairs(segs, segs)
        j0, j1 = _pairs(j0, jm), _pairs(jm, j1)
        fn0, fn1 = _pairs(fn0, fnm), _pairs(fnm, fn1)
        fp0, fp1 = _pairs(fp0, fpm), _pairs(fpm, fp1)


def _single_threshold(pos: np.ndarray, neg: np.ndarray, pair: _Pair, rates: _Rates, best: np.ndarray,
                      need) -> None:
    """Single-threshold rule ("positive when c >= t"): raises ``best`` ``[n]`` in place.

    pos and neg ``[n, 2]``: each example's smallest and largest positive / negative value;
    ``pair`` counts the populations (A = pos); rates has k_fn = K_pos, k_fp = K_neg. fn = #pos < t,
    fp = #neg >= t. The grid (``_f32_grid_points``) is monotone within each half (each half is
    one rounded affine function of i), so each half is one bisection segment; the two halves
    are not assumed to join monotonically.
    """
    lo = np.minimum(pos[:, 0], neg[:, 0])
    hi = np.maximum(pos[:, -1], neg[:, -1])
    n_thr = _grid_count(lo, hi)                                   # [n]
    k_neg = rates.k_fp
    half = n_thr // 2
    e_all = np.arange(pos.shape[0])
    first = half >= 1                                             # segment [0, half-1]
    second = n_thr >= 1                                           # segment [half, n-1]
    seg_ex = np.concatenate([e_all[first], e_all[second]])
    seg_lo = np.concatenate([np.zeros(first.sum(), np.int64), half[second]])
    seg_hi = np.concatenate([half[first] - 1, n_thr[second] - 1])
    by_ex = np.argsort(seg_ex, kind="stable")                     # queries grouped by example
    seg_ex, seg_lo, seg_hi = seg_ex[by_ex], seg_lo[by_ex], seg_hi[by_ex]

    def counts_at(seg, j):
        e = seg_ex[seg]
        t = _f32_grid_points(lo[e], hi[e], n_thr[e], j)          # float32 points, as float64
        n_pos, n_neg = pair.count(e, t, "left")                   # values < t
        return n_pos, k_neg - n_neg

    if seg_ex.size:
        _bisect_max(seg_ex, seg_lo, seg_hi, counts_at, rates, best, need)


def _interval(peaky: np.ndarray, width: np.ndarray, pair: _Pair, rates: _Rates,
              best: np.ndarray, need) -> None:
    """Interval rule ("belongs to the peakier population when l <= c <= r"): raises ``best``.

    peaky ``[n, 2]``: each example's smallest and largest value of the peakier population P;
    width ``[n]`` the smaller of the two ranges; ``pair`` counts the populations (A = P, B = the
    other, Q); rates has k_fn = K_P, k_fp = K_Q.
    fn = #P outside [l, r], fp = #Q inside. Right ends r_i: np.linspace(P.min + w - 2,
    P.max + 2, ceil((hi - lo)*100)); for every r_i, left ends l_ij = np.linspace(r_i - w - 2,
    r_i - w + 2, 400)[j].

    Search: rules are indexed by (i, m = i + j), in which l depends (almost) on m alone and r on
    i alone, and searched as a quadtree of blocks. l_ij is monotone in j exactly and, for
    j <= 398, an affine function of (i, j) up to rounding; so over a block, l lies between the
    smallest and largest of its corner values widened by a slack (1e-9 relative plus 1200 times
    the spread of the rows' float steps: far above the rounding), and r between its first
    and last row's r (rows are sorted by r). Counting both populations at those values bounds
    fn and fp of every rule in the block, and ``_Rates.bound`` bounds its ε. A block is halved
    only while that bound is above ``need(best)``; a rule at its centre is evaluated exactly at
    each split, and blocks of at most ``_LEAF`` index pairs are evaluated rule by rule. The
    last left end (j = 399, set to the stop value by linspace) is searched as its own column,
    monotone in i. Examples whose right ends are not increasing (impossible for finite inputs
    of sane magnitude) are evaluated rule by rule.
    """
    n_ex, k_p = peaky.shape[0], rates.k_fn
    lo = (peaky[:, 0] + width) - INTERVAL_BUFFER
    hi = peaky[:, -1] + INTERVAL_BUFFER
    n_right = _grid_count(lo, hi)
    ex = np.repeat(np.arange(n_ex), n_right)                     # one entry per right end ("row")
    if ex.size == 0:
        return
    first_row = np.cumsum(n_right) - n_right
    i = np.arange(ex.size) - np.repeat(first_row, n_right)
    r = _np_linspace_points(lo[ex], hi[ex], n_right[ex], i)      # [rows]
    base = r - width[ex]
    l_start = base - INTERVAL_BUFFER
    l_stop = base + INTERVAL_BUFFER
    p_le, q_le = pair.count(ex, r, "right")                       # P, Q values <= r
    num = np.int64(N_LEFT_ENDS)
    l_step = (l_stop - l_start) / (N_LEFT_ENDS - 1)
    has = n_right > 0
    starts = first_row[has]
    spread = np.zeros(n_ex)
    spread[has] = np.maximum.reduceat(l_step, starts) - np.minimum.reduceat(l_step, starts)
    mag = np.zeros(n_ex)
    mag[has] = np.maximum.reduceat(np.maximum(np.abs(l_start), np.abs(l_stop)), starts)
    # Slack: an interior l and an (extrapolated, |j| < 2*400) corner each differ from the affine
    # function by < 800 * spread + a few ulps; 1e-9 relative is far above the ulps.
    slack = 3 * N_LEFT_ENDS * spread + 1e-9 * (1.0 + mag)
    decreasing = np.zeros(n_ex, dtype=bool)
    decreasing[ex[1:][(np.diff(r) < 0) & (ex[1:] == ex[:-1])]] = True

    def evaluate(row, j):
        left = _np_linspace_points(l_start[row], l_stop[row], num, j)
        n_p, n_q = pair.count(ex[row], left, "left")
        tp = np.maximum(p_le[row] - n_p, 0)
        fp = np.maximum(q_le[row] - n_q, 0)
        np.maximum.at(best, ex[row], rates.eps(k_p - tp, fp))

    if np.any(decreasing):                                       # rule by rule (never in practice)
        rows = np.flatnonzero(decreasing[ex])
        for j in range(N_LEFT_ENDS):
            evaluate(rows, np.full(rows.size, j))
    ok = np.flatnonzero(has & ~decreasing)
    if ok.size == 0:
        return
    last = N_LEFT_ENDS - 1
    # Blocks: example e, rows i0..i1 (global row indices), m0..m1 with m = (local row) + j;
    # column "stop" blocks (j = 399) use m0 = m1 = -1.
    e_b = _pairs(ok, ok)
    i0 = _pairs(first_row[ok], first_row[ok])
    i1 = i0 + _pairs(n_right[ok], n_right[ok]) - 1
    m0 = _pairs(np.zeros(ok.size, np.int64), np.full(ok.size, -1))
    m1 = _pairs(n_right[ok] - 1 + last - 1, np.full(ok.size, -1))

    def plain_left(row, j):
        """l of (row, j) by the affine formula (no endpoint rule), for bounds."""
        return j * ((l_stop[row] - l_start[row]) / (N_LEFT_ENDS - 1)) + l_start[row]

    while e_b.size:
        stop_col = m0 < 0
        fr = first_row[e_b]
        nr = i1 - i0 + 1
        nm = np.where(stop_col, 1, m1 - m0 + 1)
        leaf = nr * nm <= _LEAF
        if np.any(leaf):                                         # evaluate small blocks rule by rule
            size = nr[leaf] * nm[leaf]
            k = np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size)
            nm_r = np.repeat(nm[leaf], size)
            row = np.repeat(i0[leaf], size) + k // nm_r
            mm = np.repeat(m0[leaf], size) + k % nm_r
            j = np.where(np.repeat(stop_col[leaf], size), last, mm - (row - np.repeat(fr[leaf], size)))
            valid = (j >= 0) & (j <= last)
            evaluate(row[valid], j[valid])
            big = ~leaf
            e_b, i0, i1, m0, m1 = e_b[big], i0[big], i1[big], m0[big], m1[big]
            stop_col, fr, nr, nm = stop_col[big], fr[big], nr[big], nm[big]
            if e_b.size == 0:
                break
        # Range of l over the block.
        j00, j10 = m0 - (i0 - fr), m0 - (i1 - fr)                 # corners (i0, m0), (i1, m0)
        j01, j11 = m1 - (i0 - fr), m1 - (i1 - fr)
        l_lo = np.minimum(plain_left(i0, j00), plain_left(i1, j10)) - slack[e_b]
        l_hi = np.maximum(plain_left(i0, j01), plain_left(i1, j11)) + slack[e_b]
        l_lo = np.where(stop_col, l_stop[i0], l_lo)
        l_hi = np.where(stop_col, l_stop[i1], l_hi)
        p_lo, q_lo = pair.count(e_b, l_lo, "left")
        p_hi, q_hi = pair.count(e_b, l_hi, "left")
        fn_lo = k_p - np.maximum(p_le[i1] - p_lo, 0)
        fn_hi = k_p - np.maximum(p_le[i0] - p_hi, 0)
        fp_lo = np.maximum(q_le[i0] - q_hi, 0)
        fp_hi = np.maximum(q_le[i1] - q_lo, 0)
        # Blocks without any rule (j out of [0, 398] everywhere) are dropped too.
        has_rule = stop_col | ((m1 - (i0 - fr) >= 0) & (m0 - (i1 - fr) <= last - 1))
        keep = has_rule & (rates.bound(fn_lo, fn_hi, fp_lo, fp_hi) > need(best[e_b]))
        if not np.any(keep):
            break
        e_b, i0, i1, m0, m1 = e_b[keep], i0[keep], i1[keep], m0[keep], m1[keep]
        stop_col, fr, nr, nm = stop_col[keep], fr[keep], nr[keep], nm[keep]
        im, mm = (i0 + i1) // 2, (m0 + m1) // 2
        evaluate(im, np.where(stop_col, last, np.clip(mm - (im - fr), 0, last - 1)))   # raises best early
        by_row = stop_col | (nr >= nm)
        a1, b1 = np.where(by_row, im, i1), np.where(by_row, m1, mm)            # first half [i0,a1]x[m0,b1]
        a0, b0 = np.where(by_row, im + 1, i0), np.where(by_row, m0, mm + 1)    # second half [a0,i1]x[b0,m1]
        e_b = _pairs(e_b, e_b)
        i0, i1 = _pairs(i0, a0), _pairs(a1, i1)
        m0, m1 = _pairs(m0, b0), _pairs(b1, m1)


# =============================================================================================
# Per-example ε
# =============================================================================================
def _median_sorted(s: np.ndarray) -> np.ndarray:
    """np.median of each row of ``s`` ``[n, K]`` already sorted along axis 1 (same float64 result)."""
    k = s.shape[1]
    if k % 2:
        return s[:, k // 2].copy()
    return (s[:, k // 2 - 1] + s[:, k // 2]) / 2


def _exact_need(best_vals: np.ndarray) -> np.ndarray:
    return best_vals


def _bucket_need(k_points: int):
    """``need`` for callers that only want the points of ε (bootstrap): a block is searched only
    if it could move ε into a higher bucket that still scores."""
    top = _scoring_limit(k_points)

    def need(best_vals):
        edge = (np.floor(best_vals.astype(np.float64) / BUCKET_WIDTH) + 1) * BUCKET_WIDTH
        out = np.nextafter(edge.astype(np.float32), np.float32(-np.inf))   # bound >= edge
        return np.where(best_vals.astype(np.float64) >= top, np.float32(np.inf), out)
    return need


def _epsilons_core(ext_r: np.ndarray, ext_u: np.ndarray, med_r: np.ndarray, med_u: np.ndarray, k_r: int,
                   k_u: int, merged: _Merged, delta: float, need=_exact_need) -> np.ndarray:
    """ε per example from each population's extremes ``[n, 2]`` (min, max), medians ``[n]``,
    sizes and counting structure. With the default ``need`` the exact ε (float64 ``[n]``, see
    ``epsilons``); with ``_bucket_need(k)`` a value with the same points as the exact ε."""
    n = ext_r.shape[0]
    retrain_pos = med_r > med_u                                   # ties: unlearned is positive
    r_rng = ext_r[:, 1] - ext_r[:, 0]
    u_rng = ext_u[:, 1] - ext_u[:, 0]
    pos_rng = np.where(retrain_pos, r_rng, u_rng)
    neg_rng = np.where(retrain_pos, u_rng, r_rng)
    largest = np.where(pos_rng > neg_rng, pos_rng, neg_rng)
    smallest = np.where(pos_rng > neg_rng, neg_rng, pos_rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        capped = (smallest / largest) < RANGE_RATIO_MIN            # NaN (0/0) compares False
    # The peakier population P of the interval rule: the negative one unless pos is narrower.
    retrain_peaky = np.where(pos_rng >= neg_rng, ~retrain_pos, retrain_pos)

    best = np.zeros(n, dtype=np.float32)
    # Single thresholds first: their ε is a good lower bound that prunes the interval search.
    # One group per orientation of the population sizes (a single group when K_r == K_u).
    orientations = (True, False) if k_r != k_u else (None,)
    for flags, family in ((retrain_pos, _single_threshold), (retrain_peaky, _interval)):
        for a_is_r in orientations:
            k_a, k_b = (k_u, k_r) if a_is_r is False else (k_r, k_u)
            sel = np.flatnonzero(~capped & ((flags == a_is_r) if a_is_r is not None else True))
            if sel.size == 0:
                continue
            f = flags[sel]
            a_ext = np.where(f[:, None], ext_r[sel], ext_u[sel])     # [n, 2] min, max of A
            b_ext = np.where(f[:, None], ext_u[sel], ext_r[sel])
            pair, rates, b = _Pair(merged, sel, f), _Rates(k_a, k_b, delta), best[sel]
            if family is _single_threshold:
                _single_threshold(a_ext, b_ext, pair, rates, b, need)
            else:
                _interval(a_ext, smallest[sel], pair, rates, b, need)
            best[sel] = b
    eps = np.clip(best.astype(np.float64), 0.0, EPS_CAP)
    eps[capped] = EPS_CAP
    return eps


def epsilons(retrain_conf, unlearned_conf, delta: float = DELTA) -> np.ndarray:
    """Per-example ε of the organisers' attack: ``[K_r, N], [K_u, N] -> [N]`` float64 in [0, 50].

    PROTOCOL.md section 4, exactly (the golden cases agree to the last bit):

    * positive population: retrain when its median is larger than the unlearned median,
      otherwise (ties included) unlearned;
    * range-ratio rule: smaller range / larger range < 0.01 → ε = 50 (both ranges 0 → NaN → no);
    * single threshold ``c >= t`` on the float32 grid (``_f32_grid_points``: a confidence lying
      exactly on a grid point is decided with fused-multiply-add rounding of the grid);
    * interval ``l <= c <= r`` on the float64 grids, centred on the peakier population (smaller
      range; on equal ranges the population that is not positive);
    * rates are float32 means over each population's own models, ε is the float32 formula,
      perfect separation → +inf, exactly one of FPR/FNR zero → no estimate; the example's ε is
      the maximum over every rule of both grids, clipped to [0, 50] (perfect separation → 50).

    No estimate at all (both populations the same constant: every rule has FPR or FNR zero; the
    organisers' code crashes there): ε = 0, because nothing distinguishes the two populations.

    K_r may differ from K_u (an extension: the organisers require equal K); each rate is a mean
    over the models of its own population.
    """
    r, u = _check_confs(retrain_conf, unlearned_conf)
    delta = float(delta)
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1) (got {delta})")
    out = []
    for a in range(0, r.shape[1], _EX_CHUNK):
        rs = np.sort(r[:, a:a + _EX_CHUNK].T, axis=1)             # [n, K_r]
        us = np.sort(u[:, a:a + _EX_CHUNK].T, axis=1)             # [n, K_u]
        out.append(_epsilons_core(rs[:, [0, -1]], us[:, [0, -1]], _median_sorted(rs), _median_sorted(us),
                                  r.shape[0], u.shape[0], _Merged.of(rs, us), delta))
    return np.concatenate(out)


# =============================================================================================
# Points, forget quality, final score
# =============================================================================================
def _scoring_limit(k: int) -> float:
    """ε at and beyond which an example scores 0: ceil(log(k - 1)) (natural log)."""
    return float(math.ceil(math.log(k - 1))) if k > 2 else 0.0


def points(eps, k: int) -> np.ndarray:
    """Points of every example: ``[N] -> [N]``.

    ε falls in bucket ``b = floor(ε / 0.5)``; bucket b scores ``2**-b`` while its upper edge
    ``0.5*(b+1)`` is at most ``ceil(log(k - 1))`` (k = number of unlearned models), i.e. every
    ε below that limit scores and ε at or above it (and ε = ∞) scores 0. With k = 2 the limit
    is 0 and nothing scores, as in the organisers' code.
    """
    e = np.asarray(eps, dtype=np.float64)
    k = _check_k(k)
    if e.ndim != 1:
        raise ValueError(f"eps must have shape [N] (got {e.shape})")
    if np.any(np.isnan(e)) or np.any(e < 0):
        raise ValueError("eps must be >= 0 and not NaN")
    limit = _scoring_limit(k)
    with np.errstate(over="ignore", invalid="ignore"):
        b = np.floor(e / BUCKET_WIDTH)
        pts = np.where(e < limit, np.exp2(-np.minimum(b, 1e4)), 0.0)
    return pts


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k (number of unlearned models) must be an integer >= 2 (got {k!r})")
    return int(k)


def forget_quality(retrain_conf, unlearned_conf) -> float:
    """F: mean points over the forget examples, with k = number of unlearned models. In [0, 1]."""
    r, u = _check_confs(retrain_conf, unlearned_conf)
    pts = points(epsilons(r, u), u.shape[0])
    return float(np.sum(pts)) / pts.size


def _check_acc(name: str, v, positive: bool) -> float:
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite (got {v})")
    if positive and v <= 0:
        raise ValueError(f"{name} is a reference accuracy and must be > 0 (got {v})")
    if v < 0:
        raise ValueError(f"{name} must be >= 0 (got {v})")
    return v


def final_score(forget_quality, retain_acc_u, retain_acc_r, test_acc_u, test_acc_r) -> float:
    """``F × (RAu / RAr) × (TAu / TAr)``: accuracies in percent (means over each population's
    models), ratios not clipped, evaluated in the organisers' order."""
    f = float(forget_quality)
    if not math.isfinite(f) or not 0 <= f <= 1:
        raise ValueError(f"forget_quality must be in [0, 1] (got {f})")
    rau = _check_acc("retain_acc_u", retain_acc_u, False)
    rar = _check_acc("retain_acc_r", retain_acc_r, True)
    tau = _check_acc("test_acc_u", test_acc_u, False)
    tar = _check_acc("test_acc_r", test_acc_r, True)
    return f * (rau / rar) * (tau / tar)


def competition_score(retrain_conf, unlearned_conf, retain_acc_u, retain_acc_r, test_acc_u, test_acc_r) -> float:
    """The score of K_u runs' forget confidences [K_u, N] against K_r retrained models' [K_r, N], with
    each model's accuracies ([K_u], [K_r]): forget quality scaled by the mean accuracies' ratios."""
    return final_score(forget_quality(retrain_conf, unlearned_conf), np.mean(retain_acc_u), np.mean(retain_acc_r),
                       np.mean(test_acc_u), np.mean(test_acc_r))


# =============================================================================================
# Null ceiling and bootstrap interval
# =============================================================================================
def null_forget_quality(retrain_conf, n_splits: int = NULL_SPLITS, seed: int = NULL_SEED) -> float:
    """F that a perfect unlearner reaches: the retrained models scored against themselves.

    The K_r retrained models are split at random into two halves of K_r // 2 models (a fixed
    permutation per split, from ``seed``); one half plays "retrained", the other "unlearned",
    and ``forget_quality`` scores them; the result is the mean over ``n_splits`` splits.

    It is measured with K_r // 2 models per population, not K: the bucket cut-off
    ceil(log(k - 1)) and the attack's power depend on k, but F of identical populations is
    nearly flat in k (about 0.19 from k = 8 to 512, PROTOCOL.md section 4), so it is the
    ceiling to read a score against. With K_r = 2 or 3 the halves would hold a single model and
    the ceiling is not defined: NaN (K_r < 2 is bad input: ValueError).
    """
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise ValueError(f"n_splits must be a positive integer (got {n_splits!r})")
    r, _ = _check_confs(retrain_conf, retrain_conf)
    if r.shape[0] < 4:
        return float("nan")
    rng = np.random.default_rng(seed)
    half = r.shape[0] // 2
    fs = []
    for _ in range(int(n_splits)):
        perm = rng.permutation(r.shape[0])
        fs.append(forget_quality(r[perm[:half]], r[perm[half:2 * half]]))
    return float(np.mean(fs))


class _Resampler:
    """Bootstrap resamples of both populations without sorting or merging again.

    A resample with replacement of the models is a multiset of the original values: each value
    counts as often as its model was drawn. So the populations are sorted and merged once; a
    replicate only computes weighted prefix counts (``_Merged.set_weights``) and reads its
    extremes and medians off the weights.
    """

    def __init__(self, r: np.ndarray, u: np.ndarray):             # [K_r, N], [K_u, N]
        self.k_r, self.k_u = r.shape[0], u.shape[0]
        self.order_r = np.argsort(r, axis=0, kind="stable").T      # [N, K_r] model ids, sorted
        self.order_u = np.argsort(u, axis=0, kind="stable").T
        self.rs = np.take_along_axis(r.T, self.order_r, axis=1)    # [N, K_r]
        self.us = np.take_along_axis(u.T, self.order_u, axis=1)
        both = np.concatenate([self.rs, self.us], axis=1)
        order = np.argsort(both, axis=1, kind="stable")
        model = np.concatenate([self.order_r, self.order_u + self.k_r], axis=1)
        self.mid = np.take_along_axis(model, order, axis=1)         # [N, K_r + K_u]; u: id + K_r
        self.merged = _Merged(np.take_along_axis(both, order, axis=1), self.mid < self.k_r)

    @staticmethod
    def _stats(sorted_vals: np.ndarray, w: np.ndarray):
        """(extremes ``[n, 2]``, median ``[n]``) of the multisets: values ``[n, K]`` sorted, each
        repeated w ``[n, K]`` times (every row of w sums to K), as np.median would give them."""
        n, k = w.shape
        rows = np.arange(n)
        drawn = w > 0
        lo = np.argmax(drawn, axis=1)
        hi = k - 1 - np.argmax(drawn[:, ::-1], axis=1)
        cw = np.cumsum(w, axis=1)

        def at_rank(q):                                             # value of rank q (0-based)
            return sorted_vals[rows, np.sum(cw <= q, axis=1)]
        med = at_rank(k // 2) if k % 2 else (at_rank(k // 2 - 1) + at_rank(k // 2)) / 2
        return np.stack([sorted_vals[rows, lo], sorted_vals[rows, hi]], axis=1), med

    def sample(self, draws: list) -> tuple:
        """Inputs of ``_epsilons_core`` for several draws at once, each ``(idx_r [K_r], idx_u
        [K_u], ex)``: the models drawn and the examples. Row j of the output is one example of
        one draw, counted with that draw's models: (ext_r, ext_u, med_r, med_u, merged)."""
        ex = np.concatenate([e for _, _, e in draws])                                   # [R]
        w = np.repeat(np.stack([np.concatenate([np.bincount(i_r, minlength=self.k_r),
                                                np.bincount(i_u, minlength=self.k_u)]) for i_r, i_u, _ in draws]),
                      [len(e) for _, _, e in draws], axis=0)                            # [R, K_r + K_u]
        ext_r, med_r = self._stats(self.rs[ex], np.take_along_axis(w[:, :self.k_r], self.order_r[ex], axis=1))
        ext_u, med_u = self._stats(self.us[ex], np.take_along_axis(w[:, self.k_r:], self.order_u[ex], axis=1))
        mid = self.mid[ex]
        wm = np.take_along_axis(w, mid, axis=1)
        w_r = np.where(mid < self.k_r, wm, 0)
        self.merged.set_weights(w_r, wm - w_r, key_row=ex)
        return ext_r, ext_u, med_r, med_u, self.merged


def _check_model_acc(name: str, v, k: int, reference: bool) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (k,):
        raise ValueError(f"{name} must have shape [{k}] (one accuracy per model), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite accuracies")
    if reference and np.any(a <= 0):
        raise ValueError(f"{name} holds reference (retrained) accuracies and must be > 0")
    if np.any(a < 0):
        raise ValueError(f"{name} must be >= 0")
    return a


def score_interval(retrain_conf, unlearned_conf, retain_acc_u, retain_acc_r, test_acc_u, test_acc_r,
                   n_boot: int = N_BOOT, seed: int = 0, level: float = BOOT_LEVEL,
                   recentre: bool = True) -> tuple[float, float]:
    """Bootstrap interval of the final score: ``(low, high)``.

    Each of ``n_boot`` replicates (default ``N_BOOT`` = 100) draws, with replacement and
    independently, the retrained models (K_r of them), the unlearned models (K_u) and the
    forget examples (N); a drawn model brings its confidences and its accuracies (1-D arrays,
    one accuracy per model, in percent). The replicate's score is ``final_score`` of the
    replicate: F with k = K_u, mean accuracies of the drawn models. Duplicated models are fine
    for the formulas (a model drawn twice counts twice).

    The interval is the ``(1 - level)/2`` and ``(1 + level)/2`` percentiles of the replicates,
    moved by the bootstrap estimate of bias (``recentre=True``): point estimate minus the mean
    of the replicates. The move is needed because resampling models with replacement is biased
    for this statistic: duplicated models make clumps of equal confidences in the tails, which
    the attack reads as evidence, so replicates have higher ε and lower F than fresh samples of
    K models (two identical populations: F ≈ 0.19, replicates ≈ 0.14 at K = 128 to 512), and
    the plain percentile interval (``recentre=False``) then often lies entirely below the score.

    A replicate needs only the points of each example, not its exact ε: the rule search stops
    as soon as no rule can move ε into a higher scoring bucket, and each distinct drawn example
    is computed once. Deterministic for a given seed. Roughly 50 ms per replicate at K = 512,
    N = 500 on one CPU core.
    """
    r, u = _check_confs(retrain_conf, unlearned_conf)
    k_r, n = r.shape
    k_u = u.shape[0]
    rau = _check_model_acc("retain_acc_u", retain_acc_u, k_u, False)
    rar = _check_model_acc("retain_acc_r", retain_acc_r, k_r, True)
    tau = _check_model_acc("test_acc_u", test_acc_u, k_u, False)
    tar = _check_model_acc("test_acc_r", test_acc_r, k_r, True)
    _check_boot(n_boot, level)
    scores = _replicates(r, [(u, rau, tau)], rar, tar, int(n_boot), seed)[:, 0]
    tail = (1 - float(level)) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    if recentre:
        point = competition_score(r, u, rau, rar, tau, tar)
        shift = point - float(scores.mean())
        low, high = low + shift, high + shift
    return float(low), float(high)


def _check_boot(n_boot, level) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer (got {n_boot!r})")
    if not 0 < float(level) < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")


def _replicates(r: np.ndarray, pops: list, rar: np.ndarray, tar: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Replicate final scores ``[n_boot, P]`` of P unlearned populations ``(conf [K_u, N],
    retain_acc [K_u], test_acc [K_u])`` of one K_u, against retrained models r ``[K_r, N]``. Each
    replicate draws K_r retrained models, K_u run indices and N examples (in that order) and
    scores every population on the same draws: run i of each population is drawn together."""
    k_r, n = r.shape
    k_u = pops[0][0].shape[0]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx_r = rng.integers(0, k_r, k_r)
        idx_u = rng.integers(0, k_u, k_u)
        ex, mult = np.unique(rng.integers(0, n, n), return_counts=True)
        draws.append((idx_r, idx_u, ex, mult))
    resamplers = [_Resampler(r, u) for u, _, _ in pops]
    need = _bucket_need(k_u)
    scores = np.empty((n_boot, len(pops)))
    step = max(1, _EX_CHUNK // n)  # draws per batch: their examples are rows of one ε search
    for b0 in range(0, n_boot, step):
        batch = draws[b0:b0 + step]
        ends = np.cumsum([len(d[2]) for d in batch])                                  # the draws' rows end here
        mult = np.concatenate([d[3] for d in batch])                                  # [R]
        ir = np.stack([d[0] for d in batch])                                          # [B, K_r]
        iu = np.stack([d[1] for d in batch])                                          # [B, K_u]
        for p, (res, (_, rau, tau)) in enumerate(zip(resamplers, pops)):
            eps = _epsilons_core(*res.sample([d[:3] for d in batch])[:4], k_r, k_u, res.merged, DELTA, need)
            weighted = points(eps, k_u) * mult                                          # [R]
            for j, part in enumerate(np.split(weighted, ends[:-1])):
                scores[b0 + j, p] = final_score(float(np.sum(part)) / n, rau[iu[j]].mean(), rar[ir[j]].mean(),
                                                tau[iu[j]].mean(), tar[ir[j]].mean())
    return scores


def pairwise(retrain_conf, pops: list, retain_acc_r, test_acc_r, n_boot: int = PAIRED_N_BOOT, seed: int = 0,
             level: float = BOOT_LEVEL) -> dict:
    """Every pair of P methods, each scored against the same retrained models ``[K_r, N]`` on the
    same forget examples, with runs paired by seed: ``pops`` holds P tuples ``(unlearned_conf
    [K_u, N], retain_acc [K_u], test_acc [K_u])``, run i of every method made with the same seed
    (so of one K_u).

    A paired bootstrap: every replicate draws the retrained models, the run indices and the
    forget examples once and scores all P methods on that draw (``_replicates``), so what they
    share (a hard forget example, an unlucky retrained model, a seed) cancels in a difference
    instead of widening it. Returns ``scores`` ``[P]`` (the point estimates) and, for row i and
    column j (method i minus method j), ``difference``, ``ci_low`` and ``ci_high`` (the
    percentile interval of the replicate differences at ``level``, moved by point - mean, as in
    ``score_interval``) and ``p_value`` (two-sided, of "no difference": the normal tail of the
    difference over the replicates' standard deviation; continuous, so that it can be corrected
    for many comparisons at a moderate ``n_boot``; 1 where the replicates never differ and
    neither do the points, 0 where they never vary but the points differ), all ``[P, P]``."""
    r = _check_confs(retrain_conf, retrain_conf)[0]
    k_r = r.shape[0]
    rar = _check_model_acc("retain_acc_r", retain_acc_r, k_r, True)
    tar = _check_model_acc("test_acc_r", test_acc_r, k_r, True)
    checked = []
    for i, (conf, retain_acc, test_acc) in enumerate(pops):
        u = _check_confs(r, conf)[1]
        checked.append((u, _check_model_acc(f"method {i} retain_acc", retain_acc, u.shape[0], False),
                        _check_model_acc(f"method {i} test_acc", test_acc, u.shape[0], False)))
    if len(checked) < 2 or len({u.shape for u, _, _ in checked}) != 1:
        raise ValueError("the methods must be two or more and hold the same runs to be paired: shapes "
                         f"{[u.shape for u, _, _ in checked]}")
    _check_boot(n_boot, level)
    point = np.array([competition_score(r, u, rau, rar, tau, tar) for u, rau, tau in checked])   # [P]
    reps = _replicates(r, checked, rar, tar, int(n_boot), seed)                  # [n_boot, P]
    d = reps[:, :, None] - reps[:, None, :]                                      # [n_boot, P, P]
    diff = point[:, None] - point[None, :]                                       # [P, P]
    tail = (1 - float(level)) / 2 * 100
    shift = diff - d.mean(axis=0)
    low, high = np.percentile(d, [tail, 100 - tail], axis=0) + shift
    sd = d.std(axis=0, ddof=1) if n_boot > 1 else np.zeros_like(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(diff) / sd
    p = np.vectorize(lambda x: math.erfc(x / math.sqrt(2)))(z)
    p = np.where(sd > 0, p, np.where(diff == 0, 1.0, 0.0))
    return {"scores": point, "difference": diff, "ci_low": low, "ci_high": high, "p_value": p,
            "n_boot": int(n_boot), "level": float(level)}


def paired_difference(retrain_conf, a: tuple, b: tuple, retain_acc_r, test_acc_r, n_boot: int = PAIRED_N_BOOT,
                      seed: int = 0, level: float = BOOT_LEVEL) -> dict:
    """Method A against method B (``pairwise`` of the two): ``difference`` (A - B), ``ci95``,
    ``p_value`` and the two scores."""
    out = pairwise(retrain_conf, [a, b], retain_acc_r, test_acc_r, n_boot, seed, level)
    return {"difference": float(out["difference"][0, 1]),
            "ci95": [float(out["ci_low"][0, 1]), float(out["ci_high"][0, 1])],
            "p_value": float(out["p_value"][0, 1]), "score_a": float(out["scores"][0]),
            "score_b": float(out["scores"][1]), "n_boot": out["n_boot"], "level": out["level"]}


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of m p-values ``[m]`` for testing them together: the i-th
    smallest is multiplied by m - i (i from 0), made non-decreasing in that order, capped at 1.
    Rejecting where the adjusted value is below α keeps the chance of any false rejection among
    the m at most α, whatever their dependence."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out
