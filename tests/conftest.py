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


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cache")
    keys.install(path, TEST_KEY)
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def quick_pool(cache):
    return reference_pool.ensure(protocol.QUICK, progress=False)


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


def run_processes_left() -> list[int]:
    """Processes below the worker processes of this test session: every run, and everything a
    run started, must be gone once a score returns or fails."""
    import time

    from harness.runner import _children

    deadline = time.time() + 5  # a cancelled worker's run dies with it, within moments
    while True:
        left = sorted(pid for worker in _children(os.getpid()) for pid in _children(worker))
        if not left or time.time() > deadline:
            return left
        time.sleep(0.05)
