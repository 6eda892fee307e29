"""The trusted runner: every unlearning run is untrusted code in a sandbox of its own.

Process tree of one score:

    harness process            never imports a submission; schedules runs, shows progress
    └── worker (loky), ×W      one torch thread each; holds the data and the original weights;
        │                      measures each run, checks and evaluates what it returns, writes
        │                      the run record, all in trusted code
        └── sandbox            a fresh interpreter in new namespaces (harness.sandbox), which
            └── run            runs harness.child: imports the submission, calls unlearning()

A run sees only what it is handed (original weights, retain/forget/validation data, submission,
seed) and hands back only a state dict, through a pipe. The worker's own clock times it: from
the `ready` line the run writes before any submission code exists, to its exit. The worker loads
the weights (weights_only) into a fresh model of the protocol's architecture, rejects copies of
retrained models (harness.copies), and writes the record atomically to
`runs/.../run_NNNN.json`, in the cache, which no run can see: an interrupted score resumes
without recomputing or changing anything.
"""
from __future__ import annotations

import ast
import ctypes
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness import cgroups, paths
from harness.protocol import ACTIVE_ENV, BUDGET_ENV, Protocol

OUTPUT_KEEP_BYTES = 16_384    # head and tail of a run's stdout/stderr kept for the log
TRACEBACK_TAIL_LINES = 12
RUNNER_VERSION = "sandbox-4"  # in every runs folder's key: runs of an older runner are not reused
                              # (2: loaders in the Kaggle notebooks' order, seeded after the model is loaded;
                              # 3: records keep the report's outputs, run 0 keeps its weights for saliency maps;
                              # 4: the net in channels_last, a cgroup, the competition's budget)
COPY_CHECK_VERSION = 2        # the pool's copy-check views (harness.copies): 2 = canonical layers and spectra
SANDBOX_ENV = "HARNESS_SANDBOX"
SANDBOX_MODES = ("auto", "require", "userns", "off")
SCRATCH_MB = 1024             # each of the run's tmpfs folders (/scratch, /tmp, /dev/shm)
BOX_PREFIX = "harness-run-"   # a run's inputs on the worker's side: harness-run-<worker pid>-<i>-XXXX
_PR_SET_CHILD_SUBREAPER = 36


class SubmissionError(ValueError):
    """The submission file cannot be scored at all (path, type, syntax)."""


class RunError(RuntimeError):
    """One unlearning run failed; the message names the run and the reason."""


ORACLE_NAME = "ORACLE_BUDGET_FRACTION"  # declared in a file: an oracle, with this many retrains of budget


@dataclass(frozen=True)
class Submission:
    path: Path
    sha256: str
    oracle_budget_fraction: float | None = None  # ORACLE_NAME = <number> at the file's top level

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
            tree = ast.parse(blob, filename=str(p))
        except SyntaxError as e:
            raise SubmissionError(f"submission {path} is not valid Python: line {e.lineno}: {e.msg}") from None
        except (ValueError, RecursionError) as e:  # null bytes, absurd nesting: not a submission
            raise SubmissionError(f"submission {path} is not valid Python: {e or type(e).__name__}") from None
        return cls(p.resolve(), hashlib.sha256(blob).hexdigest(), _declared_oracle(tree, path))


