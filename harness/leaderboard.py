"""The local leaderboard: a pure function of the result files in the results folder.

Every score the harness computes is one JSON file, `results/<id>.json`, written atomically by the
scorer, and one row in the SQLite database `results/leaderboard.sqlite`. The JSON files are the
record; the database is an index of them that can always be rebuilt from them alone (`rebuild`),
and is rebuilt transparently when it is missing, corrupt, or of another schema version.

Concurrency: every open of the database happens under an exclusive lock on the file
`results/.leaderboard.lock` (flock; msvcrt.locking on Windows), so a rebuild, which builds a new
database in a temporary file and renames it over the old one, never pulls the file out from under
another process's connection (SQLite cannot survive that: the journal is found by file name).
SQLite's own locking, with a busy timeout, covers other tools that open the file.

The scorer must write a result's JSON *before* it calls `record`, so that any rebuild that happens
in between still finds it.
"""
from __future__ import annotations

import contextlib
import errno
import io
import math
import numbers
import os
import secrets
import sqlite3
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from harness import paths

if TYPE_CHECKING:  # pandas and matplotlib are imported where they are used: `record` stays light
    import pandas as pd

SCHEMA_VERSION = 3  # 2: sandboxed, suspicious; 3: competition_budget, not_competition, public_seeds
DB_NAME = "leaderboard.sqlite"
LOCK_NAME = ".leaderboard.lock"
TABLE = "results"
BUSY_TIMEOUT_S = 60.0
LOCK_TIMEOUT_S = 120.0

REQUIRED_KEYS = ("id", "created", "profile", "submission", "score")

# (column, SQL type); the order is the table's.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "TEXT PRIMARY KEY"),
    ("created", "TEXT NOT NULL"),            # UTC, ISO 8601, ends in Z
    ("profile", "TEXT NOT NULL"),
    ("protocol_version", "TEXT"),
    ("reference_hash", "TEXT"),
    ("k", "INTEGER"),
    ("submission", "TEXT NOT NULL"),         # the path as given to `score`
    ("submission_name", "TEXT"),
    ("submission_sha256", "TEXT"),
    ("score", "REAL"),
    ("ci95_low", "REAL"),
    ("ci95_high", "REAL"),
    ("forget_quality", "REAL"),
    ("null_forget_quality", "REAL"),
    ("relative_forget_quality", "REAL"),
    ("retain_acc_ratio", "REAL"),
    ("test_acc_ratio", "REAL"),
    ("retain_acc", "REAL"),                  # unlearned population means, percent
    ("test_acc", "REAL"),
    ("forget_acc", "REAL"),
    ("ref_retain_acc", "REAL"),              # retrained population means, percent
    ("ref_test_acc", "REAL"),
    ("ref_forget_acc", "REAL"),
    ("unlearning_s", "REAL"),                # mean seconds of one unlearning run
    ("total_s", "REAL"),
    ("budget_s", "REAL"),
    ("budget_fraction", "REAL"),
    ("over_budget_runs", "INTEGER"),
    ("protocol_budget", "INTEGER"),          # 1, 0, or NULL when the result does not say
    ("sandboxed", "INTEGER"),                # 1 when every run had the whole sandbox, 0, or NULL (older results)
    ("suspicious", "TEXT"),                  # why F is not believable (far above the null ceiling), or NULL
    ("competition_budget", "INTEGER"),       # 1: the competition's budget, so ranked; 0: never ranked beside those
    ("not_competition", "TEXT"),             # why not (an oracle's own budget, a custom one, a floor), or NULL
    ("public_seeds", "INTEGER"),             # 1: the pool's seeds and data are public (reproducible, not secret)
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)

_CREATE_SQL = (
    f"CREATE TABLE {TABLE} (\n    "
    + ",\n    ".join(f"{name} {sqltype}" for name, sqltype in COLUMNS)
    + "\n)"
)
_INDEX_SQL = f"CREATE INDEX {TABLE}_by_submission ON {TABLE} (profile, submission, created)"
_UPSERT_SQL = (
    f"INSERT OR REPLACE INTO {TABLE} ({', '.join(COLUMN_NAMES)}) "
    f"VALUES ({', '.join('?' * len(COLUMN_NAMES))})"
)

