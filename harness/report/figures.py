"""The report's figures: the score's parts, ε per forget example, the worst-leaking examples,
accuracy by group and saliency maps.

Each function takes numpy arrays and returns PNG bytes. Figures are built on
``matplotlib.figure.Figure`` (no pyplot, no global state) and saved at a fixed dpi without the
"Software" stamp, so the same inputs give the same bytes.
"""
from __future__ import annotations

import io
import math
import textwrap

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from harness.metric import BUCKET_WIDTH, EPS_CAP, _scoring_limit, points

# --- Look --------------------------------------------------------------------------------------
COLORS = {"original": "#7f7f7f", "retrained": "#1f77b4", "unlearned": "#d62728"}  # colourblind-safe
MODELS = tuple(COLORS)
REFERENCE_COLOR = "0.3"        # reference lines (ratio = 1, scoring cut-off)
BEYOND_COLOR = "#bdbdbd"       # ε buckets that score nothing
BUCKET_CMAP = "cividis"        # scoring ε buckets, darker = more points
SALIENCY_CMAP = "magma"
DPI = 100
TITLE_SIZE = 13
LABEL_SIZE = 11
SMALL_SIZE = 9

# --- Sizes -------------------------------------------------------------------------------------
BAR_HEIGHT = 0.55              # score_parts: horizontal bars
GROUP_WIDTH = 0.8              # accuracy_by: the three bars of one group together
GROUP_INCHES = 0.6             # accuracy_by: figure width per group
MIN_WIDTH = 6.5                # inches
ROW_INCHES = 1.7               # worst_examples: height of one example's row
CONF_BINS = 20                 # worst_examples: histogram bins per example
CELL_INCHES = 1.7              # saliency: one image
NAME_WRAP = 22                 # saliency: characters per line of a row's name
COLORBAR_SHRINK = 0.8          # saliency: colour bar length / grid height
BEYOND_GAP = 0.5               # epsilon_histogram: space between the last scoring bucket and "beyond"
BEYOND_WIDTH = 1.0             # epsilon_histogram: width of the "beyond" bar, in ε units
LEGEND_HEADROOM = 1.35         # epsilon_histogram: y range / tallest bar, room for the legend


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _float(v) -> float:
    """v as a float; None → NaN."""
    return math.nan if v is None else float(v)


def _fmt(v: float, spec: str = ".3f") -> str:
    return "n/a" if math.isnan(v) else format(v, spec)


def _message(fig: Figure, title: str, text: str) -> bytes:
    """A figure that only says why there is nothing to draw."""
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, fontsize=TITLE_SIZE)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=LABEL_SIZE, color="0.4")
    return _png(fig)


# =============================================================================================
# Score and its parts
# =============================================================================================
def _hbars(ax, labels, values, ends, texts) -> None:
    """One unlearned-coloured bar per label (first on top), its text right of ``ends``; NaN → "n/a"."""
    y = np.arange(len(labels))[::-1]                                          # [R]
    v = np.array(values, dtype=np.float64)                                    # [R]
    ax.barh(y, np.nan_to_num(v), height=BAR_HEIGHT, color=COLORS["unlearned"], zorder=2)
    for yi, vi, end, text in zip(y, v, ends, texts):
        ax.annotate("n/a" if math.isnan(vi) else text, (end, yi), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=SMALL_SIZE, zorder=4)
    ax.set_yticks(y, labels, fontsize=LABEL_SIZE)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.grid(True, axis="x", alpha=0.3, zorder=0)


def _end(*vs: float) -> float:
    """Where a row's text starts: its largest finite value (0 if none)."""
    return max((v for v in vs if math.isfinite(v)), default=0.0)


