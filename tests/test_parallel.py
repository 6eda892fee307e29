"""The local fan-out (harness.parallel): a failing job stops the others, and says nothing else."""
from __future__ import annotations

import pytest

import subprocess
import sys

from conftest import REPO

SCRIPT = """
import time
from harness import parallel

def job(i):
    time.sleep(0.05)
    if i == 5:
        raise ValueError("deliberate")
    return i

if __name__ == "__main__":
    for _ in range(10):
        try:
            list(parallel.run([(job, (i,)) for i in range(40)], 2, False, "jobs", "job"))
        except ValueError as e:
            print("raised", e)
"""


@pytest.mark.slow
def test_a_failure_with_jobs_still_queued_stops_them_without_a_traceback(tmp_path):
    """Jobs queued behind a failure: loky's manager thread printed a KeyError traceback in about
    four of ten such stops (its shutdown drops the queued items, then looks one up)."""
    script = tmp_path / "fan_out.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["raised deliberate"] * 10
    assert "Traceback" not in out.stderr and "Exception in thread" not in out.stderr, out.stderr[-3000:]


def _pid(_):
    import os
    return os.getpid()


def _fails(_):
    raise ValueError("deliberate")


def _sleep(s):
    import time
    time.sleep(s)


def _workers() -> set[int]:
    import os

    from harness.supervise import children

    return set(children(os.getpid()))


@pytest.mark.slow
def test_workers_stay_for_the_next_call_unless_work_was_left_running():
    """`next(run([job]))` (harness check) takes the only result and drops the generator, and a
    failure in the only job in flight (one worker) has nothing queued behind it: nothing is left
    running, so the workers and what they loaded stay (a new one costs seconds here). A call for
    fewer workers keeps them all (loky would kill the extra ones). A failure while another job runs
    waits DRAIN_S for it: one that ends by then leaves the workers, one that does not is killed
    with them."""
    from harness import parallel

    list(parallel.run([(_sleep, (0.5,)), (_pid, (0,))], 2, False, "jobs", "job"))  # two workers
    workers = _workers()  # and loky's resource tracker
    assert next(parallel.run([(_pid, (0,))], 1, False, "jobs", "job")) in workers
    with pytest.raises(ValueError):
        list(parallel.run([(_fails, (0,)), *[(_sleep, (2,))] * 3], 1, False, "jobs", "job"))
    assert next(parallel.run([(_pid, (0,))], 1, False, "jobs", "job")) in workers
    assert set(parallel.run([(_pid, (0,))] * 4, 2, False, "jobs", "job")) <= workers == _workers()
    with pytest.raises(ValueError):
        list(parallel.run([(_sleep, (0.5,)), (_fails, (0,))], 2, False, "jobs", "job"))
    assert next(parallel.run([(_pid, (0,))], 1, False, "jobs", "job")) in workers
    with pytest.raises(ValueError):
        list(parallel.run([(_sleep, (parallel.DRAIN_S + 60,)), (_fails, (0,))], 2, False, "jobs", "job"))
    assert next(parallel.run([(_pid, (0,))], 1, False, "jobs", "job")) not in workers
