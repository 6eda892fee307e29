"""The trusted runner: each unlearning run executes untrusted code in a process of its own.

Process tree of one score:

    harness process            never imports a submission; schedules runs, shows progress
    └── worker (loky), ×W      one torch thread each; holds the data and the original weights;
        │                      evaluates what a run returns, in trusted code
        └── run child          forked per run: new session, memory limit, no network where the
                               platform allows, scratch working directory, captured output;
                               imports the submission, calls unlearning(), saves the state dict

The worker never runs submission code itself: it loads the returned weights (weights_only) into
a fresh model of the protocol's architecture, so a submission cannot patch the evaluation.
Each finished run is written atomically to `runs/.../run_NNNN.json` before the next starts, so an
interrupted score resumes without recomputing or changing anything.
"""
from __future__ import annotations

import ast
import ctypes
import hashlib
import inspect
import io
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from harness import paths
from harness.protocol import ACTIVE_ENV, Protocol

OUTPUT_KEEP_BYTES = 16_384    # head and tail of a run's stdout/stderr kept for the log
TRACEBACK_TAIL_LINES = 12
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_CLONE_NEWNET = 0x40000000


class SubmissionError(ValueError):
    """The submission file cannot be scored at all (path, type, syntax)."""


class RunError(RuntimeError):
    """One unlearning run failed; the message names the run and the reason."""


@dataclass(frozen=True)
class Submission:
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.path.stem

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Submission":
        """Validate a submission file without running it: exists, is a .py file, parses."""
        p = Path(path)
        if not p.exists():
            raise SubmissionError(f"submission {path} does not exist: pass the path of a .py file such as submissions/finetune.py")
        if not p.is_file():
            raise SubmissionError(f"submission {path} is not a file: pass the path of a .py file")
        if p.suffix != ".py":
            raise SubmissionError(f"submission {path} is not a Python file (.py): copy submissions/template.py and start from it")
        blob = p.read_bytes()
        try:
            ast.parse(blob, filename=str(p))
        except SyntaxError as e:
            raise SubmissionError(f"submission {path} is not valid Python: line {e.lineno}: {e.msg}") from None
        except ValueError as e:  # null bytes and the like: not a text file
            raise SubmissionError(f"submission {path} is not valid Python: {e}") from None
        return cls(p.resolve(), hashlib.sha256(blob).hexdigest())


def runs_dir(pool_dir: Path, protocol: Protocol, submission: Submission) -> Path:
    """Finished runs of one submission version under one protocol, beside the pool they use."""
    key = hashlib.sha256(json.dumps({"sha": submission.sha256, "seed0": protocol.unlearn_seed0,
                                     "batch": protocol.loader_batch_size, "device": protocol.device},
                                    sort_keys=True).encode()).hexdigest()[:16]
    return pool_dir / "runs" / f"{submission.name}-{key}"


def run_path(folder: Path, i: int) -> Path:
    return folder / f"run_{i:04d}.json"


def read_run(path: Path) -> dict | None:
    try:
        rec = paths.read_json(path)
    except (OSError, ValueError):
        return None
    return rec if "forget_confidences" in rec and "retain_acc" in rec else None


# ---- the run child: untrusted code from here on ------------------------------------------------