def score_parts(score, ci, forget_quality, null_ceiling, retain_ratio, test_ratio) -> bytes:
    """The score with its 95% interval, F beside the null ceiling, and the two accuracy ratios."""
    s, f, ceil, ra, ta = map(_float, (score, forget_quality, null_ceiling, retain_ratio, test_ratio))
    lo, hi = map(_float, ci if ci is not None else (None, None))
    fig = Figure(figsize=(8.0, 4.8), dpi=DPI, layout="constrained")
    fig.suptitle("Score = F × (RA$_u$ / RA$_r$) × (TA$_u$ / TA$_r$)", fontsize=TITLE_SIZE)
    top, bottom = fig.subplots(2, 1)

    share = f" ({f / ceil:.0%} of the ceiling)" if math.isfinite(f) and math.isfinite(ceil) and ceil > 0 else ""
    _hbars(top, ["score", "forget quality F"], [s, f], [_end(s, hi), _end(f, ceil)],
           [f"{s:.4f}  95% [{_fmt(lo, '.4f')}, {_fmt(hi, '.4f')}]", f"{f:.4f}{share}"])
    if math.isfinite(s) and math.isfinite(lo) and math.isfinite(hi):
        top.errorbar(s, 1, xerr=[[max(s - lo, 0.0)], [max(hi - s, 0.0)]], fmt="none", ecolor="black",
                     capsize=5, elinewidth=1.5, zorder=3, label="95% interval")
    if math.isfinite(ceil):
        top.vlines(ceil, -BAR_HEIGHT / 2 - 0.1, BAR_HEIGHT / 2 + 0.1, colors=COLORS["retrained"], linestyles="--",
                   linewidth=2.5, zorder=3, label=f"null ceiling {ceil:.4f} (a perfect unlearner at this K)")
    top.set_xlim(0, max(1.0, _end(s, hi, f, ceil)) * 1.45)
    top.set_xlabel("value (higher is better)", fontsize=LABEL_SIZE)

    _hbars(bottom, ["RA$_u$ / RA$_r$ (retain)", "TA$_u$ / TA$_r$ (test)"], [ra, ta], [_end(ra), _end(ta)],
           [f"{ra:.4f}", f"{ta:.4f}"])
    bottom.axvline(1.0, color=REFERENCE_COLOR, linestyle=":", linewidth=1.5, zorder=3,
                   label="ratio 1: the retrained models' accuracy")
    bottom.set_xlim(0, max(1.0, _end(ra, ta)) * 1.3)
    bottom.set_xlabel("accuracy of the unlearned models / accuracy of the retrained models", fontsize=LABEL_SIZE)
    handles, labels = (a + b for a, b in zip(top.get_legend_handles_labels(), bottom.get_legend_handles_labels()))
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=SMALL_SIZE, frameon=False)
    return _png(fig)


