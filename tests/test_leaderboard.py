"""The local leaderboard against real SQLite and real files: ranking, latest-per-submission,
rebuild from JSON alone, recovery from a corrupt database or result file, rendering, the plot,
two processes recording at once, and readers and writers during rebuilds under the harness's lock."""
from __future__ import annotations

import json
import multiprocessing
import re
import sqlite3
import struct
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import leaderboard, paths

SHA = {"finetune": "3f2a9c1b" + "0" * 56, "oracle": "9e8d7c6b" + "1" * 56, "noop": "00aa11bb" + "2" * 56,
       "gradascent": "c0ffee00" + "3" * 56}


def result(name: str, score: float, created: str, *, profile: str = "default", k: int = 32,
           seconds: float = 1.2, ci: tuple[float, float] | None = None, **extra) -> dict:
    """A plausible result dict, shaped like the scorer's."""
    stamp = created.replace("-", "").replace(":", "")
    lo, hi = ci if ci is not None else (score - 0.01, score + 0.012)
    r = {
        "schema": 1, "id": f"{profile}-{name}-{SHA[name][:8]}-k{k}-{stamp}", "created": created,
        "protocol_version": "1.0", "profile": profile, "reference_hash": "a1b2c3d4e5f6", "k": k,
        "submission": f"submissions/{name}.py", "submission_name": name, "submission_sha256": SHA[name],
        "score": score, "score_ci95": [lo, hi], "forget_quality": score * 2.6, "null_forget_quality": 0.19,
        "relative_forget_quality": score * 2.6 / 0.19, "retain_acc_ratio": 0.98, "test_acc_ratio": 0.99,
        "retain_acc": 91.2, "test_acc": 60.1, "forget_acc": 70.3,
        "reference": {"retain_acc": 93.0, "test_acc": 60.5, "forget_acc": 40.2},
        "seconds": {"unlearning_mean": seconds, "total": 75.0},
        "budget": {"seconds": 2.0, "fraction": 0.2, "over_budget_runs": 0, "protocol_budget": True},
        "epsilons": [0.5, 1.0], "an_unknown_key": {"ignored": True},
    }
    r.update(extra)
    return r


