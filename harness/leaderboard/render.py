"""The leaderboard's views of `table`'s DataFrame: a fixed-width text table and a plot."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from harness import paths

if TYPE_CHECKING:  # pandas and matplotlib are imported where they are used: `record` stays light
    import pandas as pd


def _isna(x) -> bool:
    import pandas as pd

    return x is None or bool(pd.isna(x))


def _fmt(x, spec: str) -> str:
    return "-" if _isna(x) else format(x, spec)


def _sig2(x) -> str:
    """Two significant digits, without exponent for ordinary durations (0.035, 1.2, 120, 1200)."""
    if _isna(x):
        return "-"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 10:
        return f"{round(x, 1 - int(math.floor(math.log10(abs(x))))):.0f}"
    return f"{x:.2g}"


def _profile_label(df) -> str | None:
    profile = df.attrs.get("profile")
    if profile is None and len(df) and df["profile"].nunique() == 1:
        profile = df["profile"].iloc[0]
    return profile


def render(df: "pd.DataFrame") -> str:
    """A fixed-width text table of `table`'s DataFrame, with a footer on reading it."""
    import pandas as pd

    profile = _profile_label(df)
    if df.empty:
        where = f" for profile {profile!r}" if profile else ""
        make = "make score SUBMISSION=submissions/finetune.py" + (f" PROFILE={profile}" if profile else "")
        return f"No results{where} yet: score a submission with `{make}`."

    def ci(lo, hi) -> str:
        return "-" if _isna(lo) or _isna(hi) else f"[{lo:.4f}, {hi:.4f}]"

    def left(values, header: str) -> tuple[str, list[str]]:
        # to_string right-aligns text; pad header and values alike so this column reads left-aligned
        values = [str(v) for v in values]
        width = max(len(header), *map(len, values))
        return header.ljust(width), [v.ljust(width) for v in values]

    sub_header, sub_values = left(df["submission"], "submission")
    out = pd.DataFrame({
        "rank": ["-" if pd.isna(v) else str(int(v)) for v in df["rank"]],
        sub_header: sub_values,
        "score": [_fmt(v, ".4f") for v in df["score"]],
        "95% CI": [ci(lo, hi) for lo, hi in zip(df["ci95_low"], df["ci95_high"])],
        "F": [_fmt(v, ".4f") for v in df["forget_quality"]],
        "F/null": [_fmt(v, ".2f") for v in df["relative_forget_quality"]],
        "retain%": [_fmt(v, ".1f") for v in df["retain_acc"]],
        "test%": [_fmt(v, ".1f") for v in df["test_acc"]],
        "s/run": [_sig2(v) for v in df["unlearning_s"]],
        "K": ["-" if pd.isna(v) else str(int(v)) for v in df["k"]],
        "created": [str(t)[:16].replace("T", " ") for t in df["created"]],
        "sha": df["sha"],
    })
    if df["tied_with"].notna().any():  # score-all compared these rows (harness.compare.ties)
        out.insert(list(out.columns).index("95% CI") + 1, "tied with", ["" if _isna(t) else t for t in df["tied_with"]])
    if df["profile"].nunique() > 1:
        out.insert(0, *left(df["profile"], "profile"))
    if df["note"].astype(bool).any():
        note_header, note_values = left(df["note"], "note")
        out[note_header] = note_values
    lines = []
    if profile:
        ks = sorted({int(k) for k in df["k"].dropna()})
        kinfo = f", K={'/'.join(map(str, ks))}" if ks else ""
        lines.append(f"Leaderboard, profile {profile!r}{kinfo}" + (" (all results)" if df.attrs.get("history") else ""))
    lines.extend(line.rstrip() for line in out.to_string(index=False).splitlines())
    lines.append("Higher score is better. Rows whose 95% intervals overlap are not a clear win: "
                 "their order may change with another K or seed.")
    if df["tied_with"].notna().any():
        lines.append("'tied with': the ranks this row's score cannot be told apart from (a paired bootstrap of every "
                     "pair, Holm-corrected, at the 5% level; made by score-all, see `harness compare`).")
    if df["off_budget"].any():
        lines.append("note: rows ranked '-' ran under another budget than the competition's (an oracle's own, a custom "
                     "one, a floor): they are shown, never ranked beside the others.")
    if (df["public_seeds"] == True).fillna(False).any():  # noqa: E712
        lines.append("note: 'public seeds' rows were scored on a pool anyone can rebuild from the public protocol "
                     "(--public-seeds): reproducible, but a submission could have derived the pool or the test split.")
    if (df["sandboxed"] == False).fillna(False).any():  # noqa: E712
        lines.append("note: 'not sandboxed' rows ran where the platform refused the sandbox: their runs could "
                     "read the cache.")
    if df["suspicious"].notna().any():
        lines.append("note: SUSPICIOUS rows have F above twice the null ceiling, out of reach of unlearning: "
                     "their runs look like copies of the retrained models.")
    for p, group in df.groupby("profile"):
        hashes = group["reference_hash"].dropna().unique()
        if len(hashes) > 1:
            lines.append(f"note: profile {p!r} mixes results from {len(hashes)} reference pools "
                         f"({', '.join(sorted(hashes))}): their scores are not strictly comparable.")
    lines.append("Created times are UTC.")
    return "\n".join(lines)


