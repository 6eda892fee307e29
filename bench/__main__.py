"""`make bench`: the speed figures quoted in docs/speed.md, measured in one run on one machine, so
that ratios compare like with like. Writes bench/results.json, bench/scaling.png and bench/paired.png.

    python -m bench              everything (~15 min on 2 cores)
    python -m bench metric       only the scorer
    python -m bench speed        only the training loop against a bare loop, and the FLOP fraction
    python -m bench first        only the first and the cached score on `default`
    python -m bench runner [P]   only the runner overhead, on profile P's cached pool (default: default)
    python -m bench scaling      only the scaling figures
    python -m bench stack        only stacked against single-model training
    python -m bench kernels      only the pool's kernel paths: eager, NCHW, fused Adam, torch.compile
    python -m bench gpu          only the competition slice (a GPU when there is one; else a CPU check)
    python -m bench copycheck [P] the copy check's margins on every run stored on P's pool (after score-all)
    python -m bench paired [P]   only the paired comparison's calibration on real retrained models (bench/paired.png)
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

from harness import paths

OUT = Path(__file__).resolve().parent
PARTS = ("speed", "metric", "first", "scaling", "stack", "kernels", "gpu", "paired")


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": dt.date.today().isoformat()}


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "all"
    if which not in ("all", "runner", "copycheck", *PARTS):
        print(f"error: unknown benchmark {which!r}: use one of all, runner, copycheck, {', '.join(PARTS)}",
              file=sys.stderr)
        return 2
    if which in ("runner", "copycheck"):  # on a profile's cached pool, nothing written
        from bench import copycheck, runner_bench

        (runner_bench if which == "runner" else copycheck).main(argv[1] if len(argv) > 1 else "default")
        return 0
    started = time.perf_counter()
    out: dict = {"machine": machine()}
    if which in ("all", "speed"):
        from bench import speed

        out["speed"] = speed.main()
    if which in ("all", "metric"):
        from bench import metric_bench

        out["metric"] = metric_bench.main()
    if which in ("all", "first"):
        from bench import first_run

        out["first_run"] = first_run.main("default")
    if which in ("all", "scaling"):
        from bench import scaling

        out["scaling"] = scaling.main()
        scaling.plot(out["scaling"], OUT / "scaling.png")
    if which in ("all", "stack"):
        from bench import stack_bench

        out["stack"] = stack_bench.main()
    if which in ("all", "kernels"):
        from bench import kernels

        out["kernels"] = kernels.main()
    if which in ("all", "gpu"):
        from bench import gpu

        out["competition_slice"] = gpu.main()
    if which in ("all", "paired"):
        from bench import paired

        out["paired"] = paired.main(argv[1] if which == "paired" and len(argv) > 1 else "quick", OUT / "paired.png")
    out["bench_s"] = time.perf_counter() - started
    out.update(headline(out))
    target = OUT / ("results.json" if which == "all" else f"results-{which}.json")
    paths.atomic_write_json(target, out)
    table(out)
    print(f"figures written to {target}")
    return 0


def headline(out: dict) -> dict:
    """The top-level figures (issue 13's keys), where their part ran."""
    first, speed_ = out.get("first_run", {}), out.get("speed", {})
    return {key: value for key, value in {
        "train_loop_ratio": speed_.get("train_loop_ratio"),
        "flop_fraction": speed_.get("flop_fraction"),
        "scorer_speedup": out.get("metric", {}).get("speedup"),
        "runner_overhead_fraction": first.get("runner", {}).get("overhead_fraction"),
        "score_default_first_s": first.get("first_s"),
        "score_default_cached_s": first.get("cached_s"),
        "peak_rss_mb": first.get("peak_rss_mb"),
        "peak_tree_pss_mb": first.get("peak_tree_pss_mb"),
        "retrain_s": first.get("budget", {}).get("retrain_s"),
        "budget_s": first.get("budget", {}).get("seconds"),
        "timer_noise": first.get("timer_noise", {}).get("spread"),
    }.items() if value is not None}


def table(out: dict) -> None:
    m = out["machine"]
    print(f"\n{m['cpu']}, {m['cpus']} CPUs, torch {m['torch']}, {m['date']} (bench took {out['bench_s']:.0f} s)")
    rows = [("train_loop_ratio", "harness loop / bare loop", "{:.3f}"),
            ("flop_fraction", "training FLOP/s / 1-thread matmul peak", "{:.2f}"),
            ("scorer_speedup", "fast ε / direct evaluation", "{:.0f}x"),
            ("runner_overhead_fraction", "run task outside call + evaluation", "{:.1%}"),
            ("score_default_first_s", "first score on default, empty cache", "{:.0f} s"),
            ("score_default_cached_s", "new submission, cached pool", "{:.0f} s"),
            ("peak_rss_mb", "peak RSS of the largest process", "{:.0f} MB"),
            ("peak_tree_pss_mb", "peak PSS of the whole process tree", "{:.0f} MB"),
            ("retrain_s", "one retrain on default, timed here", "{:.2f} s"),
            ("budget_s", "a run's budget: 0.2 x one retrain", "{:.2f} s"),
            ("timer_noise", "one workload's slowest run over its median", "+{:.0%}")]
    for key, what, fmt in rows:
        if key in out:
            print(f"  {key:26s} {fmt.format(out[key]):>10s}   {what}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
