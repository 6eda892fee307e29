"""What a new user waits for: `harness score submissions/finetune.py` on `default` from an empty
cache (the install excluded), then a new submission on that cached pool, each as the user runs it
(a separate process), with the peak memory of its largest process and of the whole tree.

The runner overhead comes from the second score's run records: everything in a run's task but
the unlearning() call and the trusted evaluation (bench/runner_bench.py explains the parts)."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import runner_bench
from harness import sandbox

REPO = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_pss(root: int) -> int:
    """Proportional set size of a process and all its descendants, now, in bytes: shared pages
    (torch's libraries, mapped by every worker and run) counted once in all, not once per process."""
    parent = sandbox.parents()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration, ValueError):
            pass
        todo += [c for c, p in parent.items() if p == pid]
    return total


def timed_score(submission: Path, profile: str, env: dict) -> dict:
    """One `python -m harness score` as a user runs it: wall seconds, the peak memory of its process
    tree (PSS, sampled), the result."""
    cmd = [sys.executable, "-m", "harness", "score", str(submission), "--profile", profile, "--json", "--quiet"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_pss(proc.pid))
            time.sleep(0.5)  # smaps_rollup walks page tables: sample gently

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"the benchmark score failed (exit {proc.returncode}): {err.strip().splitlines()[-1:]}")
    return {"wall_s": wall, "peak_tree_pss_mb": peak[0] / 2**20, "result": json.loads(out.strip().splitlines()[-1])}


def main(profile: str = "default") -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-first-run-") as tmp:
        env = {**os.environ, "HARNESS_CACHE_DIR": f"{tmp}/cache", "HARNESS_RESULTS_DIR": f"{tmp}/results"}
        first = timed_score(REPO / "submissions" / "finetune.py", profile, env)
        # A new submission: finetune with one changed byte, so no run of the first score is reused.
        other = Path(tmp) / "finetune_copy.py"
        other.write_bytes((REPO / "submissions" / "finetune.py").read_bytes() + b"\n# benchmark copy\n")
        cached = timed_score(other, profile, env)
        runs_dir = next(Path(tmp, "cache").glob(f"{profile}-*/runs/finetune_copy-*"))
        runs = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("run_*.json"))]
        first_runs = [json.loads(p.read_text()) for p in
                      sorted(next(Path(tmp, "cache").glob(f"{profile}-*/runs/finetune-*")).glob("run_*.json"))]
        pool = json.loads(next(Path(tmp, "cache").glob(f"{profile}-*/manifest.json")).read_text())
    r1, r2 = first["result"], cached["result"]
    out = {
        "profile": profile, "k": r1["k"],
        "first_s": first["wall_s"], "first_pool_s": r1["seconds"]["reference_pool"],
        "first_runs_s": r1["seconds"]["runs_wall"], "retrain_mean_s": r1["seconds"]["retrain_mean"],
        "cached_s": cached["wall_s"], "cached_runs_s": r2["seconds"]["runs_wall"],
        # The largest single process's peak resident set (what /usr/bin/time reports; every process of
        # both scores has been waited for by now), and the whole tree's peak memory.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "peak_tree_pss_mb": max(first["peak_tree_pss_mb"], cached["peak_tree_pss_mb"]),
        "score": r1["score"], "null_forget_quality": r1["null_forget_quality"],
        "original_forget_acc": r1["original"]["forget_acc"], "retrained_forget_acc": r1["reference"]["forget_acc"],
        "models_trained": pool["last_build"]["models_trained"],
        "runner": runner_bench.summarise(runs, r2["seconds"]["runs_wall"], r2.get("workers") or os.cpu_count()),
        # The run budget of this pool (harness.budget), and the timer's noise: one fixed workload
        # (finetune: the same steps every run) timed 2K times, each score's slowest run against its median.
        "budget": {key: r1["budget"][key] for key in ("seconds", "tolerance_s", "limit_s", "fraction", "retrain_s",
                                                      "basis")},
        "timer_noise": timer_noise([[r["seconds"] for r in first_runs], [r["seconds"] for r in runs]]),
    }
    b, noise = out["budget"], out["timer_noise"]
    print(f"budget on {profile}: one retrain {b['retrain_s']:.2f} s (basis {b['basis']}), a run {b['seconds']:.2f} s "
          f"+ {b['tolerance_s']:.2f} s tolerance; timer noise: finetune's runs {noise['median_s']:.2f} s median, "
          f"slowest {noise['max_s']:.2f} s, +{100 * noise['spread']:.0f}% at most over a score's median")
    print(f"first score on {profile} from an empty cache: {out['first_s']:.0f} s (pool {out['first_pool_s']:.0f} s, "
          f"{out['models_trained']} models at {out['retrain_mean_s']:.1f} s each per worker; runs "
          f"{out['first_runs_s']:.0f} s); a new submission on the cached pool: {out['cached_s']:.0f} s; "
          f"peak RSS of one process {out['peak_rss_mb']:.0f} MB, peak PSS of the whole tree {out['peak_tree_pss_mb']:.0f} MB")
    return out


def timer_noise(scores: list[list[float]]) -> dict:
    """How far one fixed workload's run times spread: per score, the slowest run over that score's
    median (the machine's state between scores moves the median too), the largest of those."""
    import numpy as np

    spread = [float(np.max(s) / np.median(s) - 1) for s in scores if len(s)]
    every = np.concatenate([np.asarray(s, dtype=float) for s in scores])
    return {"runs": int(every.size), "median_s": float(np.median(every)), "p95_s": float(np.percentile(every, 95)),
            "max_s": float(every.max()), "spread": max(spread), "spread_per_score": spread}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "default")