def plot(df: "pd.DataFrame", path: Path) -> Path:
    """A PNG of score (95% CI bars) against mean unlearning seconds per run, one labelled point
    per submission, written atomically to path. Returns path."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    path = Path(path)
    profile = _profile_label(df)
    ks = sorted({int(k) for k in df["k"].dropna()}) if len(df) else []
    title = "Local leaderboard"
    if profile:
        title += f", profile {profile!r}"
    elif len(df) and df["profile"].nunique() > 1:
        title += ", all profiles"
    if ks:
        title += f", K={'/'.join(map(str, ks))}"

    fig = Figure(figsize=(8.0, 5.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("unlearning seconds per run (mean)")
    ax.set_ylabel("score (higher is better), 95% CI")
    ax.grid(True, which="major", alpha=0.3)

    pts = df[df["score"].notna() & df["unlearning_s"].notna() & (df["unlearning_s"] > 0)] if len(df) else df
    if len(pts) == 0:
        ax.text(0.5, 0.5, "no results to plot" if df.empty else "no results with a score and timing",
                ha="center", va="center", transform=ax.transAxes, color="0.4")
    else:
        import pandas as pd

        when = pd.to_datetime(pts["created"], utc=True, format="ISO8601")
        latest_idx = (pts.assign(_t=when).sort_values(["_t", "id"])
                      .drop_duplicates(["profile", "submission"], keep="last").index)
        older = pts.drop(index=latest_idx)
        latest = pts.loc[latest_idx]
        if len(older):
            ax.scatter(older["unlearning_s"], older["score"], s=14, color="0.7", zorder=2,
                       label="earlier results")
        multi_profile = latest["profile"].nunique() > 1
        for off, style in ((False, dict(fmt="o", color="C0", mfc="C0", label="protocol budget")),
                           (True, dict(fmt="o", color="C3", mfc="white", label="not ranked: own or custom budget"))):
            sel = latest[latest["off_budget"] == off]
            if not len(sel):
                continue
            lo = np.nan_to_num((sel["score"] - sel["ci95_low"]).to_numpy(float), nan=0.0).clip(min=0)
            hi = np.nan_to_num((sel["ci95_high"] - sel["score"]).to_numpy(float), nan=0.0).clip(min=0)
            ax.errorbar(sel["unlearning_s"], sel["score"], yerr=[lo, hi], capsize=3, ms=6,
                        elinewidth=1, zorder=3, **style)
        x = pts["unlearning_s"].to_numpy(float)
        budgets = latest.loc[~latest["off_budget"], "budget_s"].dropna().unique()
        if len(budgets) == 1 and budgets[0] > 0:  # one protocol budget: show where it lies
            ax.axvline(budgets[0], color="0.5", ls="--", lw=1, zorder=1,
                       label=f"time budget per run ({_sig2(budgets[0])} s)")
            x = np.append(x, budgets[0])
        log_x = x.max() / x.min() > 20
        if log_x:
            ax.set_xscale("log")
            ax.margins(x=0.08)
            lo_x, hi_x = np.log10(x.min()), np.log10(x.max())
            where = lambda v: (np.log10(v) - lo_x) / (hi_x - lo_x)  # noqa: E731
        else:
            ax.set_xlim(0, x.max() * 1.15)
            where = lambda v: v / x.max()  # noqa: E731
        for _, r in latest.iterrows():
            name = r["submission_name"]
            if not isinstance(name, str) or not name:
                name = Path(str(r["submission"])).stem
            if multi_profile:
                name = f"{name} ({r['profile']})"
            right_edge = where(r["unlearning_s"]) > 0.8  # label to the left, inside the figure
            ax.annotate(name, (r["unlearning_s"], r["score"]), xytext=(-6 if right_edge else 6, 5),
                        textcoords="offset points", ha="right" if right_edge else "left",
                        fontsize=8, zorder=4)
        ax.margins(y=0.15)
        ax.legend(loc="best", fontsize=8, frameon=False)

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    paths.atomic_write_bytes(path, buf.getvalue())
    return path
