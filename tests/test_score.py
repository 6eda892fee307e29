"""`harness score` end to end on the quick profile, through the real CLI where users go."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import BAD, REPO, SUBMISSIONS, run_cli
from harness import protocol, runner

REQUIRED = ("protocol_version", "profile", "k", "submission", "submission_sha256", "forget_quality", "score",
            "retain_acc_ratio", "test_acc_ratio", "retain_acc", "test_acc", "forget_acc", "epsilons", "seconds",
            "score_ci95", "null_forget_quality", "relative_forget_quality")
# What may differ between two runs of the same score: identity and wall-clock measurements.
VOLATILE = ("id", "created", "seconds", "budget", "machine")


def harness(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def stable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in VOLATILE}


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_first_run_from_an_empty_cache_twice_gives_identical_numbers(tmp_path):
    """--public-seeds: the pool and data anyone can rebuild, so two empty caches agree bit for bit
    (under secret seeds each cache draws its own key, and so its own data set and pool). K = 2:
    the whole path from an empty cache, on a third of the profile's models."""
    # The two at once, one worker each: each has a core of its own, as two users' machines would.
    procs = []
    for name in ("a", "b"):
        env = {"HARNESS_CACHE_DIR": str(tmp_path / f"cache-{name}"), "HARNESS_RESULTS_DIR": str(tmp_path / f"res-{name}")}
        procs.append(subprocess.Popen([sys.executable, "-m", "harness", "score", "submissions/finetune.py", "--profile",
                                       "quick", "--public-seeds", "--k", "2", "--workers", "1", "--json", "--quiet"],
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, **env}))
    started = time.perf_counter()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(last_json(out))
    assert time.perf_counter() - started < 120
    a, b = results
    for key in REQUIRED:
        assert key in a, key
    assert a["profile"] == "quick+public" and a["k"] == 2 and len(a["epsilons"]) == a["n_forget"]
    assert a["secrets"] == {"public_seeds": True, "pool_commitment": None, "data_commitment": None}
    assert a["seeds"]["retrain"] == [protocol.QUICK.retrain_seed0 + j for j in range(2)]
    assert a["score_ci95"][0] <= a["score"] <= a["score_ci95"][1]
    assert a["device"]["reference"]["device"] == a["device"]["runs"]["device"] == "cpu"
    assert a["device"]["precision"] == "fp32" and a["execution"]["backend"] == "local"
    assert stable(a) == stable(b)
    written = json.loads((tmp_path / "res-a" / f"{a['id']}.json").read_text())
    assert stable(written) == stable(a)


