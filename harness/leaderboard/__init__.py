"""The local leaderboard, a pure function of the result files in the results folder: `store`
indexes them in SQLite (the JSON files are the record, the database is rebuilt from them),
`rank` turns the stored rows into the ranking, `render` prints and plots it."""
# Callers say leaderboard.record/rebuild/table/render/plot; `render` here is the function, which
# shadows the module of the same name as an attribute (import that one by its full name).
from harness.leaderboard.rank import TABLE_COLUMNS, rank_list, ranked, table
from harness.leaderboard.render import plot, render
from harness.leaderboard.store import (
    COLUMN_NAMES, COLUMNS, DB_NAME, LOCK_NAME, REQUIRED_KEYS, SCHEMA_VERSION, read_ties, rebuild, record, stored_rows,
    write_ties,
)

__all__ = [
    "COLUMNS", "COLUMN_NAMES", "DB_NAME", "LOCK_NAME", "REQUIRED_KEYS", "SCHEMA_VERSION", "TABLE_COLUMNS",
    "plot", "rank_list", "ranked", "read_ties", "rebuild", "record", "render", "stored_rows", "table", "write_ties",
]