# The columns of `table`'s DataFrame, in order.
TABLE_COLUMNS = (
    "rank", "submission", "score", "ci95_low", "ci95_high", "forget_quality", "null_forget_quality",
    "relative_forget_quality", "retain_acc", "test_acc", "forget_acc", "ref_retain_acc",
    "ref_test_acc", "ref_forget_acc", "retain_acc_ratio", "test_acc_ratio", "unlearning_s",
    "total_s", "k", "created", "sha", "id", "profile", "submission_name", "protocol_version",
    "reference_hash", "budget_s", "budget_fraction", "over_budget_runs", "protocol_budget",
    "sandboxed", "suspicious", "competition_budget", "not_competition", "public_seeds", "off_budget", "note",
)


class _NeedsRebuild(Exception):
    """The database is missing, or of another schema version."""


# --------------------------------------------------------------------------------------------
# One result -> one row


def _number(x) -> float | None:
    # numbers.Real: the scorer's dict may hold numpy scalars (np.int64 is no int) until it is JSON
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    try:
        x = float(x)
    except OverflowError:  # an integer beyond float range
        return None
    return x if math.isfinite(x) else None


def _integer(x) -> int | None:
    v = _number(x)
    return int(v) if v is not None and v == int(v) else None


def _text(x) -> str | None:
    return x if isinstance(x, str) else None


