"""The zygote (harness.zygote): runs forked from it start with torch imported, share nothing with
one another, and find nothing of the worker; a fork of a process that read the pool would fail
these same checks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import BAD, FAST, REPO, SUBMISSIONS, run_cli, run_processes_left
from harness import budget, runner, score, zygote

TRACES = BAD / "leaves_traces.py"
MEMORY_ATTACK = BAD / "attacks" / "reads_zygote_memory.py"


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600, **kw)


def test_the_trace_detector_sees_a_second_call_in_one_process(tmp_path):
    """Two calls in one process: the second finds the first's traces (so the check below can fail)."""
    r = _python(textwrap.dedent(f"""
        import importlib.util, os
        spec = importlib.util.spec_from_file_location("t", {str(TRACES)!r})
        t = importlib.util.module_from_spec(spec); spec.loader.exec_module(t)
        t.FOLDERS = ({str(tmp_path)!r},)
        t.unlearning(None, None, None, None)
        try:
            t.unlearning(None, None, None, None)
        except RuntimeError as e:
            print(e)
        """))
    assert r.returncode == 0, r.stderr
    assert ("a previous run left a trace in builtins, torch's module state, the environment, the heap, a file in "
            f"{tmp_path}") in r.stdout


def test_nothing_passes_from_one_run_to_the_next(quick_pool, results):
    """Four runs on one worker, so one zygote forks all of them: each leaves traces in module
    state, builtins, the environment, the heap and its writable folders, and each finds none."""
    r = score.score(str(TRACES), FAST, k=4, workers=1, progress=False)
    assert r["isolation"]["started_by"] == ["a fork of the worker's zygote"]
    assert r["isolation"]["sandboxed"]
    assert run_processes_left() == []


def _zygotes() -> set[int]:
    from conftest import is_zygote
    from harness.supervise import children

    return {z for worker in children(os.getpid()) for z in children(worker) if is_zygote(z)}


def test_protocols_of_one_model_shape_share_the_workers_zygote(own_cache, results):
    """Another budget or K is the same warm-up: the zygote stays (a new one costs seconds). Another
    image size is another warm-up."""
    score.score(str(SUBMISSIONS / "noop.py"), FAST, k=2, workers=2, progress=False)
    before = _zygotes()
    assert before
    score.score(str(SUBMISSIONS / "noop.py"), FAST.replace(unlearn_budget_min_s=4.0, k=3), k=3, workers=2,
                progress=False)
    assert _zygotes() == before
    warm = FAST.for_run().to_dict()
    assert zygote._key(warm) == zygote._key({**warm, "name": "other", "k": 9, "unlearn_budget_min_s": 1.0})
    assert zygote._key(warm) != zygote._key({**warm, "image_size": warm["image_size"] * 2})


# A stand-in zygote: says it is ready, then waits for its worker to go (the keeping is under test).
READY_ONLY = """
import socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
sys.stdin.read()
sock.sendall(b'{"ready": true}\\n')
sock.recv(1)
"""


def test_a_worker_keeps_a_zygote_per_model_shape_and_drops_the_least_recently_used(monkeypatch):
    monkeypatch.setattr(zygote.Zygote, "command", lambda self, fd: [sys.executable, "-c", READY_ONLY, str(fd)])
    monkeypatch.setattr(zygote, "_ZYGOTES", {})
    monkeypatch.delenv(zygote.ENV, raising=False)
    warm = FAST.for_run().to_dict()
    shapes = [{**warm, "image_size": size} for size in (8, 16, 24, 32)]
    try:
        first = [zygote.for_worker(w, {"PATH": os.environ["PATH"]})[0] for w in shapes[:3]]
        assert all(z is not None and z.alive() for z in first)
        assert zygote.for_worker(shapes[0], {})[0] is first[0]  # kept, and now the most recently used
        zygote.for_worker(shapes[3], {})  # a fourth shape: the least recently used (size 16) goes
        assert not first[1].alive() and first[0].alive() and first[2].alive()
        assert set(zygote._ZYGOTES) == {zygote._key(shapes[i]) for i in (0, 2, 3)}
        first[2].proc.kill()
        first[2].proc.wait()
        again = zygote.for_worker(shapes[2], {})[0]  # a dead one is started again
        assert again is not first[2] and again.alive()
    finally:
        for z in zygote._ZYGOTES.values():
            z.close()


