"""The ranking: a pure function from the stored rows to the table that is printed and plotted."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.leaderboard import store

if TYPE_CHECKING:  # pandas is imported where it is used: `record` stays light
    import pandas as pd

# The columns of `table`'s DataFrame, in order.
TABLE_COLUMNS = (
    "rank", "submission", "score", "ci95_low", "ci95_high", "forget_quality", "null_forget_quality",
    "relative_forget_quality", "retain_acc", "test_acc", "forget_acc", "ref_retain_acc",
    "ref_test_acc", "ref_forget_acc", "retain_acc_ratio", "test_acc_ratio", "unlearning_s",
    "total_s", "k", "created", "sha", "id", "profile", "submission_name", "protocol_version",
    "reference_hash", "budget_s", "budget_fraction", "over_budget_runs", "protocol_budget",
    "sandboxed", "suspicious", "competition_budget", "not_competition", "public_seeds", "off_budget", "note",
    "tied_with",
)


def rank_list(ranks) -> str:
    """Ranks as text, runs of three or more as a span: [1, 2, 3, 4, 6, 8, 9] -> "1-4, 6, 8, 9"."""
    out, run = [], []
    for r in sorted(ranks):
        if run and r != run[-1] + 1:
            out.append(run)
            run = []
        run.append(r)
    out += [run] if run else []
    return ", ".join(f"{g[0]}-{g[-1]}" if len(g) >= 3 else ", ".join(map(str, g)) for g in out)


def table(results_dir: Path, profile: str | None = None, history: bool = False) -> "pd.DataFrame":
    """The ranking of the results stored in results_dir (see `ranked`). The database is built from
    the JSON files first when it is missing."""
    return ranked(store.stored_rows(Path(results_dir), profile), profile, history, store.read_ties(Path(results_dir)))


def ranked(rows: list[tuple], profile: str | None = None, history: bool = False,
           ties: dict | None = None) -> "pd.DataFrame":
    """The ranking of stored rows (store.COLUMN_NAMES order), best score first (per profile when
    profile is None). Without history, each submission (same profile and path) shows once, with
    its latest result; with history, every result shows. `ties` (store.read_ties: id -> the ids
    the data cannot separate it from) fills `tied_with`: the ranks of the rows shown that a
    ranked row is tied with ("none" when it is separated from all), None where it was not
    compared."""
    import pandas as pd

    df = pd.DataFrame.from_records(rows, columns=list(store.COLUMN_NAMES))
    for name, sqltype in store.COLUMNS:
        if sqltype == "REAL":
            df[name] = pd.to_numeric(df[name], errors="coerce").astype(float)
    df["_t"] = pd.to_datetime(df["created"], utc=True, format="ISO8601")
    df = df.sort_values(["_t", "id"], kind="stable")
    if not history:
        df = df.drop_duplicates(["profile", "submission"], keep="last")
    # Ranked: the results under the competition's budget, best first. The others (an oracle's own
    # budget, a custom one) follow, unranked: a different rule is never ranked beside it.
    df["_ranked"] = (df["competition_budget"] == 1).fillna(False).astype(bool)
    df["_neg_score"] = -df["score"]  # NaN scores sort last
    df["_unranked"] = ~df["_ranked"]
    df = df.sort_values(["profile", "_unranked", "_neg_score", "_t", "id"], na_position="last", kind="stable")
    df["rank"] = (df.groupby("profile")["_ranked"].cumsum()).where(df["_ranked"]).astype("Int64")

    df["sha"] = df["submission_sha256"].map(lambda s: s[:8] if isinstance(s, str) else "")
    df["k"] = df["k"].astype("Int64")
    df["over_budget_runs"] = df["over_budget_runs"].astype("Int64")
    df["protocol_budget"] = df["protocol_budget"].map(
        lambda v: None if v is None or pd.isna(v) else bool(v)).astype("boolean")
    df["off_budget"] = ~df["_ranked"]
    for flag in ("competition_budget", "public_seeds"):
        df[flag] = df[flag].map(lambda v: None if v is None or pd.isna(v) else bool(v)).astype("boolean")
    df["sandboxed"] = df["sandboxed"].map(lambda v: None if v is None or pd.isna(v) else bool(v)).astype("boolean")

    def note(why, n, sandboxed, suspicious, public) -> str:
        parts = []
        if isinstance(suspicious, str) and suspicious:
            parts.append("SUSPICIOUS: F far above the null ceiling")
        if sandboxed is False:
            parts.append("not sandboxed")
        if isinstance(why, str) and why:
            parts.append(f"not ranked: {why}")
        if public is True:
            parts.append("public seeds")
        if not pd.isna(n) and n > 0:
            parts.append(f"{int(n)} run{'s' if n != 1 else ''} over the budget, within its tolerance")
        return "; ".join(parts)

    df["note"] = [note(w if not r else None, n, None if pd.isna(b) else bool(b), x, None if pd.isna(p) else bool(p))
                  for w, r, n, b, x, p in zip(df["not_competition"].where(df["not_competition"].notna(), "not the "
                                                                          "competition's budget"), df["_ranked"],
                                              df["over_budget_runs"], df["sandboxed"], df["suspicious"],
                                              df["public_seeds"])]
    rank_of = {i: int(r) for i, r in zip(df["id"], df["rank"]) if not pd.isna(r)}
    df["tied_with"] = [None if pd.isna(r) or i not in (ties or {}) else
                       (rank_list(rank_of[j] for j in ties[i] if j in rank_of) or "none")
                       for i, r in zip(df["id"], df["rank"])]
    df = df[list(TABLE_COLUMNS)].reset_index(drop=True)
    df.attrs.update(profile=profile, history=history)
    return df
