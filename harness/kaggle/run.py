"""`harness kaggle run NOTEBOOK.ipynb`: a competition notebook, run offline and scored.

1. The profile's data and original model are written in the Kaggle input layout (layout.py) into
   a scratch tree, which the sandbox mounts at /kaggle (input read-only; working and tmp writable).
2. The notebook's source is rewritten minimally (rewrite.py): K iterations instead of 512, and on
   a CPU the CUDA guard and hard-coded 'cuda' devices. Every rewrite is printed and recorded in
   the result (`notebook_rewrites`). Where the platform refuses namespaces, /kaggle paths are
   rewritten to the scratch tree too (and the result says the run was not sandboxed).
3. harness.kaggle.kernel executes it in the sandbox with a Jupyter kernel (nbclient), under a
   time limit of K unlearning budgets plus NOTEBOOK_SETUP_S (a sum, as a score's mean: no
   tolerance for one run's timer noise, which averages out over K iterations), the
   profile's memory limit and a cgroup. The clock is this process's, and it times the notebook
   as the competition did, by the whole: from the kernel's start to its end. When each
   checkpoint appeared is recorded for information and never moves that.
4. The submission.zip it leaves in /kaggle/working is scored like `harness score-zip`.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path

from harness.protocol import Protocol

# On top of K budgets (each with the 0.1 s that does not shrink with a budget): a notebook's own
# setup, the kernel's start, its imports and reading the data. A noop notebook on kaggle-mini
# reached its first checkpoint 7.8 s after its kernel started (2026-12-02, this project's 2-core
# machine, K=8; 21 s in all, of which ~1.7 s an iteration saving and zipping ResNet-18
# checkpoints, charged to the iterations as the competition charged them): 2.5x that, for a
# slower machine.
NOTEBOOK_SETUP_S = 20.0
OUTPUT_NOTEBOOK_CAP = 64 << 20  # the executed notebook handed back (for the failing cell's output)
MAX_NOTEBOOK_BYTES = 64 << 20


def read_notebook(path: Path):
    """The notebook at path, or ValueError in one line when it is not one."""
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {path} does not exist: pass the path of an .ipynb file")
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes: a notebook that large has outputs in it; "
                         "clear them (Kernel > Restart & Clear Output) and try again")
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - JSON errors, schema errors, binary files: all "not a notebook"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path} is not a Jupyter notebook (nbformat 4): {first[:200]}") from None
    if not any(c.cell_type == "code" and c.source.strip() for c in nb.cells):
        raise ValueError(f"{path} has no code cells: nothing to run")
    return nb


class _Progress:
    """Counts the checkpoints in /kaggle/tmp while the kernel runs; notes when each first appears."""

    def __init__(self, tmp: Path, k: int, enabled: bool):
        from tqdm import tqdm

        self.tmp, self.k, self.seen, self.times = tmp, k, 0, []
        self.bar = tqdm(total=k, desc="notebook", unit="checkpoint", disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True)
        self.next_check = 0.0

    def tick(self) -> None:
        now = time.perf_counter()
        if now < self.next_check:
            return
        self.next_check = now + 0.1
        try:
            n = sum(1 for p in os.scandir(self.tmp) if p.name.startswith("unlearned_checkpoint_"))
        except OSError:
            return
        if n > self.seen:
            self.bar.update(min(n, self.k) - min(self.seen, self.k))
            self.times += [now] * (n - self.seen)
            self.seen = n

    def close(self) -> None:
        self.bar.close()


def _failure_message(status: dict | None, exit_info: str) -> str:
    """The kernel's status line in words. It comes from inside the sandbox, where the notebook's code
    could have written it: every field is coerced to what it should be, and capped."""
    if not status:
        return f"the notebook's kernel ended without a word ({exit_info})"

    def text(key: str, cap: int = 400) -> str:
        value = status.get(key)
        return (value if isinstance(value, str) else "" if value is None else type(value).__name__)[:cap]

    cell, count = status.get("cell"), status.get("execution_count")
    if status.get("stage") == "cell":
        where = (f"cell {cell + 1}" if type(cell) is int else "a cell") + (f" [{count}]" if type(count) is int else "")
        first = next((ln for ln in text("source", 2000).splitlines() if ln.strip()), "")
        return (f"{where} raised {text('ename', 80)}: {text('evalue')}"
                + (f"\n{where} begins: {first.strip()[:120]}" if first else "")
                + (f"\n{text('traceback', 4000)}" if text("traceback") else ""))
    if status.get("stage") == "kernel":
        return f"the notebook's kernel failed: {text('ename', 80)}: {text('evalue')}"
    error = text("error", 100_000).strip().splitlines()
    return f"the notebook could not be started: {error[-1][:400] if error else exit_info}"


def run(notebook_path: str, protocol: Protocol, k: int | None = None, workers: int | None = None,
        progress: bool = True, record: bool = True, output_notebook: str | None = None,
        zip_out: str | None = None) -> dict:
    import nbformat
    import torch

    from harness import budget, paths, reference_pool, result as result_mod, runner, score, supervise
    from harness.data import sources
    from harness.kaggle import checkpoints, layout, rewrite

    started = time.perf_counter()
    path = Path(notebook_path)
    nb = read_notebook(path)
    submission = runner.Submission(path.resolve(), paths.file_sha256(path))
    k = score.population(protocol, k)
    workers = workers or reference_pool.default_workers(protocol)
    pool = reference_pool.ensure(protocol, k, workers=workers, progress=progress)
    pool_seconds = time.perf_counter() - started
    run_budget = budget.make(protocol, pool, workers=workers, progress=progress)
    cuda = protocol.device != "cpu" and torch.cuda.is_available()
    sandbox = runner.sandbox_mode()
    box = Path(tempfile.mkdtemp(prefix="harness-kaggle-"))
    try:
        kaggle = box / "kaggle"
        layout.write(pool, kaggle)
        inputs = box / "inputs"
        inputs.mkdir()
        (box / "root").mkdir()
        (box / "tmp").mkdir()
        variants = {"notebook.ipynb": rewrite.rewrite(nb, k, cuda),
                    "notebook-paths.ipynb": rewrite.rewrite(nb, k, cuda, str(kaggle))}
        for name, (rewritten, _) in variants.items():
            (inputs / name).write_text(nbformat.writes(rewritten))
        (inputs / "run.json").write_text(json.dumps({
            "memory_limit_gb": protocol.memory_limit_gb if not cuda else None, "threads": None if cuda else 1,
            "fallback_tmp": str(box / "tmp")}))
        expected = "notebook-paths.ipynb" if sandbox == "off" else "notebook.ipynb"
        for line in _rewrite_lines(variants[expected][1], kaggle):
            print(line, file=sys.stderr)
        # Timed as the competition timed a notebook: by the whole, from the kernel's start.
        limit_s = k * run_budget.mean_limit_s + NOTEBOOK_SETUP_S
        # Without namespaces a kernel in a session of its own would outlive a killed sandbox: as
        # a child subreaper this process gets it back, and the runner kills it.
        supervise.become_subreaper()
        bar = _Progress(kaggle / "tmp", k, progress)
        try:
            result = supervise.sandboxed_process(
                box, run_budget.setup_s, limit_s, sandbox, OUTPUT_NOTEBOOK_CAP,
                {"CUDA_VISIBLE_DEVICES": ""} if not cuda else {},
                [*runner.hidden_paths(pool.dir), *sources.private_paths(protocol)], module="harness.kaggle.kernel",
                binds=((kaggle, "/kaggle", True), (kaggle / "input", "/kaggle/input", False)),
                workdir="/kaggle/working", fallback_workdir=kaggle / "working", on_tick=bar.tick,
                limits=runner.run_limits(protocol))
            bar.tick()
        finally:
            bar.close()
        isolation, status = result["isolation"], result["status"]
        namespaced = bool(isolation and isolation.get("filesystem_hidden"))
        used = "notebook.ipynb" if namespaced else "notebook-paths.ipynb"
        rewrites = variants[used][1]
        if used != expected:  # namespaces refused: the /kaggle paths were rewritten as well
            for line in _rewrite_lines(rewrites, kaggle):
                print(line, file=sys.stderr)
        if output_notebook and result["payload"]:
            paths.atomic_write_bytes(Path(output_notebook), result["payload"])
        name = f"notebook {path.name}"
        if result["timed_out"] == "setup":
            raise runner.RunError(f"{name} failed: its kernel was not started within {run_budget.setup_s:.0f} s (the "
                                  "harness's own setup): is the machine overloaded? Run the same command again")
        if result["timed_out"]:
            raise runner.RunError(f"{name} ran past its time limit: killed {limit_s:.0f} s after its kernel started "
                                  f"({k} iterations x {run_budget.mean_limit_s:.2f} s, the budget and its fixed "
                                  f"{run_budget.fixed_s:g} s, + "
                                  f"{NOTEBOOK_SETUP_S:.0f} s for a notebook's own setup); {bar.seen} of {k} checkpoints "
                                  "were written")
        runner.check_sandbox(result, sandbox, f"{name} failed: ")
        if not status or not status.get("ok"):
            raise runner.RunError(f"{name} failed: {_failure_message(status, result['exit_info'])}")
        zip_path = kaggle / "working" / "submission.zip"
        try:
            is_file = stat.S_ISREG(zip_path.lstat().st_mode)  # not a link the notebook planted
        except FileNotFoundError:
            is_file = False
        if not is_file:
            raise runner.RunError(f"{name} finished but left no submission.zip in /kaggle/working: its last cell must "
                                  "zip the checkpoints (`zip submission.zip /kaggle/tmp/*.pth`)")
        notebook_seconds = result["exit"] - result["ready"]  # the whole kernel: nothing a notebook writes moves it
        files = checkpoints.extract(zip_path, protocol, k, box / "checkpoints")
        if zip_out:  # validated: the same checkpoints `harness score-zip` would get
            tmp = Path(zip_out).with_name(f".{Path(zip_out).name}.tmp")
            shutil.copyfile(zip_path, tmp)
            os.replace(tmp, zip_out)
        t_eval = time.perf_counter()
        runs = checkpoints.evaluate(files, protocol, pool, workers, progress, path.name)
    finally:
        shutil.rmtree(box, ignore_errors=True)
    for r in runs:  # one kernel ran all K iterations: each is charged an equal share of its time
        r.update(seconds=notebook_seconds / k, budget_s=run_budget.seconds,
                 over_budget=notebook_seconds / k > run_budget.seconds, isolation=isolation,
                 memory_limit_gb=protocol.memory_limit_gb if not cuda else None)
    # When each checkpoint first appeared in /kaggle/tmp, from the kernel's start: for information
    # only (the notebook writes those files; its time is the whole kernel's).
    notebook = {"seconds": notebook_seconds, "wall_seconds": result["wall"], "time_limit_s": limit_s,
                "setup_allowance_s": NOTEBOOK_SETUP_S, "usage": result["usage"],
                "checkpoints_seen_s": [t - result["ready"] for t in bar.times],
                "kernel": "python3 (ipykernel, nbclient)", "threads": None if cuda else 1,
                "memory_limit_gb": protocol.memory_limit_gb if not cuda else None}
    out = result_mod.build(protocol, pool, submission, runs, run_budget, source="kaggle-notebook", started=started,
                           timings={"reference_pool": pool_seconds, "runs_wall": notebook_seconds,
                                    "evaluation": time.perf_counter() - t_eval},
                           notebook_rewrites=[r.to_dict() for r in rewrites], notebook=notebook)
    if record:
        result_mod.write(out)
    return out


def _rewrite_lines(rewrites, kaggle: Path) -> list[str]:
    from harness.kaggle.rewrite import RULES

    if not rewrites:
        return ["notebook: runs unchanged (no rewrites)"]
    lines = [f"notebook: {len(rewrites)} rewrite(s) to run here:"]
    for rule in dict.fromkeys(r.rule for r in rewrites):
        lines.append(f"  [{rule}] {RULES[rule].format(root=kaggle)}")
        lines += [f"    {r}" for r in rewrites if r.rule == rule]
    return lines
