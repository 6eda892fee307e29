"""The leaderboard's store: one row per result file, in the SQLite database
`results/leaderboard.sqlite`. The result JSON files are the record; the database is an index that
can always be rebuilt from them alone (`rebuild`), and is rebuilt transparently when it is
missing, corrupt, or of another schema version. The scorer writes a result's JSON *before* it
calls `record`, so a rebuild that happens in between still finds it."""
from __future__ import annotations

import contextlib
import errno
import math
import numbers
import os
import secrets
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness import paths

SCHEMA_VERSION = 3  # 2: sandboxed, suspicious; 3: competition_budget, not_competition, public_seeds
DB_NAME = "leaderboard.sqlite"
LOCK_NAME = ".leaderboard.lock"
TABLE = "results"
BUSY_TIMEOUT_S = 60.0

REQUIRED_KEYS = ("id", "created", "profile", "submission", "score")
# score-all's ties (harness.compare.ties), one file per profile and K, beside the results.
COMPARISONS = "comparisons"

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


class _NeedsRebuild(Exception):
    """The database is missing, or of another schema version."""


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


@contextlib.contextmanager
def _locked(results_dir: Path, reading: bool = False):
    """The harness's one kind of lock (paths.locked) on results_dir/.leaderboard.lock, held while
    any connection to the database is open: readers, writers and rebuilds alike.

    There is no shared mode for readers, and none is needed: a read holds the lock for
    milliseconds. It must be exclusive for them too because a rebuild renames a new file over
    the database and deletes stale journals, which is safe only while no other process has the
    database open (SQLite finds a journal by file name; a writer still on the old file would lose
    its row, or a journal would be rolled into the new file). SQLite's own locking, with a busy
    timeout, covers other tools that open the file.

    Not reentrant: the public functions take it, the private ones expect it held. A reader in a
    folder it cannot write (no lock file can be opened there) goes on without it: SQLite's locks
    keep its read consistent, and a rebuild replaces the file whole, never edits it."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(paths.locked(results_dir / LOCK_NAME, "using the leaderboard"))
        except OSError as e:
            if not (reading and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)):
                raise
        yield


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


def stored_rows(results_dir: Path, profile: str | None = None) -> list[tuple]:
    """Every stored row (of one profile, or all), in COLUMN_NAMES order, in one read transaction;
    the database is built from the JSON files first when it is missing. No folder: no rows, and
    nothing is created."""
    results_dir = Path(results_dir)

    def read(con: sqlite3.Connection) -> list[tuple]:
        con.execute("BEGIN")
        _check_schema(con)
        sql = f"SELECT {', '.join(COLUMN_NAMES)} FROM {TABLE}"
        rows = (con.execute(sql + " WHERE profile = ?", (profile,)) if profile is not None
                else con.execute(sql)).fetchall()
        con.execute("COMMIT")
        return rows

    if not results_dir.is_dir():
        return []
    with _locked(results_dir, reading=True):
        return _with_healthy_db(results_dir, read)


def write_ties(ties: dict, results_dir: Path) -> Path:
    """Store score-all's ties (`harness.compare.ties`) where `read_ties` finds them."""
    path = Path(results_dir) / COMPARISONS / f"{ties['profile']}-k{ties['k']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.atomic_write_json(path, ties)
    return path


def read_ties(results_dir: Path) -> dict:
    """Every compared result id -> the ids the data cannot separate it from, from the stored ties
    (where two files hold an id, the newer wins; a damaged file is skipped)."""
    import json

    folder = Path(results_dir) / COMPARISONS
    found: dict = {}
    for f in sorted(folder.glob("*.json"), key=lambda f: f.stat().st_mtime) if folder.is_dir() else []:
        try:
            t = json.loads(f.read_text())
            found.update({i: [str(j) for j in t["tied_with"][i]] for i in t["ids"]})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found
