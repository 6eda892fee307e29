"""The trusted runner: every unlearning run is untrusted code in a sandbox of its own.

Process tree of one score:

    harness process            never imports a submission; schedules runs, shows progress
    └── worker (loky), ×W      one torch thread each; holds the data and the original weights;
        │                      measures each run (harness.supervise), checks and evaluates what
        │                      it returns, writes the run record, all in trusted code
        └── zygote             torch and the run's runtime imported once, never the pool
            └── sandbox        a fork per run, in new namespaces (harness.sandbox), which
                └── run        runs harness.child: imports the submission, calls unlearning()

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
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import cgroups, evaluate, paths, supervise
from harness.protocol import ACTIVE_ENV, BUDGET_ENV, Protocol

TRACEBACK_TAIL_LINES = 12
RUNNER_VERSION = "sandbox-5"  # in every runs folder's key: runs of an older runner are not reused
                              # (2: loaders in the Kaggle notebooks' order, seeded after the model is loaded;
                              # 3: records keep the report's outputs, run 0 keeps its weights for saliency maps;
                              # 4: the net in channels_last, a cgroup, the competition's budget;
                              # 5: runs forked from a zygote, 60 s for the harness's setup)
COPY_CHECK_VERSION = 3        # the pool's copy-check views (harness.copies): 2 = canonical layers and spectra;
                              # 3: the same, computed faster (equal to 1e-14, not bit for bit)
SANDBOX_ENV = "HARNESS_SANDBOX"
SANDBOX_MODES = ("auto", "require", "userns", "off")
BOX_PREFIX = "harness-run-"   # a run's inputs on the worker's side: harness-run-<worker pid>-<i>-XXXX


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


def result_runs(result: dict, protocol: Protocol, pool_dir: Path) -> tuple[Path, list[dict | None]]:
    """Where a stored result's K runs are kept, and their records (None for one that is not)."""
    budget = result.get("budget") or {}
    fraction = None if budget.get("protocol_budget", True) else budget.get("fraction")
    refused = (result.get("isolation") or {}).get("refused") or []
    sandbox = "off" if f"{SANDBOX_ENV}=off" in refused else "auto"
    sub = Submission(Path(result["submission"]), result["submission_sha256"])
    folder = runs_dir(pool_dir, protocol, sub, fraction, sandbox)
    return folder, [read_run(run_path(folder, i)) for i in range(result["k"])]


def read_run(path: Path) -> dict | None:
    try:
        rec = paths.read_json(path)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "forget_confidences" in rec and "retain_acc" in rec else None


# ---- the worker side: trusted ------------------------------------------------------------------

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
        funcs = np.stack([evaluate.function_vector(rec["outputs"]) for rec in pool.retrains])

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
        supervise.become_subreaper()
        training.warm_up(protocol)
    return cache[key]


def _pool_views(pool, structure) -> dict:
    """The retrained models' weights as the copy check sees them (harness.copies.stack), made once
    per pool and kept beside it (~0.4 s a ResNet-18 on one core), under a name
    that changes with any of its models."""
    import numpy as np

    from harness import copies, reference_pool

    digest = hashlib.sha256(json.dumps([COPY_CHECK_VERSION, structure, [r["weights_sha256"] for r in pool.retrains]])
                            .encode()).hexdigest()[:16]
    path = pool.dir / f".copy-views-{digest}.npz"
    n = len(structure)
    # Quietly: the waiter is most often the same score's other worker, for a moment.
    with paths.locked(pool.dir / ".copy-views.lock", ""):
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


def hidden_paths(pool_dir: Path) -> list[str]:
    """Folders that must not exist inside a run even where they lie inside an exposed tree."""
    found = {pool_dir.parent, paths.cache_dir(), paths.results_dir(), paths.REPO_ROOT / "reference",
             paths.REPO_ROOT / "results"}
    return sorted(str(p.resolve()) for p in found)