def _utc_iso(created: str) -> str:
    """`created` as UTC ISO 8601 ending in Z; ValueError when it is no timestamp of a plausible
    year (pandas' timestamps span 1677-2262 only)."""
    s = created.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(s)
        t = t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
    except OverflowError:  # an offset that moves year 1 or 9999 out of range
        raise ValueError(created) from None
    if not 1970 <= t.year <= 2200:
        raise ValueError(created)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if t.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def _row(result) -> tuple:
    """The table row of one result dict; ValueError naming the problem when it cannot be one."""
    if not isinstance(result, dict):
        raise ValueError(f"not a JSON object but {type(result).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise ValueError(f"missing required key(s): {', '.join(missing)}")
    for key in ("id", "created", "profile", "submission"):
        if not isinstance(result[key], str) or not result[key]:
            raise ValueError(f"{key!r} is not a non-empty string: {result[key]!r}")
    try:
        created = _utc_iso(result["created"])
    except ValueError:
        raise ValueError(f"'created' is not an ISO 8601 timestamp of 1970-2200: {result['created']!r}") from None
    score = result["score"]
    if score is not None and (isinstance(score, bool) or not isinstance(score, numbers.Real)):
        raise ValueError(f"'score' is not a number: {score!r}")

    ci = result.get("score_ci95")
    ci_low, ci_high = (_number(ci[0]), _number(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
    fq, null_fq = _number(result.get("forget_quality")), _number(result.get("null_forget_quality"))
    rel_fq = _number(result.get("relative_forget_quality"))
    if rel_fq is None and fq is not None and null_fq:
        rel_fq = fq / null_fq
    ref = result.get("reference") if isinstance(result.get("reference"), dict) else {}
    seconds = result.get("seconds") if isinstance(result.get("seconds"), dict) else {}
    budget = result.get("budget") if isinstance(result.get("budget"), dict) else {}
    protocol_budget = budget.get("protocol_budget")
    isolation = result.get("isolation") if isinstance(result.get("isolation"), dict) else {}
    values = {
        "id": result["id"],
        "created": created,
        "profile": result["profile"],
        "protocol_version": None if result.get("protocol_version") is None else str(result["protocol_version"]),
        "reference_hash": _text(result.get("reference_hash")),
        "k": _integer(result.get("k")),
        "submission": result["submission"],
        "submission_name": _text(result.get("submission_name")),
        "submission_sha256": _text(result.get("submission_sha256")),
        "score": _number(score),
        "ci95_low": ci_low,
        "ci95_high": ci_high,
        "forget_quality": fq,
        "null_forget_quality": null_fq,
        "relative_forget_quality": rel_fq,
        "retain_acc_ratio": _number(result.get("retain_acc_ratio")),
        "test_acc_ratio": _number(result.get("test_acc_ratio")),
        "retain_acc": _number(result.get("retain_acc")),
        "test_acc": _number(result.get("test_acc")),
        "forget_acc": _number(result.get("forget_acc")),
        "ref_retain_acc": _number(ref.get("retain_acc")),
        "ref_test_acc": _number(ref.get("test_acc")),
        "ref_forget_acc": _number(ref.get("forget_acc")),
        "unlearning_s": _number(seconds.get("unlearning_mean")),
        "total_s": _number(seconds.get("total")),
        "budget_s": _number(budget.get("seconds")),
        "budget_fraction": _number(budget.get("fraction")),
        "over_budget_runs": _integer(budget.get("over_budget_runs")),
        "protocol_budget": int(protocol_budget) if isinstance(protocol_budget, bool) else None,
        "sandboxed": int(sandboxed) if isinstance(sandboxed := isolation.get("sandboxed"), bool) else None,
        "suspicious": _text(result.get("suspicious")),
        # Results from before protocol 2.0 do not say: their own budget's kind stands in.
        "competition_budget": (int(budget["competition"]) if isinstance(budget.get("competition"), bool)
                               else int(protocol_budget) if isinstance(protocol_budget, bool) else None),
        "not_competition": _text(budget.get("not_competition")) or (
            "custom budget" if protocol_budget is False else None),
        "public_seeds": int(pub) if isinstance(pub := (result.get("secrets") or {}).get("public_seeds")
                                               if isinstance(result.get("secrets"), dict) else None, bool) else None,
    }
    for name, value in values.items():
        # JSON can carry lone surrogates ("\ud800"), which SQLite cannot store
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValueError(f"{name!r} is not valid Unicode text") from None
    return tuple(values[name] for name in COLUMN_NAMES)


def _scan(results_dir: Path) -> list[tuple]:
    """Rows of every result JSON in results_dir; a file that is no result is skipped with one
    warning line on stderr and left where it is."""
    rows = []
    for path in sorted(results_dir.glob("*.json")):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            rows.append(_row(paths.read_json(path)))
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested too deeply
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"warning: leaderboard: skipping {path}: {reason}", file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# Database


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def _locked(results_dir: Path, reading: bool = False):
    """Exclusive lock on results_dir/.leaderboard.lock for the duration. Every connection to the
    database is opened and closed inside it, so a rebuild can rename a new file over the old one
    safely. Reentering it from the same process would deadlock: the public functions take it, the
    private ones expect it held. A reader in a folder it cannot write goes on without it."""
    try:
        fd = os.open(results_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        if not (reading and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)):
            raise
        yield
        return
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise TimeoutError(f"leaderboard: {results_dir / LOCK_NAME} stayed locked for "
                                   f"{LOCK_TIMEOUT_S:.0f} s; is another harness process stuck?")
            time.sleep(0.01)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _connect(db: Path, create: bool = False) -> sqlite3.Connection:
    # Autocommit mode: transactions are the explicit BEGIN ... COMMIT below. mode=rw does not
    # create a missing file, so a missing database is noticed rather than made empty.
    uri = f"{Path(db).absolute().as_uri()}?mode={'rwc' if create else 'rw'}"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)


def _is_busy(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(e).lower()
    return "locked" in text or "busy" in text


def _check_schema(con: sqlite3.Connection) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise _NeedsRebuild(f"schema version {version}, not {SCHEMA_VERSION}")
    have = [r[1] for r in con.execute(f"PRAGMA table_info({TABLE})")]
    if tuple(have) != COLUMN_NAMES:
        raise _NeedsRebuild(f"table {TABLE!r} has other columns")


def _rebuild_locked(results_dir: Path) -> int:
    db = results_dir / DB_NAME
    rows = _scan(results_dir)
    # Not mkstemp (mode 0600): the database gets the permissions of any other file made here.
    tmp = str(results_dir / f".{DB_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        con = _connect(Path(tmp), create=True)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute(_CREATE_SQL)
            con.execute(_INDEX_SQL)
            con.executemany(_UPSERT_SQL, rows)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        finally:
            con.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # A journal left by a process that crashed while writing the old database belongs to the
        # old file; SQLite would "roll it back" into the new one. Under the lock nobody else has
        # the database open, so whatever side files exist are stale.
        for suffix in ("-journal", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, db)
    except BaseException:
        for p in (tmp, f"{tmp}-journal"):
            Path(p).unlink(missing_ok=True)
        raise
    return len(rows)


def _with_healthy_db(results_dir: Path, action):
    """action(connection) on the database, rebuilding it first (once) when it is missing, of
    another schema version, or not a readable SQLite database. Caller holds the lock."""
    db = results_dir / DB_NAME
    for attempt in (0, 1):
        try:
            if not db.exists():
                raise _NeedsRebuild("missing")
            con = _connect(db)
            try:
                return action(con)
            finally:
                if con.in_transaction:
                    con.rollback()
                con.close()
        except (_NeedsRebuild, sqlite3.DatabaseError) as e:
            if attempt or (isinstance(e, sqlite3.Error) and _is_busy(e)):
                raise
            if db.exists():
                print(f"warning: leaderboard: rebuilding {db} from the result files ({e})",
                      file=sys.stderr, flush=True)
            _rebuild_locked(results_dir)


def record(result: dict, results_dir: Path) -> None:
    """Insert or replace the row of result["id"] in results_dir/leaderboard.sqlite, in one
    transaction. A missing, corrupt or other-version database is rebuilt from the JSON files
    first. ValueError when the result lacks a required key."""
    row = _row(result)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)

    def upsert(con: sqlite3.Connection) -> None:
        con.execute("BEGIN IMMEDIATE")
        _check_schema(con)
        con.execute(_UPSERT_SQL, row)
        con.execute("COMMIT")

    with _locked(results_dir):
        _with_healthy_db(results_dir, upsert)


def rebuild(results_dir: Path) -> int:
    """Drop and recreate the table from every *.json in results_dir (built in a temporary file,
    then renamed over the database). Unreadable or incomplete JSON files are skipped with a
    warning on stderr, never deleted. Returns the number of rows."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    with _locked(results_dir):
        return _rebuild_locked(results_dir)


# --------------------------------------------------------------------------------------------
# Views


def table(results_dir: Path, profile: str | None = None, history: bool = False) -> "pd.DataFrame":
    """The ranking, best score first (per profile when profile is None). Without history, each
    submission (same profile and path) shows once, with its latest result; with history, every
    result shows. The database is built from the JSON files first when it is missing."""
    import pandas as pd

    results_dir = Path(results_dir)

    def read(con: sqlite3.Connection) -> list[tuple]:
        con.execute("BEGIN")
        _check_schema(con)
        sql = f"SELECT {', '.join(COLUMN_NAMES)} FROM {TABLE}"
        rows = (con.execute(sql + " WHERE profile = ?", (profile,)) if profile is not None
                else con.execute(sql)).fetchall()
        con.execute("COMMIT")
        return rows

    rows: list[tuple] = []
    if results_dir.is_dir():
        with _locked(results_dir, reading=True):
            rows = _with_healthy_db(results_dir, read)

    df = pd.DataFrame.from_records(rows, columns=list(COLUMN_NAMES))
    for name, sqltype in COLUMNS:
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
    df = df[list(TABLE_COLUMNS)].reset_index(drop=True)
    df.attrs.update(profile=profile, history=history)
    return df


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
