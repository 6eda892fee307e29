"""`--backend ray`: reference training and unlearning runs as tasks of a local Ray instance give
the local backend's numbers, bit for bit; as tasks of a running one (RAY_ADDRESS) they fail the
way local runs do, and cannot join it."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BAD, REPO, SUBMISSIONS, TEST_KEY, run_cli
from harness import cli, keys, protocol, reference_pool, runner
from test_score import harness, last_json

# Everything a score's numbers are made of (its wall-clock times and ids aside).
COMPARED = ("score", "score_ci95", "forget_quality", "null_forget_quality", "retain_acc", "test_acc", "forget_acc",
            "reference", "original", "epsilons", "run_digests", "seeds", "isolation")


@pytest.fixture(scope="session")  # session: set up before the session's pool, so a skip costs nothing
def ray_installed():
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI") == "true":  # CI installs the extra: a missing ray there is a broken install
            pytest.fail("ray is not installed, but CI runs `make test EXTRAS=dev,ray`")
        pytest.skip("ray is not installed (pip install -e '.[ray]')")


@pytest.fixture(scope="module")
def ray_cluster(ray_installed):
    """A running Ray instance that scores connect to by address (RAY_ADDRESS), as on a cluster: one
    for the tests below, instead of a new local instance (~5 s to start and stop) each."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def in_process(monkeypatch, capsys, *argv: str) -> tuple[int, list[str]]:
    """The CLI's exit code and stderr lines, in this process (the check comes before any work)."""
    monkeypatch.setenv("HARNESS_BACKEND", os.environ.get("HARNESS_BACKEND", "local"))  # undone after the test
    code = cli.main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def test_quick_through_ray_gives_the_local_backends_numbers(ray_installed, quick_pool, tmp_path):
    sub = SUBMISSIONS / "finetune.py"
    args = ("score", str(sub), "--profile", "quick", "--k", "2", "--json", "--quiet")
    # Ray trains original + 2 retrained models in an empty cache, then runs the 2 unlearning runs.
    cache = tmp_path / "cache"
    keys.install(cache, TEST_KEY)  # the session cache's key: the same secret data set and seeds
    out = harness(*args, "--backend", "ray", env={"HARNESS_CACHE_DIR": str(cache),
                                                  "HARNESS_RESULTS_DIR": str(tmp_path / "ray-results")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr == "", out.stderr[-3000:]  # --quiet stays quiet: no Ray banner or log lines
    # Local workers on the session's pool, the same seeds (in this process: its workers are warm).
    local = run_cli(*args, "--backend", "local", env={"HARNESS_RESULTS_DIR": str(tmp_path / "local-results"),
                                                      "HARNESS_BACKEND": "local"})  # the CLI sets it: undone after
    assert local.returncode == 0, local.stderr[-3000:]

    pool = reference_pool.load(protocol.QUICK, 2, cache=cache)
    assert pool.original["weights_sha256"] == quick_pool.original["weights_sha256"]
    assert [r["weights_sha256"] for r in pool.retrains] == [r["weights_sha256"] for r in quick_pool.retrains[:2]]
    folder = runner.runs_dir(pool.dir, protocol.QUICK, runner.Submission.load(sub))
    assert sorted(p.name for p in folder.glob("run_*.json")) == ["run_0000.json", "run_0001.json"]
    a, b = last_json(out.stdout), last_json(local.stdout)
    assert a["execution"]["backend"] == "ray" and a["execution"]["nodes"] == 1, a["execution"]
    assert b["execution"]["backend"] == "local", b["execution"]
    # Isolation too: the sandbox works in Ray workers as in loky ones. json.dumps: NaN (the null ceiling at
    # K=2) equals NaN.
    assert json.dumps({k: a[k] for k in COMPARED}) == json.dumps({k: b[k] for k in COMPARED})


def test_a_failed_run_in_a_ray_task_stops_the_score_with_its_own_message(ray_cluster, quick_pool, tmp_path):
    results = tmp_path / "results"
    # One task at a time: run 0 fails, run 1 is never submitted (and the test pays for one run).
    out = harness("score", str(BAD / "raises.py"), "--profile", "quick", "--k", "2", "--quiet", "--backend", "ray",
                  "--workers", "1", env={"HARNESS_RESULTS_DIR": str(results), "RAY_ADDRESS": ray_cluster})
    assert out.returncode == 2, out.stderr[-3000:]
    first = out.stderr.strip().splitlines()[0]
    assert first.startswith("error: run ") and "ZeroDivisionError" in first and "Ray" not in first, out.stderr
    assert not results.exists()


def test_a_run_cannot_join_the_ray_cluster_it_is_a_task_of(ray_cluster, quick_pool, tmp_path):
    # From inside a run, a task submitted to the harness's Ray instance would run outside the
    # sandbox, next to the cache. The run's network namespace, fresh /tmp and new root (no
    # ~/.ray/auth_token) leave no cluster in sight.
    attack = REPO / "tests" / "submissions" / "attacks" / "reaches_ray.py"
    out = harness("score", str(attack), "--profile", "quick", "--k", "2", "--quiet", "--json", "--backend", "ray",
                  "--workers", "1", "--budget-fraction", "20",  # time to import ray, which quick's budget is not
                  env={"HARNESS_RESULTS_DIR": str(tmp_path / "results"), "RAY_ADDRESS": ray_cluster})
    assert out.returncode == 0, out.stderr[-3000:]
    r = last_json(out.stdout)
    assert r["isolation"]["sandboxed"] is True and r["execution"]["address"] == ray_cluster
    # The attack itself works wherever a cluster is in sight: a clean process beside the instance the
    # runs were tasks of joins it (so the test above can fail). HARNESS_SANDBOX=off cannot show it:
    # such a run died inside ray.init when tried, which maps more than the run's address-space limit.
    joined = Path("/tmp/harness-attack-reaches-ray.joined")
    joined.unlink(missing_ok=True)
    probe = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(attack)!r})['unlearning']"
                            "(None, None, None, None)"], env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0 and "LEAK: joined the harness's Ray cluster" in probe.stderr, probe.stderr[-2000:]
    assert joined.exists()
    joined.unlink()


def test_an_unknown_backend_is_one_line_before_any_work(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_BACKEND", "bogus")
    code, lines = in_process(monkeypatch, capsys, "score", "submissions/noop.py", "--profile", "quick", "--k", "2")
    assert code == 2 and lines == ["error: HARNESS_BACKEND='bogus' is not a backend: use one of local, ray"], lines
    assert not (tmp_path / "cache").exists()


def test_ray_backend_without_ray_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    code, lines = in_process(monkeypatch, capsys, "reference", "--profile", "quick", "--backend", "ray")
    assert code == 2 and lines == ["error: HARNESS_BACKEND=ray needs the ray extra: pip install -e '.[ray]'"], lines
    assert not (tmp_path / "cache").exists()