def _declared_oracle(tree: ast.Module, path) -> float | None:
    """The file's ORACLE_BUDGET_FRACTION (a positive number literal at its top level), or None. The
    harness never imports a submission: this reads the source."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == ORACLE_NAME for t in targets):
            value = node.value
            if not (isinstance(value, ast.Constant) and type(value.value) in (int, float) and value.value > 0):
                raise SubmissionError(f"submission {path} declares {ORACLE_NAME} as something other than a positive "
                                      f"number: write it as a literal, e.g. {ORACLE_NAME} = 3.0")
            return float(value.value)
    return None


def runs_dir(pool_dir: Path, protocol: Protocol, submission: Submission, budget_fraction: float | None = None,
             sandbox: str = "auto") -> Path:
    """Finished runs of one submission version under one protocol, beside the pool they use. The
    key holds everything that changes what a run record means: the submission, seeds, loaders,
    device, the time budget and memory limit it ran under, the runner, and whether it was sandboxed
    at all (runs made with HARNESS_SANDBOX=off are never reused by a sandboxed score)."""
    fraction = protocol.unlearn_budget_fraction if budget_fraction is None else budget_fraction
    key = hashlib.sha256(json.dumps({
        "sha": submission.sha256, "seed0": protocol.unlearn_seed0, "batch": protocol.loader_batch_size,
        "device": protocol.device, "budget_fraction": fraction, "budget_min_s": protocol.unlearn_budget_min_s,
        "tolerance": [protocol.unlearn_budget_tolerance, protocol.unlearn_budget_tolerance_min_s],
        "grace_s": protocol.unlearn_grace_s, "memory_gb": protocol.memory_limit_gb, "runner": RUNNER_VERSION,
        "unsandboxed": sandbox == "off"}, sort_keys=True).encode()).hexdigest()[:16]
    return pool_dir / "runs" / f"{submission.name}-{key}"


def sandboxed(isolation: dict | None) -> bool:
    """The whole sandbox: the run saw neither the cache nor the results, had no capability, and
    its processes died with it."""
    iso = isolation or {}
    return bool(iso.get("filesystem_hidden") and iso.get("pid_namespace") and iso.get("capabilities_dropped"))


def sandbox_mode() -> str:
    mode = os.environ.get(SANDBOX_ENV, "auto") or "auto"
    if mode not in SANDBOX_MODES:
        raise ValueError(f"{SANDBOX_ENV}={mode!r} is not a sandbox mode: use one of {', '.join(SANDBOX_MODES)}")
    return mode


def run_path(folder: Path, i: int) -> Path:
    return folder / f"run_{i:04d}.json"


def weights_path(folder: Path, i: int) -> Path:
    return folder / f"run_{i:04d}.pt"


def read_run(path: Path) -> dict | None:
    try:
        rec = paths.read_json(path)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "forget_confidences" in rec and "retain_acc" in rec else None


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
    from harness.sandbox import parents

    return {child for child, parent in parents().items() if parent == pid}


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
        for pid in left:  # a grandchild orphaned by the kills above arrives here too: kill it as well
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, os.WNOHANG)
            except (ChildProcessError, ProcessLookupError):
                pass
        time.sleep(0.01)
    return killed


def _output_text(keep: dict) -> str:
    head, tail, total = keep.get("head", b""), keep.get("tail", b""), keep.get("total", 0)
    if total <= len(head):
        return head.decode(errors="replace")
    return (head.decode(errors="replace") + f"\n[... {total - len(head) - len(tail)} bytes of output cut ...]\n"
            + tail.decode(errors="replace"))


def _reason(status: dict | None, exit_info: str, protocol: Protocol, usage: dict | None = None) -> str:
    """A failed run's reason in words. The status line comes from the run: it only words the
    failure, it never decides that a run succeeded."""
    if (usage or {}).get("oom_killed"):
        return (f"the run ran out of its memory limit ({protocol.memory_limit_gb} GiB, its tmpfs folders and every "
                f"process it started included): the kernel killed it ({exit_info})")
    if status is None or status.get("ok"):
        return f"the run ended without finishing ({exit_info}): it exited or was killed inside unlearning()"
    error = status.get("error")
    error = error if isinstance(error, str) else "(no message)"
    if "MemoryError" in error or "can't allocate memory" in error or "DefaultCPUAllocator" in error:
        return f"the run ran out of its memory limit ({protocol.memory_limit_gb} GiB): {_last_line(error)}"
    stage = status.get("stage")
    if stage == "import":
        return f"importing the submission failed: {_last_line(error)}"
    if stage == "unlearning" and "Traceback" in error:
        return f"unlearning() raised: {_last_line(error)}"
    if stage in ("contract", "unlearning"):
        return _last_line(error)
    return f"the run failed during {str(stage)[:40]}: {_last_line(error)}"


def _last_line(text: str, cap: int = 400) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1].strip() if lines else "(no message)"
    return line if len(line) <= cap else line[:cap] + f" [... {len(line) - cap} more characters]"


def _tail(text: str, n: int = TRACEBACK_TAIL_LINES, cap: int = 400) -> str:
    return "\n".join(ln if len(ln) <= cap else ln[:cap] + " [...]" for ln in text.strip().splitlines()[-n:])


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _worker_state(protocol: Protocol, pool_dir: Path, data_root: Path, k: int) -> dict:
    """What every run of this worker needs, loaded once and checked against the pool's recorded
    sha256: the splits, the original weights, the bytes handed to each run, and the retrained
    models' canonical weights and outputs for the copy check."""
    import numpy as np
    import torch

    from harness import copies, data, reference_pool, training

    key = ("run-state", str(pool_dir), str(data_root), k,
           reference_pool.version(pool_dir / "original.json", pool_dir / "retrain", Path(data_root) / "meta.json"))
    cache = reference_pool._WORKER_CACHE
    if key not in cache:
        for old in [c for c in cache if c[0] == "run-state"]:
            del cache[old]
        pool = reference_pool.records(protocol, k, data_root, pool_dir.parent)
        original = reference_pool.load_state(pool.original_weights, pool.original["weights_sha256"])
        splits = reference_pool.worker_splits(pool.data_root)
        structure = copies.layers(list(original))  # the architecture's key order: a run may reorder its own
        funcs = np.stack([function_vector(rec["outputs"]) for rec in pool.retrains])

        def blob(obj) -> bytes:
            buf = io.BytesIO()
            torch.save(obj, buf)
            return buf.getvalue()

        cache[key] = {
            "original": original, "splits": splits, "structure": structure,
            "pool_views": _pool_views(pool, structure), "pool_funcs": funcs,
            "closest_pair": copies.closest_pair(funcs),
            # The run is handed exactly these bytes; the test split is not among them.
            "inputs": {"original.pt": blob(original),
                       "splits.pt": blob({n: vars(data.kaggle_order(splits[n]))
                                          for n in ("retain", "forget", "validation")})},
        }
        _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of an unsandboxed run come back here
        training.warm_up(protocol)
    return cache[key]


