"""Runner overhead on a profile: how much of a scored run is not the submission's own work.

Overhead = everything in a run's task except the unlearning() call and the trusted evaluation:
the sandbox (namespaces, a new root file system), the run's process (a fork of the worker's zygote,
or a fresh interpreter importing torch), loading the inputs, handing back the weights, the copy
check and the record write. `setup` is the part before the run's clock starts. Measured on a fresh
copy of finetune (so no cached runs are reused) against the cached reference pool (built first if
absent), once with the zygote and once with fresh interpreters (HARNESS_ZYGOTE=off, in a process
of its own), in one bench run so that the ratio compares like with like."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import budget, protocol as protocol_mod, reference_pool, runner, zygote

REPO = Path(__file__).resolve().parents[1]


def main(profile: str = "default") -> dict:
    out = measure(profile)
    fresh = subprocess.run([sys.executable, "-c", f"import json; from bench import runner_bench; "
                            f"print(json.dumps(runner_bench.measure({profile!r}, quiet=True)))"],
                           cwd=REPO, env={**os.environ, zygote.ENV: "off"}, capture_output=True, text=True, check=True)
    out["fresh_interpreters"] = json.loads(fresh.stdout.strip().splitlines()[-1])
    off = out["fresh_interpreters"]
    print(f"  with fresh interpreters instead of the zygote: setup {off['setup_s_mean']:.3f} s/run, overhead "
          f"{100 * off['overhead_fraction']:.1f}%, {off['harness_wall_s']:.1f} s wall "
          f"({off['harness_wall_s'] / out['harness_wall_s']:.2f}x the zygote's)")
    return out


def measure(profile: str = "default", quiet: bool = False) -> dict:
    protocol = protocol_mod.get(profile)
    pool = reference_pool.ensure(protocol, protocol.k, progress=not quiet)
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        sub_path = Path(tmp) / f"bench_finetune_{time.time_ns()}.py"
        shutil.copy(REPO / "submissions" / "finetune.py", sub_path)
        sub = runner.Submission.load(sub_path)
        workers = reference_pool.default_workers(protocol)
        started = time.perf_counter()
        runs = runner.run_all(protocol, pool, sub, protocol.k, budget.make(protocol, pool, workers=workers), workers,
                              progress=not quiet)
        wall = time.perf_counter() - started
        shutil.rmtree(runner.runs_dir(pool.dir, protocol, sub), ignore_errors=True)
    out = {"profile": profile, **summarise(runs, wall, workers),
           "started_by": sorted({str((r.get("isolation") or {}).get("started_by")) for r in runs})}
    if quiet:
        return out
    print(f"runner overhead on {profile} (K={len(runs)}, {workers} workers, finetune):")
    print(f"  unlearning() call   {out['unlearning_call_s_mean']:.3f} s/run")
    print(f"  trusted evaluation  {out['evaluation_s_mean']:.3f} s/run (retain, test, forget, validation)")
    print(f"  runner overhead     {out['overhead_s_mean']:.3f} s/run = {100 * out['overhead_fraction']:.1f}% of "
          f"{out['run_task_s_mean']:.3f} s (sandbox, interpreter, inputs, weights, copy check, records)")
    print(f"    of which setup    {out['setup_s_mean']:.3f} s/run before the run's clock starts "
          f"(namespaces, new root, the run's process: {', '.join(out['started_by'])}; loading the inputs)")
    print(f"  end to end          {wall:.1f} s wall for {len(runs)} runs -> "
          f"{100 * out['overhead_fraction_end_to_end']:.1f}% beyond calls and evaluation (incl. worker start)")
    return out


def summarise(runs: list[dict], wall: float, workers: int) -> dict:
    """Where a run's time goes, from its records (seconds per run and the overhead fractions)."""
    call = np.array([r["seconds"] for r in runs])
    task = np.array([r["task_seconds"] for r in runs])
    evaluation = np.array([r["eval_seconds"] for r in runs])
    setup = np.array([r["setup_seconds"] for r in runs])
    overhead = task - call - evaluation  # process start, model copy, loaders, import, saving, records
    return {
        "k": len(runs), "workers": workers,
        "unlearning_call_s_mean": float(call.mean()), "evaluation_s_mean": float(evaluation.mean()),
        "run_task_s_mean": float(task.mean()), "overhead_s_mean": float(overhead.mean()),
        "setup_s_mean": float(setup.mean()),
        "overhead_fraction": float(overhead.sum() / task.sum()),
        "harness_wall_s": wall,
        # the same, seen from the harness: whatever the workers did besides calls and evaluation
        "overhead_fraction_end_to_end": float(1 - (call.sum() + evaluation.sum()) / (wall * workers)),
    }


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "default")