def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _isolate(protocol: Protocol, scratch: Path) -> dict:
    """Limits applied in the child before the submission is imported; returns what took effect."""
    import resource

    os.setsid()  # own process group: the worker kills the run and everything it started at once
    libc = _libc()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the run dies with its worker
    applied = {"memory_limit_gb": None, "network_isolated": False}
    if protocol.device == "cpu":
        # Address space, not resident size: CPU torch reserves little, and an unbounded allocation
        # fails fast with MemoryError instead of taking the machine down.
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = current + int(protocol.memory_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        applied["memory_limit_gb"] = protocol.memory_limit_gb
    if libc.unshare(_CLONE_NEWNET) == 0:  # needs root or user namespaces; detected otherwise
        applied["network_isolated"] = True
    from harness import reference_pool

    reference_pool._WORKER_CACHE.clear()  # the worker's cached splits include the test set
    os.chdir(scratch)
    for key in [k for k in os.environ if k.startswith("HARNESS_")]:
        del os.environ[key]
    os.environ[ACTIVE_ENV] = json.dumps(protocol.to_dict())
    os.environ["TMPDIR"] = str(scratch)
    return applied


def _child(protocol: Protocol, submission: Path, seed: int, scratch: Path, out: Path, status: Path,
           splits: dict, original: dict) -> None:
    """Body of the forked run process. Ends with os._exit: never returns into the worker."""
    code = 1
    try:
        applied = _isolate(protocol, scratch)
        code = _child_body(protocol, submission, seed, out, status, splits, original, applied)
    except BaseException:  # noqa: BLE001 - anything, reported to the worker
        _write_status(status, {"ok": False, "stage": "setup", "error": traceback.format_exc()})
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _write_status(path: Path, obj: dict) -> None:
    try:
        paths.atomic_write_json(path, obj)
    except BaseException:  # noqa: BLE001 - status is best effort; a missing one is reported as a crash
        pass


def _child_body(protocol, submission, seed, out, status, splits, original, applied) -> int:
    import importlib.util

    import numpy as np
    import torch

    from harness import data, models, training

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    device = training.resolve_device(protocol)
    net = models.build(protocol)
    net.load_state_dict(original)
    net.to(device)
    loaders = [data.make_loader(splits[name], protocol.pixel_scale, protocol.loader_batch_size,
                                shuffle=True, seed=seed + offset)
               for offset, name in enumerate(("retain", "forget", "validation"))]
    del splits, original  # the child keeps only what the contract hands to the submission

    def fail(stage: str, error: str) -> int:
        _write_status(status, {"ok": False, "stage": stage, "error": error, **applied})
        return 3

    try:
        spec = importlib.util.spec_from_file_location("submission", submission)
        module = importlib.util.module_from_spec(spec)
        sys.modules["submission"] = module
        spec.loader.exec_module(module)
    except BaseException:  # noqa: BLE001
        return fail("import", traceback.format_exc())
    fn = getattr(module, "unlearning", None)
    if fn is None:
        return fail("contract", "the file defines no `unlearning` function: "
                                "def unlearning(net, retain_loader, forget_loader, val_loader)")
    if not inspect.isfunction(fn):
        return fail("contract", f"`unlearning` is a {type(fn).__name__}, not a function")
    try:
        inspect.signature(fn).bind(net, *loaders)
    except TypeError as e:
        return fail("contract", f"`unlearning{inspect.signature(fn)}` cannot be called as "
                                f"unlearning(net, retain_loader, forget_loader, val_loader): {e}")
    started = time.perf_counter()
    try:
        returned = fn(net, *loaders)
    except SystemExit as e:
        return fail("unlearning", f"the submission called sys.exit({e.code!r}): return from unlearning() instead")
    except BaseException:  # noqa: BLE001
        return fail("unlearning", traceback.format_exc())
    seconds = time.perf_counter() - started
    if returned is not None and returned is not net:
        return fail("contract", f"unlearning() returned a {type(returned).__name__} that is not the net it was given: "
                                "change `net` in place and return nothing (or return net)")
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    paths.atomic_write_bytes(out, buf.getvalue())
    _write_status(status, {"ok": True, "seconds": seconds, **applied})
    return 0


# ---- the worker side: trusted ------------------------------------------------------------------

def _drain(fd: int, keep: dict) -> None:
    """Read a run's output to EOF, keeping its head and tail, so a chatty run neither blocks on a
    full pipe nor fills the disk."""
    head, tail, total = bytearray(), bytearray(), 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        total += len(chunk)
        if len(head) < OUTPUT_KEEP_BYTES:
            head += chunk[:OUTPUT_KEEP_BYTES - len(head)]
        tail = (tail + chunk)[-OUTPUT_KEEP_BYTES:]
    os.close(fd)
    keep.update(head=bytes(head), tail=bytes(tail), total=total)


def _children(pid: int) -> set[int]:
    """PIDs whose parent is pid."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.add(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _kill_leftovers(pgid: int, spare: set[int]) -> int:
    """Kill the run's process group and every orphan it left (re-parented to this worker, a child
    subreaper), sparing the worker's own children from before the run; then reap. Returns how
    many processes were signalled."""
    killed = 0
    try:
        os.killpg(pgid, signal.SIGKILL)
        killed += 1
    except ProcessLookupError:
        pass
    for pid in _children(os.getpid()) - spare:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # reap: no zombies left behind
        left = _children(os.getpid()) - spare
        if not left:
            break
        for pid in left:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.01)
    return killed


def _output_text(keep: dict) -> str:
    head, tail, total = keep.get("head", b""), keep.get("tail", b""), keep.get("total", 0)
    if total <= len(head):
        return head.decode(errors="replace")
    return (head.decode(errors="replace") + f"\n[... {total - len(head) - len(tail)} bytes of output cut ...]\n"
            + tail.decode(errors="replace"))


def _reason(status: dict | None, exit_info: str) -> str:
    if status is None:
        return f"the run ended without finishing ({exit_info}): it exited or was killed inside unlearning()"
    error = status.get("error", "")
    if "MemoryError" in error or "can't allocate memory" in error or "DefaultCPUAllocator" in error:
        return (f"the run ran out of its memory limit ({status.get('memory_limit_gb')} GiB): "
                f"{_last_line(error)}")
    stage = status.get("stage")
    if stage == "import":
        return f"importing the submission failed: {_last_line(error)}"
    if stage == "contract":
        return error
    if stage == "unlearning":
        return f"unlearning() raised: {_last_line(error)}" if "Traceback" in error else error
    return f"the run failed during {stage}: {_last_line(error)}"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no message)"


def _tail(text: str, n: int = TRACEBACK_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _worker_state(protocol: Protocol, data_root: Path, original_path: Path) -> tuple[dict, dict]:
    import torch

    from harness import reference_pool, training

    key = ("original", str(original_path))
    cache = reference_pool._WORKER_CACHE
    if key not in cache:
        cache[key] = torch.load(original_path, map_location="cpu", weights_only=True)
        _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of a run come back to this worker
        training.warm_up(protocol)
    return reference_pool.worker_splits(data_root), cache[key]


def run_one(protocol_dict: dict, data_root: str, original_path: str, submission: str, i: int, seed: int,
            budget_s: float, out_dir: str) -> dict:
    """One unlearning run, in a worker process: fork the child, police it, evaluate its weights,
    write the run record. Raises RunError on any failure (nothing is written then)."""
    import torch

    from harness import models, protocol as protocol_mod, reference_pool

    task_started = time.perf_counter()
    protocol = protocol_mod.from_dict(protocol_dict)
    reference_pool.set_worker_threads(protocol)
    splits, original = _worker_state(protocol, Path(data_root), Path(original_path))
    scratch = Path(tempfile.mkdtemp(prefix=f"harness-run{i:04d}-"))
    work, box = scratch / "work", scratch / "box"
    work.mkdir()
    box.mkdir()
    out, status_path = box / "weights.pt", box / "status.json"
    child_splits = {k: splits[k] for k in ("retain", "forget", "validation")}
    del splits  # the forked run must find no reference to the test split, not even up its stack
    before = _children(os.getpid())
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        # The worker's sys.stdout need not be fd 1 (loky rebinds it): point both at the pipe.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, errors="replace")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True, errors="replace")
        _child(protocol, Path(submission), seed, work, out, status_path, child_splits, original)
    os.close(write_fd)
    keep: dict = {}
    reader = threading.Thread(target=_drain, args=(read_fd, keep), daemon=True)
    reader.start()
    deadline = started + budget_s + protocol.unlearn_grace_s
    exit_info, timed_out = "", False
    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            exit_info = (f"killed by signal {signal.Signals(os.WTERMSIG(wait_status)).name}"
                         if os.WIFSIGNALED(wait_status) else f"exit code {os.WEXITSTATUS(wait_status)}")
            break
        if time.perf_counter() > deadline:
            timed_out = True
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.02)
    wall = time.perf_counter() - started
    splits, _ = _worker_state(protocol, Path(data_root), Path(original_path))
    _kill_leftovers(pid, spare=before)
    reader.join(timeout=5)
    status = None
    try:
        status = paths.read_json(status_path)
    except (OSError, ValueError):
        pass
    output = _output_text(keep)
    try:
        if timed_out:
            raise RunError(f"run {i} (seed {seed}) exceeded its time budget: killed after {wall:.1f} s "
                           f"(budget {budget_s:.1f} s + {protocol.unlearn_grace_s:.0f} s setup grace)")
        if not status or not status.get("ok"):
            detail = _tail(status["error"]) if status and status.get("error") else ""
            raise RunError(f"run {i} (seed {seed}) failed: {_reason(status, exit_info)}"
                           + (f"\n{detail}" if detail and "Traceback" in detail else ""))
        try:
            state = torch.load(out, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError("the saved weights are not a state dict")
            models.check_same_architecture(original, state)
            models.check_finite(state)
        except Exception as e:  # noqa: BLE001 - every way the weights can be wrong is the run's failure
            raise RunError(f"run {i} (seed {seed}) failed: {e}") from None
        t_eval = time.perf_counter()
        metrics = reference_pool.evaluate_state(protocol, state, splits)
        metrics["eval_seconds"] = time.perf_counter() - t_eval
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rec = {"index": i, "seed": seed, "seconds": status["seconds"], "wall_seconds": wall,
           "budget_s": budget_s, "over_budget": status["seconds"] > budget_s,
           "network_isolated": status.get("network_isolated"), "memory_limit_gb": status.get("memory_limit_gb"),
           "output_bytes": keep.get("total", 0), "output": output[-2000:], **metrics,
           "task_seconds": time.perf_counter() - task_started}
    paths.atomic_write_json(run_path(Path(out_dir), i), rec)
    return rec


def run_job(protocol: Protocol, pool, submission: Submission, i: int, budget_s: float, out_dir: Path) -> tuple:
    """Run i (seed unlearn_seed0 + i) as a job for `parallel.run`: plain, picklable arguments."""
    return (run_one, (protocol.to_dict(), str(pool.data_root), str(pool.original_weights), str(submission.path),
                      i, protocol.unlearn_seed0 + i, budget_s, str(out_dir)))


def run_all(protocol: Protocol, pool, submission: Submission, k: int, budget_s: float,
            workers: int, progress: bool = True) -> list[dict]:
    """K runs (seeds unlearn_seed0 + i), reusing every run already on disk. Fails fast: the first
    failed run stops the score with its reason."""
    from harness import parallel

    folder = runs_dir(pool.dir, protocol, submission)
    folder.mkdir(parents=True, exist_ok=True)
    records = {i: rec for i in range(k) if (rec := read_run(run_path(folder, i))) is not None}
    todo = [i for i in range(k) if i not in records]
    jobs = [run_job(protocol, pool, submission, i, budget_s, folder) for i in todo]
    if jobs:
        for rec in parallel.run(jobs, workers, progress, desc=f"unlearning {submission.name}", unit="run"):
            records[rec["index"]] = rec
    return [records[i] for i in range(k)]