def _pool_views(pool, structure) -> dict:
    """The retrained models' weights as the copy check sees them (harness.copies.stack), made once
    per pool and kept beside it (a ResNet-18's singular values take seconds a model), under a name
    that changes with any of its models."""
    import numpy as np

    from harness import copies, reference_pool

    digest = hashlib.sha256(json.dumps([COPY_CHECK_VERSION, structure, [r["weights_sha256"] for r in pool.retrains]])
                            .encode()).hexdigest()[:16]
    path = pool.dir / f".copy-views-{digest}.npz"
    n = len(structure)
    with paths.locked(pool.dir / ".copy-views.lock", "preparing the copy check"):
        try:
            with np.load(path, allow_pickle=False) as z:
                return {"weights": [z[f"w{i}"] for i in range(n)], "spectra": [z[f"s{i}"] for i in range(n)]}
        except (OSError, ValueError, KeyError):
            pass  # absent or damaged: made again
        views = copies.stack([copies.view(reference_pool.load_state(pool.retrain_weights(j), rec["weights_sha256"]),
                                          structure) for j, rec in enumerate(pool.retrains)])
        buf = io.BytesIO()
        np.savez(buf, **{f"w{i}": a for i, a in enumerate(views["weights"])},
                 **{f"s{i}": a for i, a in enumerate(views["spectra"])})
        paths.atomic_write_bytes(path, buf.getvalue())
    return views


def function_vector(outputs: dict):
    """A model's function for the copy check (harness.copies): its kept logits on the forget set and
    on the test sample, as a record stores them (float16, so the pool's and a run's match in kind)."""
    from harness import copies, reference_pool

    return copies.function_vector(reference_pool.decode_array(outputs["forget_logits"]),
                                  reference_pool.decode_array(outputs["test_logits"]))