def run_one(protocol_dict: dict, pool_dir: str, data_root: str, k: int, submission: str, i: int, seed: int,
            budget_dict: dict, out_dir: str, sandbox: str, hidden: list[str]) -> dict:
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
        result = _sandboxed(protocol, box, hidden, budget, sandbox,
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
    # process of the run holds it any more), or the sandbox's exit if that comes first. Each time is
    # when a reader thread here saw its event, so a run that ends within a thread switch of its
    # start (noop) can read as ending before it began: it took no measurable time.
    seconds = max(0.0, min(result["result_eof"], result["exit"]) - result["ready"])
    if seconds > budget.limit_s:
        raise RunError(over_budget(i, seed, seconds, budget))
    try:
        if result["payload_bytes"] > result["cap"]:
            raise ValueError(f"it returned {result['payload_bytes']} bytes, more than a state dict of this "
                             f"architecture can take ({result['cap']})")
        weights = evaluate.load_weights(result["payload"], state["original"])
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


def evaluate_weights(protocol: Protocol, state: dict, weights: dict, fail: str) -> tuple[dict, dict]:
    """harness.evaluate.check, its rejection as this run's failure. (metrics, nearest)."""
    try:
        return evaluate.check(protocol, state, weights)
    except evaluate.Rejected as e:
        raise RunError(fail + str(e)) from None


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
        weights = evaluate.load_weights(Path(path).read_bytes(), state["original"])
    except Exception as e:  # noqa: BLE001
        raise RunError(fail + str(e).splitlines()[0]) from None
    metrics, near = evaluate_weights(protocol, state, weights, fail)
    return {"index": i, "seed": None, "seconds": None, "budget_s": None, "over_budget": False, "isolation": None,
            "memory_limit_gb": None, "nearest_retrained": near, **metrics}


def _sandboxed(protocol: Protocol, box: Path, hidden: list[str], budget, sandbox: str, cap: int) -> dict:
    """Start the sandbox on box/inputs, police it to the end, and return what it produced and
    when, all measured here."""
    from harness import training

    # What the run is told: the recipe without seeds or paths, and its budget.
    told = {ACTIVE_ENV: json.dumps(protocol.for_run().to_dict()),
            BUDGET_ENV: json.dumps({"seconds": budget.seconds, "limit_s": budget.limit_s,
                                   "mean_limit_s": budget.mean_limit_s})}
    cuda = training.resolve_device(protocol).type == "cuda"  # CUDA cannot be used across a fork: fresh interpreters
    return supervise.sandboxed_process(box, budget.setup_s, budget.kill_s, sandbox, cap, told, hidden,
                                       limits=run_limits(protocol), warm=None if cuda else protocol.for_run().to_dict())


def run_limits(protocol: Protocol):
    """A run's cgroup (harness.cgroups): the profile's memory, tmpfs included, and on a CPU the
    thread count the reference models were trained with as its CPU quota."""
    from harness import training

    cuda = training.resolve_device(protocol).type == "cuda"
    cpus = None if cuda else float(os.environ.get("HARNESS_THREADS", "1"))
    return cgroups.Limits(memory_bytes=int(protocol.memory_limit_gb * 2**30), cpus=cpus)


def run_job(protocol: Protocol, pool, submission: Submission, i: int, budget, out_dir: Path,
            sandbox: str = "auto") -> tuple:
    """Run i (seed unlearn_seed0 + i) as a job for `parallel.run`: plain, picklable arguments. The
    folders a run must not see are named here, by the process that chose them: a worker outlives
    its caller's settings (HARNESS_RESULTS_DIR may differ for the next caller of the same worker)."""
    from dataclasses import asdict

    from harness.data import sources

    hidden = [*hidden_paths(pool.dir), *sources.private_paths(protocol)]
    return (run_one, (protocol.to_dict(), str(pool.dir), str(pool.data_root), pool.k, str(submission.path), i,
                      protocol.unlearn_seed0 + i, asdict(budget), str(out_dir), sandbox, hidden))


def run_all(protocol: Protocol, pool, submission: Submission, k: int, budget, workers: int,
            progress: bool = True, on_run=None) -> list[dict]:
    """K runs (seeds unlearn_seed0 + i) under `budget` (harness.budget.Budget), reusing every run
    already on disk that is within it. Fails fast: the first failed run stops the score with its
    reason. `on_run(records)` sees the runs finished so far ({index: record}): the stored ones
    first, then after each new one; what it raises stops the score like a failed run (harness tune
    prunes a trial so, and decides the same whether a run was stored or made now)."""
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
            if on_run is not None:
                on_run(dict(records))
            if jobs:
                for rec in parallel.run(jobs, workers, progress, desc=f"unlearning {submission.name}", unit="run"):
                    records[rec["index"]] = rec
                    if on_run is not None:
                        on_run(dict(records))
        finally:
            sweep_boxes()
            cgroups.sweep()
    return [records[i] for i in range(k)]