def test_a_run_forked_from_the_zygote_finds_nothing_of_the_pool(quick_pool, results):
    r = score.score(str(MEMORY_ATTACK), FAST, k=2, workers=1, progress=False)
    assert r["isolation"]["started_by"] == ["a fork of the worker's zygote"]


# A zygote that read the pool first, as the worker has: what a fork of the worker would be.
POOL_READING = """
import json, sys
from pathlib import Path
from harness import protocol, runner, zygote
a = json.loads({args!r})
runner._worker_state(protocol.from_dict(a[0]), Path(a[1]), Path(a[2]), a[3])
sys.exit(zygote.main())
"""


def test_the_same_attack_finds_the_pool_in_a_fork_of_a_process_that_read_it(quick_pool, tmp_path):
    sub = runner.Submission.load(MEMORY_ATTACK)
    b = budget.make(FAST, quick_pool, FAST.unlearn_budget_fraction, False, 1, False)
    fn, args = runner.run_job(FAST, quick_pool, sub, 0, b, tmp_path, "auto")
    r = _python(textwrap.dedent(f"""
        import json, os, sys
        from harness import runner, zygote
        args = json.loads({json.dumps(args)!r})

        class PoolReading(zygote.Zygote):
            def command(self, fd):
                return [sys.executable, "-c", {POOL_READING!r}.format(args=json.dumps(args)), str(fd), str(os.getpid())]

        env = {{"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}}
        from harness import protocol
        warm = protocol.from_dict(args[0]).for_run().to_dict()
        z = zygote._ZYGOTES[zygote._key(warm)] = PoolReading(warm, env)
        assert not z.problem, z.problem
        try:
            runner.run_one(*args)
        except runner.RunError as e:
            print(str(e).splitlines()[0])
        """))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "found the pool in the run's memory: module harness.reference_pool" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "the worker's run state" in r.stdout


def test_self_check_refuses_a_second_thread_and_shared_memory():
    r = _python(textwrap.dedent("""
        import mmap, threading, time
        from harness import zygote
        print(repr(zygote.self_check()))
        shared = mmap.mmap(-1, 4096, flags=mmap.MAP_SHARED)
        print(zygote.self_check())
        shared.close()
        t = threading.Thread(target=time.sleep, args=(2,)); t.start()
        print(zygote.self_check())
        """))
    assert r.returncode == 0, r.stderr
    first, second, third = r.stdout.splitlines()
    assert first == "''"
    assert second.startswith("the zygote has shared writable memory")
    assert third == "the zygote has 2 threads"


@pytest.mark.slow
def test_a_zygote_run_gives_the_numbers_of_a_fresh_interpreter(own_cache, tmp_path):
    """The same runs, forked or exec'd, bit for bit: the zygote changes when a run starts, nothing else."""
    folder = runner.runs_dir(own_cache.dir, own_cache.protocol, runner.Submission.load(SUBMISSIONS / "finetune.py"))
    args = ("score", str(SUBMISSIONS / "finetune.py"), "--profile", "quick", "--k", "2", "--json", "--quiet")
    out = {}
    for mode in ("on", "off"):
        for p in folder.glob("run_*.json"):
            p.unlink()
        env = {"HARNESS_RESULTS_DIR": str(tmp_path / mode), zygote.ENV: mode}
        if mode == "on":  # this session's workers and their zygotes
            r = run_cli(*args, env=env)
        else:  # a worker reads the setting when it starts: new workers, in a new interpreter
            r = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=REPO,
                               env={**os.environ, **env}, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["on"]["isolation"]["started_by"] == ["a fork of the worker's zygote"]
    assert out["off"]["isolation"]["started_by"] == [f"a fresh interpreter ({zygote.ENV}=off)"]
    assert out["on"]["run_digests"] == out["off"]["run_digests"]
    assert out["on"]["score"] == out["off"]["score"]