def sweep_boxes() -> int:
    """Remove the run folders of workers that no longer exist (a worker cancelled or killed in
    the middle of a run has no chance to). Returns how many were removed."""
    removed = 0
    for box in Path(tempfile.gettempdir()).glob(f"{BOX_PREFIX}*-*-*"):
        try:
            os.kill(int(box.name[len(BOX_PREFIX):].split("-")[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(box, ignore_errors=True)
            removed += 1
        except (ValueError, PermissionError):
            pass
    return removed


def _hidden_paths(pool_dir: Path) -> list[str]:
    """Folders that must not exist inside a run even where they lie inside an exposed tree."""
    found = {pool_dir.parent, paths.cache_dir(), paths.results_dir(), paths.REPO_ROOT / "reference",
             paths.REPO_ROOT / "results"}
    return sorted(str(p.resolve()) for p in found)


def _read_capped(fd: int, keep: dict, cap: int) -> None:
    """Read the result pipe to EOF, keeping at most cap bytes (a run cannot fill the worker's memory)."""
    chunks, total = [], 0
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except OSError:
            break
        if not chunk:
            break
        total += len(chunk)
        if total <= cap:
            chunks.append(chunk)
    keep["eof"] = time.perf_counter()
    os.close(fd)
    keep.update(data=b"".join(chunks), total=total)


def _read_control(fd: int, lines: list) -> None:
    """Control lines with the worker's clock at their arrival: (perf_counter, text)."""
    with os.fdopen(fd, "rb") as f:
        for raw in f:
            lines.append((time.perf_counter(), raw[:65536].decode(errors="replace").strip()))
            if len(lines) > 16:
                break


def _json_object(text) -> dict | None:
    """A JSON object from a run's pipe, or None for anything else: malformed, nested past the
    parser's depth (RecursionError), or not an object."""
    try:
        obj = json.loads(text)
    except Exception:  # noqa: BLE001 - ValueError, RecursionError, ...: whatever the run wrote
        return None
    return obj if isinstance(obj, dict) else None


def _control_facts(lines: list) -> tuple[dict | None, float | None, str | None]:
    """(isolation layers, ready time, sandbox setup error) from the control lines. Only the first
    isolation line counts (the init writes it before the run exists), and the first `ready`."""
    isolation = ready = error = None
    for t, text in lines:
        if text == "ready":
            ready = t if ready is None else ready
            continue
        msg = _json_object(text)
        if msg is None:
            continue
        if isolation is None and isinstance(msg.get("isolation"), dict):
            isolation = msg["isolation"]
        if error is None and "setup_error" in msg:
            error = str(msg["setup_error"])
    return isolation, ready, error


def run_one(protocol_dict: dict, pool_dir: str, data_root: str, k: int, submission: str, i: int, seed: int,
            budget_dict: dict, out_dir: str, sandbox: str = "auto") -> dict:
    """One unlearning run, in a worker process: start the sandbox, time it, check and evaluate its
    weights, write the run record. Raises RunError on any failure (nothing is written then)."""
    import torch

    from harness import budget as budget_mod, protocol as protocol_mod, reference_pool

    task_started = time.perf_counter()
    protocol = protocol_mod.from_dict(protocol_dict)
    budget = budget_mod.Budget(**budget_dict)
    reference_pool.set_worker_threads(protocol)
    state = _worker_state(protocol, Path(pool_dir), Path(data_root), k)
    box = Path(tempfile.mkdtemp(prefix=f"{BOX_PREFIX}{os.getpid()}-{i:04d}-"))
    try:
        inputs = box / "inputs"
        inputs.mkdir()
        for name, blob in state["inputs"].items():
            (inputs / name).write_bytes(blob)
        shutil.copyfile(submission, inputs / "submission.py")
        memory = protocol.memory_limit_gb if protocol.device == "cpu" else None  # CUDA maps far more than it uses
        (inputs / "run.json").write_text(json.dumps({"protocol": protocol.for_run().to_dict(), "seed": seed,
                                                     "memory_limit_gb": memory}))
        for sub in ("root", "scratch"):
            (box / sub).mkdir()
        result = _sandboxed(protocol, box, Path(pool_dir), budget, sandbox,
                            cap=4 * len(state["inputs"]["original.pt"]) + (1 << 20))
    finally:
        shutil.rmtree(box, ignore_errors=True)

    fail = f"run {i} (seed {seed}) failed: "
    if result["timed_out"] == "setup":
        raise RunError(fail + f"the sandbox did not start it within {budget.setup_s:.0f} s (the harness's own setup, "
                              "before the run's clock): is the machine overloaded? Run the same command again")
    if result["timed_out"]:
        raise RunError(f"run {i} (seed {seed}) exceeded its time budget: still running {budget.kill_s:.2f} s after "
                       f"its clock started ({budget.kill_s / budget.seconds:.1f}x its budget of {budget.seconds:.2f} s "
                       f"+ {budget.tolerance_s:.2f} s tolerance), and was killed")
    check_sandbox(result, sandbox, fail)
    isolation, status = result["isolation"], result["status"]
    if not status or not status.get("ok") or result["ready"] is None:
        detail = _tail(status["error"]) if status and isinstance(status.get("error"), str) else ""
        raise RunError(fail + _reason(status, result["exit_info"], protocol, result["usage"])
                       + (f"\n{detail}" if detail and "Traceback" in detail else ""))
    # The clock stops when the run can no longer hand anything back: the result pipe's end (no
    # process of the run holds it any more), or the sandbox's exit if that comes first.
    seconds = min(result["result_eof"], result["exit"]) - result["ready"]
    if seconds > budget.limit_s:
        raise RunError(over_budget(i, seed, seconds, budget))
    try:
        if result["payload_bytes"] > result["cap"]:
            raise ValueError(f"it returned {result['payload_bytes']} bytes, more than a state dict of this "
                             f"architecture can take ({result['cap']})")
        weights = load_weights(result["payload"], state["original"])
    except Exception as e:  # noqa: BLE001 - every way the weights can be wrong is the run's failure
        raise RunError(fail + str(e).splitlines()[0]) from None
    metrics, near = evaluate_weights(protocol, state, weights, fail)
    rec = {"index": i, "seed": seed, "seconds": seconds, "wall_seconds": result["wall"],
           "setup_seconds": result["ready"] - result["started"], "budget_s": budget.seconds,
           "limit_s": budget.limit_s, "over_budget": seconds > budget.seconds, "isolation": isolation,
           "memory_limit_gb": memory, **result["usage"],
           "nearest_retrained": near, "output_bytes": result["output_bytes"], "output": result["output"][-2000:],
           **metrics, "task_seconds": time.perf_counter() - task_started}
    if i == 0:  # one unlearned model's weights, for the report's saliency maps (checked, re-serialised)
        buf = io.BytesIO()
        torch.save(weights, buf)
        paths.atomic_write_bytes(weights_path(Path(out_dir), i), buf.getvalue())
    paths.atomic_write_json(run_path(Path(out_dir), i), rec)
    return rec


def over_budget(i: int, seed: int, seconds: float, budget) -> str:
    """A run's failure for time, with by how much."""
    return (f"run {i} (seed {seed}) exceeded its time budget: it took {seconds:.2f} s, {seconds / budget.seconds:.1f}x "
            f"its budget of {budget.seconds:.2f} s (+ {budget.tolerance_s:.2f} s tolerance for timer noise), over by "
            f"{seconds - budget.seconds:.2f} s")


def check_sandbox(result: dict, sandbox: str, fail: str) -> None:
    """RunError when the sandbox never came up, or came up short of what HARNESS_SANDBOX=require asks."""
    isolation = result["isolation"]
    if result["setup_error"] or isolation is None:
        raise RunError(fail + f"the sandbox could not be set up: {result['setup_error'] or result['exit_info']}"
                       + (f"\n{_tail(result['output'])}" if result["output"].strip() else ""))
    if sandbox == "require" and not sandboxed(isolation):
        raise RunError(fail + f"{SANDBOX_ENV}=require, but {isolation.get('refused', 'the sandbox was refused')}: "
                       f"run as root or enable unprivileged user namespaces")
    if sandbox == "require" and "cgroup" in isolation and not isolation["cgroup"]:
        raise RunError(fail + f"{SANDBOX_ENV}=require, but {isolation.get('refused', 'no cgroup')}: run as root, or "
                       "where cgroups are delegated to you (cgroup v2: systemd-run --user --scope -p Delegate=yes)")


def load_weights(blob: bytes, original: dict) -> dict:
    """A state dict from untrusted bytes (weights_only: no code runs), with the original's
    architecture and finite weights; ValueError naming the first problem."""
    import torch

    from harness import models

    weights = models.plain_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))
    models.check_same_architecture(original, weights)
    models.check_finite(weights)
    return weights


def evaluate_weights(protocol: Protocol, state: dict, weights: dict, fail: str) -> tuple[dict, dict]:
    """Score checked weights in trusted code: accuracies, forget confidences, and the copy check
    against the reference pool (RunError when they are a retrained model). (metrics, nearest)."""
    from harness import copies, reference_pool

    t_eval = time.perf_counter()
    try:
        metrics = reference_pool.evaluate_state(protocol, weights, state["splits"])
    except Exception as e:  # noqa: BLE001 - whatever checked weights still do to the evaluation is the run's failure
        raise RunError(fail + f"its weights cannot be evaluated: {_last_line(str(e) or type(e).__name__)}") from None
    metrics["eval_seconds"] = time.perf_counter() - t_eval
    near = copies.nearest(copies.view(weights, state["structure"]), function_vector(metrics["outputs"]),
                          state["pool_views"], state["pool_funcs"])
    copied = copies.copy_reason(near, state["closest_pair"])
    if copied:
        raise RunError(fail + f"it returned a copy of the reference pool: {copied}. A submission must unlearn "
                              "the original it is given, not hand back a retrained model")
    return metrics, near


def evaluate_checkpoint(protocol_dict: dict, pool_dir: str, data_root: str, k: int, path: str, i: int,
                        name: str) -> dict:
    """In a worker: check and score checkpoint i of a submission made elsewhere (a Kaggle
    submission.zip), exactly as a run's weights are. Raises RunError naming `name`."""
    from harness import protocol as protocol_mod, reference_pool

    protocol = protocol_mod.from_dict(protocol_dict)
    reference_pool.set_worker_threads(protocol)
    state = _worker_state(protocol, Path(pool_dir), Path(data_root), k)
    fail = f"{name}: "
    try:
        weights = load_weights(Path(path).read_bytes(), state["original"])
    except Exception as e:  # noqa: BLE001
        raise RunError(fail + str(e).splitlines()[0]) from None
    metrics, near = evaluate_weights(protocol, state, weights, fail)
    return {"index": i, "seed": None, "seconds": None, "budget_s": None, "over_budget": False, "isolation": None,
            "memory_limit_gb": None, "nearest_retrained": near, **metrics}


def _sandboxed(protocol: Protocol, box: Path, pool_dir: Path, budget, sandbox: str, cap: int) -> dict:
    """Start the sandbox on box/inputs, police it to the end, and return what it produced and
    when, all measured here."""
    from harness.data import sources

    # What the run is told: the recipe without seeds or paths, and its budget.
    told = {ACTIVE_ENV: json.dumps(protocol.for_run().to_dict()),
            BUDGET_ENV: json.dumps({"seconds": budget.seconds, "limit_s": budget.limit_s,
                                   "mean_limit_s": budget.mean_limit_s})}
    return sandboxed_process(box, pool_dir, budget.setup_s, budget.kill_s, sandbox, cap, told,
                             limits=run_limits(protocol), hide=sources.private_paths(protocol))


def run_limits(protocol: Protocol):
    """A run's cgroup (harness.cgroups): the profile's memory, tmpfs included, and on a CPU the
    thread count the reference models were trained with as its CPU quota."""
    from harness import training

    cuda = training.resolve_device(protocol).type == "cuda"
    cpus = None if cuda else float(os.environ.get("HARNESS_THREADS", "1"))
    return cgroups.Limits(memory_bytes=int(protocol.memory_limit_gb * 2**30), cpus=cpus)


def sandboxed_process(box: Path, pool_dir: Path, setup_s: float, limit_s: float, sandbox: str, cap: int,
                      env_extra: dict, module: str = "harness.child", binds: tuple = (), workdir: str | None = None,
                      fallback_workdir: Path | None = None, on_tick=None, hide: list[str] = (), limits=None) -> dict:
    """Run `python -m module /inputs RESULT_FD CONTROL_FD` in the sandbox on box/inputs and return
    what it produced and when, all measured here. It is killed `setup_s` after its start if it has
    not written `ready` by then (the harness's own setup), else `limit_s` after `ready`.
    `binds` are extra (source, target, writable) folders in the sandbox, `workdir` its working
    directory there (fallback_workdir without namespaces); on_tick() is called while it runs;
    `hide` adds folders to those that must not be seen (a real data source); `limits`
    (harness.cgroups.Limits) puts the whole sandbox in a cgroup of its own, where the platform
    allows one."""
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", **env_extra}
    env.update({k: v for k, v in os.environ.items() if k in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
                and k not in env_extra})
    spec = {"mode": sandbox, "inputs": str(box / "inputs"), "root": str(box / "root"),
            "fallback_scratch": str(fallback_workdir or box / "scratch"),
            "hide": sorted({*_hidden_paths(pool_dir), *map(str, hide)}),
            "scratch_mb": SCRATCH_MB, "env": env, "parent": os.getpid(), "result_fd": res_w, "control_fd": ctl_w,
            "module": module, "binds": [[str(s), t, bool(w)] for s, t, w in binds], "workdir": workdir}
    group, refused = (None, "") if limits is None or sandbox == "off" else cgroups.create(limits)
    before = _children(os.getpid())
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-s", "-m", "harness.sandbox"], stdin=subprocess.PIPE, stdout=out_w,
                            stderr=out_w, pass_fds=(res_w, ctl_w), cwd=box, env=env, start_new_session=True)
    for fd in (out_w, res_w, ctl_w):
        os.close(fd)
    if group is not None:
        try:  # before the launcher has read its spec: the sandbox and the run are born inside
            group.add(proc.pid)
        except OSError as e:
            group.remove()
            group, refused = None, f"cannot enter the cgroup ({e.strerror or e})"
    output: dict = {}
    payload: dict = {}
    control: list = []
    readers = [threading.Thread(target=fn, args=args, daemon=True) for fn, args in (
        (_drain, (out_r, output)), (_read_capped, (res_r, payload, cap)), (_read_control, (ctl_r, control)))]
    for t in readers:
        t.start()
    try:
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = None
    while proc.poll() is None:
        ready = next((t for t, text in list(control) if text == "ready"), None)
        if time.perf_counter() > (started + setup_s if ready is None else ready + limit_s):
            timed_out = "setup" if ready is None else "run"
            os.killpg(proc.pid, signal.SIGKILL)  # the sandbox's init dies with it, and with it every run process
            proc.wait()
            break
        if on_tick is not None:
            on_tick()
        time.sleep(0.01)
    exited = time.perf_counter()
    usage = {}
    if group is not None:
        group.kill()
        usage = group.usage()
        group.remove()
    _kill_leftovers(proc.pid, spare=before)
    for t in readers:
        t.join(timeout=5)
    code = proc.returncode
    exit_info = (f"killed by signal {signal.Signals(code - 128).name}" if 128 < code < 128 + 65
                 else f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
    data = payload.get("data", b"")
    head, _, weights = data.partition(b"\n")
    status = _json_object(head)
    isolation, ready, setup_error = _control_facts(control)
    if isolation is not None and limits is not None:
        isolation = {**isolation, "cgroup": group.describe() if group else None}
        if refused:
            isolation["refused"] = "; ".join(filter(None, [isolation.get("refused"), f"cgroup: {refused}"]))
    return {"timed_out": timed_out, "started": started, "exit": exited, "wall": exited - started, "ready": ready,
            "result_eof": payload.get("eof", exited),
            "isolation": isolation, "setup_error": setup_error, "status": status, "exit_info": exit_info,
            "payload": weights, "payload_bytes": payload.get("total", 0), "cap": cap, "usage": usage,
            "output": _output_text(output), "output_bytes": output.get("total", 0)}


def run_job(protocol: Protocol, pool, submission: Submission, i: int, budget, out_dir: Path,
            sandbox: str = "auto") -> tuple:
    """Run i (seed unlearn_seed0 + i) as a job for `parallel.run`: plain, picklable arguments."""
    from dataclasses import asdict

    return (run_one, (protocol.to_dict(), str(pool.dir), str(pool.data_root), pool.k, str(submission.path), i,
                      protocol.unlearn_seed0 + i, asdict(budget), str(out_dir), sandbox))


def run_all(protocol: Protocol, pool, submission: Submission, k: int, budget, workers: int,
            progress: bool = True) -> list[dict]:
    """K runs (seeds unlearn_seed0 + i) under `budget` (harness.budget.Budget), reusing every run
    already on disk that is within it. Fails fast: the first failed run stops the score with its
    reason."""
    from harness import parallel

    sandbox = sandbox_mode()
    folder = runs_dir(pool.dir, protocol, submission, None if budget.protocol_budget else budget.fraction, sandbox)
    folder.mkdir(parents=True, exist_ok=True)
    # A second score of the same submission waits here, then reuses every run the first one made.
    with paths.locked(folder / ".lock", f"running {submission.name} on this pool"):
        # A stored run counts when it is within this score's limit (the budget follows the pool's
        # mean retrain time, which growing K moves a little); one that is not is run again.
        records = {i: rec for i in range(k) if (rec := read_run(run_path(folder, i))) is not None
                   and rec.get("seconds") is not None and rec["seconds"] <= budget.limit_s
                   and (sandbox != "require" or sandboxed(rec.get("isolation")))}
        todo = [i for i in range(k) if i not in records]
        jobs = [run_job(protocol, pool, submission, i, budget, folder, sandbox) for i in todo]
        try:
            if jobs:
                for rec in parallel.run(jobs, workers, progress, desc=f"unlearning {submission.name}", unit="run"):
                    records[rec["index"]] = rec
        finally:
            sweep_boxes()
            cgroups.sweep()
    return [records[i] for i in range(k)]
