"""The trusted runner against submissions that misbehave: each bad one is rejected with a clear
reason naming the run, the survivors count normally, and nothing is left behind."""
from __future__ import annotations

import re
import time

import pytest

from conftest import BAD, FAST, SUBMISSIONS, processes_with, run_processes_left
from harness import leaderboard, runner, score

REJECTED = [
    ("import_error", r"importing the submission failed: ModuleNotFoundError"),
    ("no_function", r"defines no `unlearning` function"),
    ("not_a_function", r"`unlearning` is a int, not a function"),
    ("wrong_signature", r"cannot be called as unlearning\(net, retain_loader, forget_loader, val_loader\)"),
    ("raises", r"unlearning\(\) raised: ZeroDivisionError: deliberate failure"),
    ("calls_sys_exit", r"called sys.exit\(3\)"),
    ("returns_other_model", r"returned a \w+ that is not the net it was given"),
    ("changes_architecture", r"architecture changed: missing keys \[\], unexpected keys \['extra_head"),
    ("nan_weights", r"weights are not finite"),
    ("busy_loop", r"exceeded its time budget"),
    ("sleeps", r"exceeded its time budget"),
    ("memory_hog", r"ran out of its memory limit \(1.0 GiB\)"),
    ("calls_os_exit", r"ended without finishing \(exit code 0\)"),
    ("kills_itself", r"ended without finishing \(killed by signal SIGKILL\)"),
]


def _score(path, **kw):
    return score.score(str(path), FAST, k=FAST.k, workers=kw.pop("workers", 2), progress=False, **kw)


@pytest.mark.parametrize("name, reason", REJECTED, ids=[r[0] for r in REJECTED])
def test_bad_submission_is_rejected_and_leaves_nothing(name, reason, quick_pool, results):
    started = time.perf_counter()
    with pytest.raises(runner.RunError) as err:
        _score(BAD / f"{name}.py")
    first_line = str(err.value).splitlines()[0]
    assert re.match(r"run \d+ \(seed \d+\) ", first_line), first_line
    assert re.search(reason, first_line), first_line
    assert not results.exists() or not list(results.glob("*.json")), "a failed score published a result"
    assert not (results / leaderboard.DB_NAME).exists()
    assert run_processes_left() == []
    # Hangs are killed at budget + grace, not later.
    assert time.perf_counter() - started < 60


def test_syntax_error_is_rejected_before_any_run(quick_pool, results):
    with pytest.raises(runner.SubmissionError, match=r"is not valid Python: line 1"):
        _score(BAD / "syntax_error.py")


def test_survivors_count_normally(quick_pool, results):
    for name in ("prints_megabytes", "writes_files", "mutates_loaders", "looks_for_test_set"):
        r = _score(BAD / f"{name}.py", workers=1)  # one worker: run 1 follows run 0 in the same process
        assert r["k"] == FAST.k and 0.0 <= r["forget_quality"] <= 1.0, name
        assert (results / f"{r['id']}.json").exists()
        assert run_processes_left() == []


def test_output_is_captured_and_truncated(quick_pool, results):
    r = _score(BAD / "prints_megabytes.py")
    folder = runner.runs_dir(quick_pool.dir, FAST, runner.Submission.load(BAD / "prints_megabytes.py"))
    rec = runner.read_run(runner.run_path(folder, 0))
    assert rec["output_bytes"] > 4 * 2**20
    assert "LAST LINE OF OUTPUT" in rec["output"] and len(rec["output"]) <= 2000
    assert r["score"] >= 0


def test_files_written_by_a_run_are_cleaned_up(quick_pool, results, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _score(BAD / "writes_files.py")
    assert not (tmp_path / "scratch_output.bin").exists()
    folder = runner.runs_dir(quick_pool.dir, FAST, runner.Submission.load(BAD / "writes_files.py"))
    cwd = re.search(r"CWD (\S+)", runner.read_run(runner.run_path(folder, 0))["output"]).group(1)
    assert not __import__("pathlib").Path(cwd).exists(), "the run's scratch folder was not removed"


def test_children_that_would_outlive_the_run_are_killed(quick_pool, results):
    marker = "harness-orphan-marker-7f3c"
    _score(BAD / "spawns_child.py")
    deadline = time.time() + 5
    while processes_with(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []


def test_failed_score_leaves_earlier_results_alone(quick_pool, results):
    good = _score(SUBMISSIONS / "noop.py")
    before = sorted(p.name for p in results.glob("*.json"))
    rows = len(leaderboard.table(results, profile=FAST.name))
    with pytest.raises(runner.RunError):
        _score(BAD / "raises.py")
    assert sorted(p.name for p in results.glob("*.json")) == before
    assert len(leaderboard.table(results, profile=FAST.name)) == rows
    assert good["id"] in before[0]


def test_run_records_are_isolation_reports(quick_pool, results):
    _score(SUBMISSIONS / "noop.py")
    folder = runner.runs_dir(quick_pool.dir, FAST, runner.Submission.load(SUBMISSIONS / "noop.py"))
    rec = runner.read_run(runner.run_path(folder, 1))
    assert rec["memory_limit_gb"] == FAST.memory_limit_gb
    assert rec["seed"] == FAST.unlearn_seed0 + 1
    assert isinstance(rec["network_isolated"], bool)
