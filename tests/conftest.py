"""Shared fixtures: one real `quick` reference pool per test session, in a temporary cache, so
every test goes through the same code paths users run."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from harness import keys, protocol, reference_pool

REPO = Path(__file__).resolve().parents[1]
SUBMISSIONS = REPO / "submissions"
BAD = Path(__file__).resolve().parent / "submissions"

# The quick profile with K=2 and a floor of 3 s under the budget: hanging submissions cost seconds,
# honest ones never brush the budget (its results say it is not the competition's). The setup
# grace bounds only the harness's own work before a run's clock starts.
FAST = protocol.QUICK.replace(k=2, unlearn_budget_min_s=3.0, unlearn_grace_s=20.0, memory_limit_gb=1.0)


# The session cache's secret key: fixed, so that the tests' secret data sets and pools are the same
# on every run (a user's cache makes a random one; runs never see either).
TEST_KEY = hashlib.sha256(b"unlearning-harness test cache").digest()


# The slow tier: a test that trains a pool or scores through the sandbox. Every fixture that builds
# or needs a pool makes a test slow on its own; the rest are marked where they are written.
# `pytest -m "not slow"` (make test-fast) is the edit loop's tier.
POOL_FIXTURES = {"quick_pool", "own_cache", "mini_pool", "shared_cache", "scored", "report", "built", "copy"}


def pytest_collection_modifyitems(items):
    for item in items:
        if POOL_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    # HARNESS_TEST_CACHE keeps the session's cache between test runs (the edit loop's pools are
    # trained once); by default, and in CI, each run trains its own from nothing.
    # Under pytest-xdist (make test's workers) the workers share one cache beside their temporary
    # folders: a pool is trained once, its models split between them by the cache's locks.
    kept = os.environ.get("HARNESS_TEST_CACHE")
    if kept:
        path = Path(kept)
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "cache"
    else:
        path = tmp_path_factory.mktemp("cache")
    if keys.install(path, TEST_KEY) != TEST_KEY:
        pytest.exit(f"HARNESS_TEST_CACHE={kept} holds another cache's key: point it at a folder of the tests' own", 2)
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def quick_pool(cache):
    return reference_pool.ensure(protocol.QUICK, progress=False)


@pytest.fixture
def own_cache(quick_pool, tmp_path, monkeypatch):
    """A private copy of the session's quick data set and pool, without their stored runs, made this
    test's cache (HARNESS_CACHE_DIR): for a test that damages files or must start from no stored
    runs (a kept HARNESS_TEST_CACHE holds an earlier session's), and whose changes no other test
    may see. Returns the copy's pool."""
    import shutil

    built = quick_pool.dir.parent
    for name in (quick_pool.data_root.name, quick_pool.dir.name):
        shutil.copytree(built / name, tmp_path / "cache" / name, ignore=shutil.ignore_patterns("runs", "*.lock"))
    shutil.copy2(built / keys.KEY_FILE, tmp_path / "cache" / keys.KEY_FILE)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return reference_pool.load(protocol.QUICK, protocol.QUICK.k, tmp_path / "cache")


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "results"
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(path))
    return path


def processes_with(marker: str) -> list[int]:
    """PIDs whose command line contains marker (to prove nothing was left running)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def is_zygote(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"harness.zygote" in f.read()
    except OSError:
        return False


def run_processes_left() -> list[int]:
    """Processes below the worker processes of this test session: every run, and everything a
    run started, must be gone once a score returns or fails."""
    import time

    from harness.supervise import children

    def below(worker: int) -> set[int]:  # a worker's zygote outlives runs: what counts is below it
        return {q for p in children(worker) for q in (children(p) if is_zygote(p) else {p})}

    deadline = time.time() + 5  # a cancelled worker's run dies with it, within moments
    while True:
        left = sorted(pid for worker in children(os.getpid()) for pid in below(worker))
        if not left or time.time() > deadline:
            return left
        time.sleep(0.05)


def run_cli(*args: str, env: dict | None = None):
    """The command line run in this process, as `python -m harness` runs it (main() and its exit
    code), with env set for the call: the same code path without a new interpreter's torch import
    and new workers each time (seconds a call on 2 cores). Returns what subprocess.run would:
    returncode, stdout, stderr."""
    import contextlib
    import io
    import types

    from harness import cli as cli_mod

    out, err = io.StringIO(), io.StringIO()
    mp = pytest.MonkeyPatch()
    try:
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_mod.main(list(args))
    finally:
        mp.undo()
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