# =============================================================================================
# ε per forget example
# =============================================================================================
def _eps_buckets(eps, k: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """``(counts [B], beyond, bucket_points [B], eps [N])`` for the B scoring buckets of width
    BUCKET_WIDTH below the cut-off; +inf counts as EPS_CAP and NaN is dropped."""
    e = np.asarray(eps, dtype=np.float64).ravel()                             # [N]
    e = np.clip(e[~np.isnan(e)], 0.0, EPS_CAP)
    n_buckets = int(round(_scoring_limit(k) / BUCKET_WIDTH))
    scores = e < _scoring_limit(k)
    counts = np.bincount(np.floor(e[scores] / BUCKET_WIDTH).astype(np.int64), minlength=n_buckets)  # [B]
    return counts, int(np.sum(~scores)), np.exp2(-np.arange(n_buckets, dtype=np.float64)), e


def _points_label(b: int) -> str:
    return "1" if b == 0 else f"$2^{{-{b}}}$"


def epsilon_histogram(eps, k) -> bytes:
    """ε per forget example in 0.5-wide buckets up to the scoring cut-off, one bar beyond it; each
    scoring bucket's points on the top axis, the mean points (= F) in the title."""
    counts, beyond, _, e = _eps_buckets(eps, k)                              # [B], int, [B], [N]
    limit = _scoring_limit(k)
    n_buckets = len(counts)
    f = float(points(e, k).mean()) if e.size else math.nan
    fig = Figure(figsize=(9.0, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(f"ε per forget example (N = {e.size}, K = {k}): mean points F = {_fmt(f, '.4f')}",
                 fontsize=TITLE_SIZE)

    left = np.arange(n_buckets) * BUCKET_WIDTH                                # [B]
    shade = np.arange(n_buckets) / max(n_buckets - 1, 1)                      # 0 = 1 point ... 1 = fewest
    ax.bar(left, counts, width=BUCKET_WIDTH, align="edge", color=colormaps[BUCKET_CMAP](0.15 + 0.75 * shade),
           edgecolor="white", linewidth=0.8, zorder=2, label="scores $2^{-b}$ points (bucket b)" if n_buckets else None)
    beyond_left = limit + BEYOND_GAP
    ax.bar(beyond_left, beyond, width=BEYOND_WIDTH, align="edge", color=BEYOND_COLOR, hatch="//",
           edgecolor="0.5", linewidth=0.8, zorder=2, label=f"scores 0 (ε ≥ {limit:g})")
    for x, c in zip(np.append(left + BUCKET_WIDTH / 2, beyond_left + BEYOND_WIDTH / 2), np.append(counts, beyond)):
        if c:
            ax.annotate(str(int(c)), (x, c), xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=SMALL_SIZE)
    ax.axvline(limit, color=REFERENCE_COLOR, linestyle="--", linewidth=1.2, zorder=3,
               label=f"scoring cut-off ε = ceil(ln(K − 1)) = {limit:g}")

    ticks = np.arange(0, limit + BUCKET_WIDTH / 2, 1.0)
    ax.set_xticks(np.append(ticks, beyond_left + BEYOND_WIDTH / 2),
                  [f"{t:g}" for t in ticks] + [f"beyond\n(≥ {limit:g})"], fontsize=SMALL_SIZE)
    ax.set_xlim(-0.25, beyond_left + BEYOND_WIDTH + 0.25)
    ax.set_ylim(0, max(int(counts.max(initial=0)), beyond, 1) * LEGEND_HEADROOM)
    ax.set_xlabel(f"ε (buckets of {BUCKET_WIDTH:g})", fontsize=LABEL_SIZE)
    ax.set_ylabel("forget examples", fontsize=LABEL_SIZE)
    ax.grid(True, axis="y", alpha=0.3, zorder=0)
    if n_buckets:
        top = ax.secondary_xaxis("top")
        top.set_xticks(left + BUCKET_WIDTH / 2, [_points_label(b) for b in range(n_buckets)], fontsize=SMALL_SIZE)
        top.set_xlabel("points per example in the bucket", fontsize=SMALL_SIZE)
    ax.legend(loc="upper center", fontsize=SMALL_SIZE, frameon=False)
    return _png(fig)


# =============================================================================================
# Worst-leaking examples
# =============================================================================================
def _eps_text(e: float) -> str:
    return "∞" if math.isinf(e) else _fmt(e, ".2f")


def worst_examples(images, conf_retrained, conf_unlearned, eps, names) -> bytes:
    """One row per example: the image, then the retrained and unlearned models' confidences on it
    as overlaid histograms, titled with its name and ε."""
    imgs = np.asarray(images)                                                 # [M, H, W, 3]
    conf = {"retrained": np.asarray(conf_retrained, dtype=np.float64),        # [K_r, M]
            "unlearned": np.asarray(conf_unlearned, dtype=np.float64)}        # [K_u, M]
    e = np.asarray(eps, dtype=np.float64).ravel()                             # [M]
    m = len(imgs)
    title = "Worst-leaking forget examples: confidence of every model on the example"
    fig = Figure(figsize=(8.5, ROW_INCHES * max(m, 1) + 0.9), dpi=DPI, layout="constrained")
    if m == 0:
        return _message(fig, title, "no examples")
    fig.suptitle(title, fontsize=TITLE_SIZE)
    axes = fig.subplots(m, 2, squeeze=False, width_ratios=(1, 5))             # [M, 2]
    for i, (ax_img, ax) in enumerate(axes):
        ax_img.imshow(imgs[i], interpolation="nearest")
        ax_img.set_axis_off()
        values = {p: c[:, i][np.isfinite(c[:, i])] for p, c in conf.items()}  # p -> [K_p] finite
        pooled = np.concatenate(list(values.values()))
        if pooled.size:
            bins = np.histogram_bin_edges(pooled, bins=CONF_BINS)
            for p, v in values.items():
                ax.hist(v, bins=bins, histtype="stepfilled", color=COLORS[p], alpha=0.35, zorder=2)
                ax.hist(v, bins=bins, histtype="step", color=COLORS[p], linewidth=1.5, zorder=3,
                        label=f"{p} models")
        else:
            ax.text(0.5, 0.5, "no finite confidences", ha="center", va="center", transform=ax.transAxes,
                    fontsize=SMALL_SIZE, color="0.4")
        ax.set_title(f"{names[i]}: ε = {_eps_text(e[i])}", fontsize=LABEL_SIZE, loc="left")
        ax.set_ylabel("models", fontsize=SMALL_SIZE)
        ax.tick_params(labelsize=SMALL_SIZE)
        ax.grid(True, axis="x", alpha=0.3, zorder=0)
    axes[-1, 1].set_xlabel("confidence: log p(true class) − log p(any other class)", fontsize=LABEL_SIZE)
    if axes[0, 1].get_legend_handles_labels()[0]:
        axes[0, 1].legend(loc="best", fontsize=SMALL_SIZE, frameon=False)
    return _png(fig)


# =============================================================================================
# Accuracy by group
# =============================================================================================
def accuracy_by(groups, title, xlabel) -> bytes:
    """Grouped bars of forget accuracy (%) per label, one bar per model population; NaN → "n/a"."""
    labels = [str(g) for g in groups]
    acc = np.array([[_float((v or {}).get(p)) for p in MODELS] for v in groups.values()],
                   dtype=np.float64).reshape(len(labels), len(MODELS))       # [G, 3]
    fig = Figure(figsize=(max(MIN_WIDTH, GROUP_INCHES * len(labels) + 1.5), 4.8), dpi=DPI, layout="constrained")
    if not labels:
        return _message(fig, title, "no groups")
    fig.suptitle(title, fontsize=TITLE_SIZE)
    ax = fig.add_subplot()
    x = np.arange(len(labels))                                                # [G]
    width = GROUP_WIDTH / len(MODELS)
    for j, p in enumerate(MODELS):
        pos = x + (j - (len(MODELS) - 1) / 2) * width                         # [G]
        ax.bar(pos, np.nan_to_num(acc[:, j]), width=width, color=COLORS[p], label=p, zorder=2)
        for xi in pos[np.isnan(acc[:, j])]:
            ax.text(xi, 1, "n/a", rotation=90, ha="center", va="bottom", fontsize=SMALL_SIZE - 1, color="0.3")
    long_labels = max(map(len, labels)) > 4
    ax.set_xticks(x, labels, fontsize=SMALL_SIZE, rotation=45 if long_labels else 0,
                  ha="right" if long_labels else "center")
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(0, 105)
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel("forget accuracy (%)", fontsize=LABEL_SIZE)
    ax.grid(True, axis="y", alpha=0.3, zorder=0)
    fig.legend(loc="outside right upper", fontsize=SMALL_SIZE, frameon=False)  # beside: clears the title
    return _png(fig)


# =============================================================================================
# Saliency
# =============================================================================================
def saliency(images, maps, names) -> bytes:
    """A grid: one row per image, the image then each model's input-gradient map (each scaled to
    its own max, magma)."""
    imgs = np.asarray(images)                                                 # [M, H, W, 3]
    models = [p for p in MODELS if p in maps] + [p for p in maps if p not in COLORS]
    m = len(imgs)
    title = "Saliency: |∂ true-class logit / ∂ pixel|, each map scaled to its own max"
    fig = Figure(figsize=(CELL_INCHES * (1 + len(models)) + 1.6, CELL_INCHES * max(m, 1) + 0.8), dpi=DPI,
                 layout="constrained")
    if m == 0:
        return _message(fig, title, "no images")
    fig.suptitle(title, fontsize=LABEL_SIZE)
    axes = fig.subplots(m, 1 + len(models), squeeze=False)                    # [M, 1 + P]
    for ax, head in zip(axes[0], ["image", *models]):
        ax.set_title(head, fontsize=LABEL_SIZE, color=COLORS.get(head, "black"))
    shown = None
    for i, row in enumerate(axes):
        row[0].imshow(imgs[i], interpolation="nearest")
        row[0].set_ylabel(textwrap.fill(str(names[i]), NAME_WRAP), fontsize=SMALL_SIZE)
        for ax, p in zip(row[1:], models):
            a = np.abs(np.asarray(maps[p][i], dtype=np.float64))              # [H, W]
            a = np.where(np.isfinite(a), a, 0.0)
            peak = a.max(initial=0.0)
            shown = ax.imshow(a / peak if peak > 0 else a, cmap=SALIENCY_CMAP, vmin=0.0, vmax=1.0,
                              interpolation="nearest")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    if shown is not None:
        fig.colorbar(shown, ax=axes, shrink=COLORBAR_SHRINK, label="gradient magnitude / map's max")
    return _png(fig)