def test_kill_9_in_the_middle_then_resume_gives_the_uninterrupted_numbers(own_cache, tmp_path):
    env = {"HARNESS_RESULTS_DIR": str(tmp_path / "results")}
    sub = BAD / "slow_finetune.py"  # a second a run: a custom budget of 10 retrains
    folder = runner.runs_dir(own_cache.dir, protocol.QUICK, runner.Submission.load(sub), budget_fraction=10.0)
    k = 4  # two runs at a time: the kill lands after the first two, with two still to come
    args = [sys.executable, "-m", "harness", "score", str(sub), "--profile", "quick", "--k", str(k), "--json",
            "--quiet", "--budget-fraction", "10"]
    proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, **env}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(folder.glob("run_*.json"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sorted(folder.glob("run_*.json"))
    assert 2 <= len(done_before) < k, "the kill did not land in the middle of the score"
    assert not list((tmp_path / "results").glob("*.json"))
    kept = {p.name: p.read_bytes() for p in done_before}

    resumed = run_cli(*args[3:], env=env)  # in this process: its workers are warm, the kill was the point
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name, blob in kept.items():  # finished runs were reused, not recomputed
        assert (folder / name).read_bytes() == blob

    for p in folder.glob("run_*.json"):
        p.unlink()
    fresh = run_cli(*args[3:], env=env)  # the uninterrupted score
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert stable(last_json(resumed.stdout)) == stable(last_json(fresh.stdout))


@pytest.mark.parametrize("args, message", [
    (["score", "submissions/does_not_exist.py"], "does not exist"),
    (["score", "pyproject.toml"], "is not a Python file"),
    (["score", "tests/submissions/syntax_error.py"], "is not valid Python"),
    (["score", "submissions/finetune.py", "--profile", "nope"], "unknown profile 'nope'"),
    (["score", "submissions/finetune.py", "--k", "1"], "must be at least 2"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path):
    env = {"HARNESS_CACHE_DIR": str(tmp_path / "cache"), "HARNESS_RESULTS_DIR": str(tmp_path / "results")}
    out = harness(*args, env=env, timeout=60)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "results").exists()


def test_failed_run_through_the_cli_names_the_run_and_publishes_nothing(quick_pool, tmp_path):
    env = {"HARNESS_RESULTS_DIR": str(tmp_path / "results")}
    out = run_cli("score", str(BAD / "raises.py"), "--profile", "quick", "--k", "2", "--quiet", env=env)
    assert out.returncode == 2
    first = out.stderr.strip().splitlines()[0]
    assert first.startswith("error: run ") and "ZeroDivisionError" in first, out.stderr
    assert "Traceback" in out.stderr or "deliberate failure" in out.stderr
    assert not (tmp_path / "results").exists()


def test_a_failing_run_stops_the_score_within_seconds_while_the_other_worker_is_busy(quick_pool, tmp_path):
    """Run 0 fails while the other worker's run is busy and would be allowed a minute more (a
    custom budget of 100 retrains): the command names run 0 and exits within seconds, with no
    traceback of its own, its workers stopped and every process of every run gone."""
    from conftest import processes_with

    marker = "harness-busy-marker-91d4"
    started = time.perf_counter()
    out = harness("score", str(BAD / "fails_while_other_busy.py"), "--profile", "quick", "--k", "8", "--workers", "2",
                  "--budget-fraction", "100", "--quiet", env={"HARNESS_RESULTS_DIR": str(tmp_path / "results")},
                  timeout=120)
    elapsed = time.perf_counter() - started
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.startswith("error: run 0 (seed 2000) failed: unlearning() raised: RuntimeError: run zero fails")
    assert "InvalidStateError" not in out.stderr and "Exception in thread" not in out.stderr, out.stderr
    assert elapsed < 25, f"the score took {elapsed:.0f} s to stop"
    deadline = time.time() + 5
    while processes_with(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []
    assert not (tmp_path / "results").exists()


def test_check_accepts_the_shipped_submissions_and_rejects_a_bad_one(quick_pool):
    ok = run_cli("check", str(SUBMISSIONS / "finetune.py"), "--quiet")
    assert ok.returncode == 0 and ok.stdout.startswith("ok: "), ok.stderr[-2000:]
    assert "architecture unchanged" in ok.stdout
    bad = run_cli("check", str(BAD / "nan_weights.py"), "--quiet")
    assert bad.returncode == 2 and "weights are not finite" in bad.stderr.splitlines()[0]


def test_two_scores_and_a_reference_build_at_once_on_one_cache(own_cache, tmp_path):
    """Two scores of the same submission and a build that grows the pool, all at once on one
    cache: every one succeeds, the scores agree, and each run was made once."""
    env = {**os.environ, "HARNESS_RESULTS_DIR": str(tmp_path / "results")}
    sub = SUBMISSIONS / "noop.py"
    folder = runner.runs_dir(own_cache.dir, protocol.QUICK, runner.Submission.load(sub))
    cmds = [[sys.executable, "-m", "harness", "score", str(sub), "--profile", "quick", "--json", "--quiet"]] * 2
    cmds.append([sys.executable, "-m", "harness", "reference", "--profile", "quick", "--k", str(protocol.QUICK.k + 1),
                 "--quiet"])
    procs = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    a, b = (last_json(out) for out, _ in outs[:2])
    assert stable(a) == stable(b)
    assert sum("waiting for another harness process running noop" in err for _, err in outs[:2]) == 1
    assert len(list(folder.glob("run_*.json"))) == protocol.QUICK.k


def test_a_bad_path_or_profile_fails_before_torch_is_imported():
    """The CLI's first checks need no torch (seconds saved on every typo, and in the fast tier)."""
    for args in (["score", "submissions/does_not_exist.py"], ["score", "submissions/finetune.py", "--profile", "nope"]):
        r = subprocess.run([sys.executable, "-c", "import sys; from harness import cli; code = cli.main(sys.argv[1:]); "
                            "print('torch' in sys.modules, code)", *args], capture_output=True, text=True, cwd=REPO)
        assert r.stdout.split() == ["False", "2"], (args, r.stdout, r.stderr[-2000:])
