"""Fan work out over worker processes of one thread each, with a progress bar.

On a 2-core machine one process with two intra-op threads loses most of its speed whenever
anything else runs, while single-thread processes hold steady: so the unit of parallelism is
the process (joblib's loky backend, whose workers persist and keep their loaded data).

HARNESS_BACKEND=ray (or `--backend ray`, the `ray` extra) makes every job a Ray task asking for
one CPU, and one GPU when its protocol runs on CUDA. A job writes its own record to the cache, so
resume and the leaderboard work as with local workers. Without an address the harness starts a
local Ray instance of `workers` CPUs; for an existing cluster set the address the way Ray reads
it, e.g. `RAY_ADDRESS=auto` (a `ray start --head` on this machine) or
`RAY_ADDRESS=ray://host:10001`, or HARNESS_RAY_ADDRESS (the same, for the harness only); a
program that calls `ray.init(address=...)` itself before scoring is used as it is. Every node
must have the harness installed and see the cache at the same path (a shared file system). At
most `workers` tasks run at once: on a cluster pass `--workers` as the CPUs (or GPUs) to use."""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Callable, Iterable, Iterator

from concurrent.futures import FIRST_COMPLETED, wait

from joblib.externals.loky import get_reusable_executor
from tqdm import tqdm

BACKENDS = ("local", "ray")
BACKEND_ENV = "HARNESS_BACKEND"
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
RAY_MISSING = "HARNESS_BACKEND=ray needs the ray extra: pip install -e '.[ray]'"
# A worker with its loaded data and its zygote costs seconds to replace: idle ones wait this long for
# the next call (loky's default is 10 s) instead of leaving with what they loaded.
IDLE_S = 600
# After a failure, jobs still in flight get this long to finish before their workers are killed: a
# run ends within its own kill limit, usually sooner than a new worker and zygote start (~4-9 s).
DRAIN_S = 3.0
_size = 0  # the workers this process's executor has: it grows, never shrinks (see _local_run)


def backend() -> str:
    """The backend HARNESS_BACKEND names (default local); ValueError for any other name."""
    name = os.environ.get(BACKEND_ENV) or "local"
    if name not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={name!r} is not a backend: use one of {', '.join(BACKENDS)}")
    if name == "ray" and importlib.util.find_spec("ray") is None:
        raise RuntimeError(RAY_MISSING)
    return name


def run(jobs: Iterable[tuple[Callable, tuple]], workers: int, progress: bool, desc: str,
        unit: str) -> Iterator:
    """Yield each job's result as it finishes (any order). The first exception is re-raised in
    the caller and the jobs not yet started are cancelled."""
    jobs = list(jobs)
    fan_out = _ray_run if backend() == "ray" else _local_run
    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress, file=sys.stderr,
               dynamic_ncols=True, smoothing=0.1)
    results = fan_out(jobs, max(1, workers))
    try:
        for result in results:
            bar.update(1)
            yield result
    finally:
        results.close()  # a caller that stops early stops the jobs still running, too
        bar.close()


def _local_run(jobs: list, workers: int) -> Iterator:
    # Always worker processes, even for one job (joblib's Parallel would run n_jobs=1 in this
    # process): the harness process stays free of the training state, of CUDA, and of the runs the
    # workers start. loky starts its workers by exec, never by forking this process.
    global _size
    workers = max(1, min(workers, len(jobs)))
    # The executor keeps the most workers any call asked for: loky shrinks by killing workers, and
    # the loop below keeps at most `workers` jobs in flight anyway.
    _size = max(_size, workers)
    executor = get_reusable_executor(max_workers=_size, reuse=True, env=ONE_THREAD, timeout=IDLE_S)
    todo, running = iter(jobs), set()
    try:
        while True:
            # At most `workers` jobs in flight: a failure has nothing queued behind it to stop.
            while len(running) < workers and (job := next(todo, None)) is not None:
                running.add(executor.submit(job[0], *job[1]))
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    except BaseException as error:
        # After a failure, jobs still running get DRAIN_S to finish (their results are dropped;
        # a run they finished is stored and reused): the workers and what they loaded stay for the
        # next call, since a new worker costs seconds. Past that, or after an interrupt, they are
        # killed with everything they started (a run's sandbox dies with its worker).
        if running and not isinstance(error, KeyboardInterrupt):
            _, running = wait(running, timeout=DRAIN_S)
        if running:
            _shutdown_quietly(executor)
            _size = 0
        raise


def _shutdown_quietly(executor) -> None:
    """shutdown(kill_workers=True), without the traceback loky's manager thread can print on
    the way: it drops the queued jobs' items, then may look one up by an id still queued
    (KeyError). The workers are killed before that, so only the printout is silenced, and only
    that thread's, only while it is being stopped."""
    import threading

    default = threading.excepthook

    def hook(args):
        if args.thread is None or args.thread.name != "ExecutorManagerThread":
            default(args)

    threading.excepthook = hook
    try:
        executor.shutdown(wait=True, kill_workers=True)
    finally:
        threading.excepthook = default


def _call(fn: Callable, args: tuple):
    return fn(*args)


def _ray_run(jobs: list, workers: int) -> Iterator:
    ray = _ray(workers)
    task = ray.remote(_call)
    todo, pending = iter(jobs), []
    try:
        while True:
            # At most `workers` in flight, as with local workers: a failure leaves nothing queued
            # behind it, and the jobs not yet started are never submitted.
            while len(pending) < workers and (job := next(todo, None)) is not None:
                fn, args = job
                pending.append(task.options(name=fn.__name__, num_cpus=1, num_gpus=_gpus(ray, args)).remote(fn, args))
            if not pending:
                return
            done, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as e:
                cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) else None
                if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                    raise cause from None  # the job's own error (a RunError, a CacheCorrupt), not Ray's wrapper
                raise RuntimeError(f"a Ray task failed: {str(e).strip().splitlines()[0]}") from None
            yield result
    finally:
        for ref in pending:  # after a failure or an interrupt: stop the rest, as loky's abort does
            ray.cancel(ref, force=True)


def _gpus(ray, args: tuple) -> int:
    """One GPU for a job whose protocol (every job's first argument) trains or runs on CUDA."""
    device = args[0].get("device") if args and isinstance(args[0], dict) else None
    return int(device == "cuda" or device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)


def _address() -> str | None:
    return os.environ.get("HARNESS_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or None


def _ray(workers: int):
    """Ray, connected: to the session already open in this process, to the cluster an address
    names, or to a new local instance of `workers` CPUs."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(RAY_MISSING) from None
    if not ray.is_initialized():
        quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
        address = _address()
        if address:
            # A cluster does not share this process's environment: hand the tasks its settings.
            env = {k: v for k, v in os.environ.items() if k.startswith("HARNESS_")}
            ray.init(address=address, runtime_env={"env_vars": env}, **quiet)
        else:  # "local": a fresh instance even if another runs on this machine
            ray.init(address="local", num_cpus=workers, include_dashboard=False, **quiet)
    return ray


def describe() -> dict:
    """How work was spread, for a result: the backend, and for Ray its version, address and nodes
    (None when no task went through Ray in this process)."""
    name = backend()
    if name == "local":
        return {"backend": "local"}
    import ray

    info = {"backend": "ray", "ray_version": ray.__version__, "address": _address() or "local", "nodes": None,
            "cpus": None, "gpus": None}
    if ray.is_initialized():
        total = ray.cluster_resources()
        info.update(nodes=sum(1 for node in ray.nodes() if node.get("Alive")), cpus=total.get("CPU", 0),
                    gpus=total.get("GPU", 0))
    return info