def write(folder: Path, r: dict) -> Path:
    """Publish one result the way the scorer does: its JSON file first, then the row."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{r['id']}.json"
    path.write_text(json.dumps(r, indent=1))
    return path


def publish(folder: Path, r: dict) -> Path:
    path = write(folder, r)
    leaderboard.record(r, folder)
    return path


SCENARIO = [
    result("finetune", 0.031, "2026-11-26T17:35:01Z", seconds=1.2),
    result("oracle", 0.090, "2026-11-26T17:40:00Z", seconds=30.0),
    result("noop", 0.000, "2026-11-26T17:45:00Z", seconds=0.01),
    result("finetune", 0.036, "2026-11-26T18:35:01Z", seconds=1.3),     # the same submission, later
    result("gradascent", 0.020, "2026-11-26T19:00:00+01:00", seconds=0.5,  # 18:00 UTC
           budget={"seconds": 9.0, "fraction": 0.9, "over_budget_runs": 2, "protocol_budget": False}),
    result("oracle", 0.5, "2026-11-26T17:50:00Z", profile="quick", k=8),  # another profile
]


@pytest.fixture
def filled(tmp_path) -> Path:
    folder = tmp_path / "results"
    for r in SCENARIO:
        publish(folder, r)
    return folder


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.reset_index(drop=True)


def test_ranking_best_first_and_latest_per_submission(filled):
    df = leaderboard.table(filled, profile="default")
    # A custom budget is never ranked beside the protocol's: it follows the ranked rows, unranked.
    assert list(df["submission"]) == ["submissions/oracle.py", "submissions/finetune.py",
                                      "submissions/noop.py", "submissions/gradascent.py"]
    assert list(df["rank"].astype(object).where(df["rank"].notna(), None)) == [1, 2, 3, None]
    assert df["score"][:3].is_monotonic_decreasing
    fine = df.set_index("submission").loc["submissions/finetune.py"]
    assert fine["score"] == pytest.approx(0.036) and fine["created"] == "2026-11-26T18:35:01Z"
    assert fine["sha"] == "3f2a9c1b" and fine["k"] == 32
    assert fine["ci95_low"] == pytest.approx(0.026) and fine["ci95_high"] == pytest.approx(0.048)
    assert fine["unlearning_s"] == pytest.approx(1.3)
    assert fine["relative_forget_quality"] == pytest.approx(0.036 * 2.6 / 0.19)
    for column in ("rank", "submission", "score", "ci95_low", "ci95_high", "forget_quality",
                   "relative_forget_quality", "retain_acc", "test_acc", "unlearning_s", "k",
                   "created", "sha", "id", "off_budget"):
        assert column in df.columns, column
    # The other profile's result stays out; the custom budget is flagged.
    assert set(df["profile"]) == {"default"}
    assert list(df.loc[df["off_budget"], "submission"]) == ["submissions/gradascent.py"]
    assert "not ranked: custom budget" in df.loc[df["off_budget"], "note"].item()
    assert leaderboard.table(filled, profile="quick")["score"].tolist() == [0.5]
    assert len(leaderboard.table(filled)) == 5  # no profile: every profile, ranked within each


def test_history_shows_every_result(filled):
    df = leaderboard.table(filled, profile="default", history=True)
    assert len(df) == 5
    assert sorted(df.loc[df["submission"] == "submissions/finetune.py", "score"]) == [0.031, 0.036]
    assert list(df["rank"].astype(object).where(df["rank"].notna(), None)) == [1, 2, 3, 4, None]
    assert df["score"][:4].is_monotonic_decreasing


def test_recording_the_same_id_again_replaces_the_row(filled):
    again = dict(SCENARIO[2], score=0.2)
    publish(filled, again)
    df = leaderboard.table(filled, profile="default", history=True)
    assert len(df) == 5
    assert df.loc[df["id"] == again["id"], "score"].item() == 0.2


def test_rebuild_from_json_alone_gives_the_same_table(filled):
    incremental = {h: leaderboard.table(filled, "default", history=h) for h in (False, True)}
    (filled / leaderboard.DB_NAME).unlink()
    assert leaderboard.rebuild(filled) == len(SCENARIO)
    for h, df in incremental.items():
        pd.testing.assert_frame_equal(comparable(leaderboard.table(filled, "default", history=h)), comparable(df))
    # A missing database is built from the JSON files on first read, too.
    (filled / leaderboard.DB_NAME).unlink()
    pd.testing.assert_frame_equal(leaderboard.table(filled, "default"), incremental[False])
    assert not list(filled.glob(".*.tmp")), "a temporary database was left behind"


def test_corrupt_database_is_rebuilt_transparently(filled, capsys):
    expected = leaderboard.table(filled, "default")
    db = filled / leaderboard.DB_NAME
    db.write_bytes(b"\x00garbage, not SQLite\xff" * 500)
    pd.testing.assert_frame_equal(leaderboard.table(filled, "default"), expected)
    assert "rebuilding" in capsys.readouterr().err
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == leaderboard.SCHEMA_VERSION

    # record() on a corrupt database rebuilds it too, and keeps the new row.
    db.write_bytes(b"junk" * 10)
    late = result("noop", 0.01, "2026-11-27T09:00:00Z", seconds=0.02)
    publish(filled, late)
    assert late["id"] in set(leaderboard.table(filled, "default")["id"])
    assert len(leaderboard.table(filled, "default", history=True)) == 6


def test_database_of_another_schema_version_is_rebuilt(filled):
    expected = leaderboard.table(filled, "default")
    db = filled / leaderboard.DB_NAME
    db.unlink()
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE results (id TEXT PRIMARY KEY, score REAL)")
        con.execute("PRAGMA user_version = 99")
    pd.testing.assert_frame_equal(leaderboard.table(filled, "default"), expected)


def test_corrupt_or_incomplete_json_is_skipped_with_a_warning_and_kept(filled, capsys):
    broken = filled / "default-broken-20261126T200000Z.json"
    broken.write_text('{"id": "default-broken", "score": 0.5, ')  # cut off mid-write
    partial = write(filled, {k: v for k, v in result("noop", 0.9, "2026-11-26T21:00:00Z").items()
                             if k != "submission"})
    capsys.readouterr()
    assert leaderboard.rebuild(filled) == len(SCENARIO)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert any(broken.name in line for line in err) and any(partial.name in line for line in err)
    assert any("submission" in line for line in err if partial.name in line)
    assert broken.exists() and partial.exists()
    assert list(leaderboard.table(filled, "default")["score"])[0] == 0.090


def test_record_rejects_a_result_without_required_keys(tmp_path):
    with pytest.raises(ValueError, match="score"):
        leaderboard.record({"id": "x", "created": "2026-11-26T17:35:01Z", "profile": "default",
                            "submission": "s.py"}, tmp_path)


def test_render(filled):
    text = leaderboard.render(leaderboard.table(filled, "default"))
    lines = text.splitlines()
    assert "default" in lines[0] and "K=32" in lines[0]
    body = "\n".join(lines[1:6])
    assert "0.0360" in body and "[0.0260, 0.0480]" in body  # score 4 decimals, interval as [low, high]
    assert "91.2" in body and "60.1" in body                # accuracies 1 decimal
    assert " 30 " in body and "0.01" in body and "1.3" in body  # seconds, 2 significant digits
    assert "3f2a9c1b" in body and "custom budget" in body
    assert lines[2].lstrip().startswith("1 submissions/oracle.py")
    assert "overlap" in text and "not a clear win" in text


def test_ties_stored_by_score_all_show_as_the_ranks_a_row_is_tied_with(filled):
    before = leaderboard.table(filled, "default")
    assert before["tied_with"].isna().all() and "tied with" not in leaderboard.render(before)
    ids = dict(zip(before["submission_name"], before["id"]))
    oracle, fine, noop = ids["oracle"], ids["finetune"], ids["noop"]
    stale = SCENARIO[0]["id"]                          # finetune's older result: not shown, so not a rank
    leaderboard.write_ties({"profile": "default", "k": 32, "ids": [oracle, fine, noop, stale],
                            "tied_with": {oracle: [fine, stale], fine: [oracle], noop: [], stale: [oracle]}}, filled)
    (filled / "comparisons" / "damaged.json").write_text("{")   # skipped, never fatal
    df = leaderboard.table(filled, "default")
    shown = [None if pd.isna(t) else t for t in df["tied_with"]]
    assert shown == ["2", "1", "none", None]           # gradascent: another budget, never compared
    text = leaderboard.render(df)
    header = next(line for line in text.splitlines() if line.lstrip().startswith("rank"))
    assert "95% CI tied with" in " ".join(header.split())
    assert re.search(r"\] +2 +0\.", next(line for line in text.splitlines() if "oracle.py" in line))
    assert "Holm" in text
    # A newer comparison of the same results replaces the older one's word.
    time.sleep(0.01)
    leaderboard.write_ties({"profile": "default", "k": 32, "ids": [oracle, fine],
                            "tied_with": {oracle: [], fine: []}}, filled / "again")
    (filled / "again" / "comparisons" / "default-k32.json").replace(filled / "comparisons" / "newer.json")
    assert list(leaderboard.table(filled, "default")["tied_with"][:3]) == ["none", "none", "none"]


@pytest.mark.parametrize("ranks, text", [([1, 2, 3, 4, 6, 8, 9], "1-4, 6, 8, 9"), ([2], "2"), ([], ""),
                                         ([5, 3, 4], "3-5"), ([1, 2, 4, 5], "1, 2, 4, 5")])
def test_tied_ranks_read_as_spans(ranks, text):
    assert leaderboard.rank_list(ranks) == text


def test_render_empty_table(tmp_path):
    text = leaderboard.render(leaderboard.table(tmp_path / "results", profile="quick"))
    assert len(text.splitlines()) == 1
    assert "No results" in text and "'quick'" in text and "make score SUBMISSION=" in text
    assert not (tmp_path / "results").exists(), "reading an empty leaderboard created files"


def test_plot_writes_a_png(filled, tmp_path):
    out = tmp_path / "plots" / "leaderboard-default.png"
    assert leaderboard.plot(leaderboard.table(filled, "default"), out) == out
    blob = out.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", blob[16:24])  # IHDR
    assert width >= 400 and height >= 300 and len(blob) > 10_000
    assert [p.name for p in out.parent.iterdir()] == [out.name], "temporary file left behind"
    # History (several points per submission) and an empty table plot too.
    leaderboard.plot(leaderboard.table(filled, "default", history=True), out)
    leaderboard.plot(leaderboard.table(tmp_path / "none", "default"), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _record_many(folder: str, worker: int, n: int, barrier) -> None:
    barrier.wait()
    for i in range(n):
        r = result("finetune", 0.001 * (worker * n + i), f"2026-11-26T17:{worker:02d}:{i:02d}Z")
        r["id"] = f"default-w{worker}-{i}"
        publish(Path(folder), r)


def _context():
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def test_concurrent_processes_both_land(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()  # no database yet: the two processes also race to create it
    workers, n = 2, 15
    ctx = _context()
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_record_many, args=(str(folder), w, n, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    df = leaderboard.table(folder, "default", history=True)
    assert len(df) == workers * n
    assert set(df["id"]) == {f"default-w{w}-{i}" for w in range(workers) for i in range(n)}
    assert len(leaderboard.table(folder, "default")) == 1  # one submission, shown once


def _rebuild_many(folder: str, n: int, barrier) -> None:
    barrier.wait()
    for _ in range(n):
        leaderboard.rebuild(Path(folder))


def _read_many(folder: str, base: int, n: int, barrier) -> None:
    barrier.wait()
    seen = base
    for _ in range(n):
        now = len(leaderboard.stored_rows(Path(folder), "default"))
        # A row once read stays: a rebuild finds every JSON file written before its row was.
        assert now >= seen, f"{now} rows after {seen}"
        seen = now


def test_readers_and_writers_during_rebuilds_see_every_row(tmp_path):
    """A rebuild renames a new database over the one others read and write: the lock must keep a
    reader from losing rows it saw and a writer from landing in the file being replaced."""
    folder = tmp_path / "results"
    base, n = 60, 15
    for i in range(base):
        write(folder, dict(result("noop", 0.0001 * i, "2026-11-26T10:00:00Z"), id=f"default-base-{i}"))
    assert leaderboard.rebuild(folder) == base
    ctx = _context()
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_rebuild_many, args=(str(folder), n, barrier)),
             ctx.Process(target=_read_many, args=(str(folder), base, 2 * n, barrier)),
             ctx.Process(target=_record_many, args=(str(folder), 0, n, barrier))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    df = leaderboard.table(folder, "default", history=True)
    assert len(df) == base + n and {f"default-w0-{i}" for i in range(n)} <= set(df["id"])
    assert not list(folder.glob(".*.tmp*")), "a temporary database was left behind"


def _hold_lock(folder: str, held, release) -> None:
    with paths.locked(Path(folder) / leaderboard.LOCK_NAME, "holding the leaderboard for a test"):
        held.set()
        release.wait(60)


def _read_once(folder: str) -> None:
    leaderboard.table(Path(folder), "default")


def test_readers_and_writers_wait_for_the_harness_lock(tmp_path, capfd):
    """The leaderboard's lock is paths.locked, the harness's one kind, exclusive for readers too:
    while another process holds it, a record and a read each say so once and wait."""
    folder = tmp_path / "results"
    folder.mkdir()
    ctx = _context()
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(folder), held, release))
    holder.start()
    assert held.wait(60)
    late = result("finetune", 0.031, "2026-11-26T17:35:01Z")
    procs = [ctx.Process(target=publish, args=(folder, late)), ctx.Process(target=_read_once, args=(str(folder),))]
    for p in procs:
        p.start()
    waiting, err = "waiting for another harness process using the leaderboard", ""
    deadline = time.monotonic() + 60
    while err.count(waiting) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capfd.readouterr().err
    assert err.count(waiting) == 2, err
    assert all(p.is_alive() for p in procs) and not (folder / leaderboard.DB_NAME).exists()
    release.set()
    for p in (holder, *procs):
        p.join(60)
    assert [p.exitcode for p in (holder, *procs)] == [0, 0, 0]
    assert list(leaderboard.table(folder, "default")["id"]) == [late["id"]]


def test_unsandboxed_and_suspicious_results_are_noted(tmp_path):
    folder = tmp_path / "results"
    publish(folder, result("finetune", 0.031, "2026-11-26T17:35:01Z", isolation={"sandboxed": True}))
    publish(folder, result("oracle", 0.95, "2026-11-26T17:36:01Z", isolation={"sandboxed": True},
                           suspicious="F = 0.990 is 5.2x the null ceiling 0.190"))
    publish(folder, result("gradascent", 0.02, "2026-11-26T17:37:01Z", isolation={"sandboxed": False}))
    df = leaderboard.table(folder, profile="default")
    notes = dict(zip(df["submission_name"], df["note"]))
    assert notes["oracle"].startswith("SUSPICIOUS") and notes["gradascent"] == "not sandboxed" and notes["finetune"] == ""
    text = leaderboard.render(df)
    assert "SUSPICIOUS rows have F above twice the null ceiling" in text and "'not sandboxed' rows" in text
    # the flags survive a rebuild from the JSON files alone
    leaderboard.rebuild(folder)
    again = leaderboard.table(folder, profile="default")
    assert list(again["note"]) == list(df["note"])
    assert dict(zip(again["submission_name"], again["sandboxed"])) == {"oracle": True, "finetune": True, "gradascent": False}
