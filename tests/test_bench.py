"""`make bench`'s own arithmetic, where it can be checked in seconds (the figures themselves are
measurements: docs/speed.md quotes them with the command, date and machine)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from bench import __main__ as bench_main, first_run, runner_bench
from conftest import REPO


def test_tree_memory_counts_the_children():
    alone = first_run.tree_pss(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; x = b'1' * (200 << 20); "
                              "sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"up\n"
        grown = first_run.tree_pss(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert grown - alone > 150 << 20, (alone, grown)  # the child's 200 MB, counted once


def test_runner_overhead_is_what_is_neither_the_call_nor_the_evaluation():
    runs = [{"seconds": 1.0, "task_seconds": 4.0, "eval_seconds": 0.5, "setup_seconds": 2.0}] * 4
    out = runner_bench.summarise(runs, wall=8.0, workers=2)
    assert out["overhead_s_mean"] == 2.5 and out["overhead_fraction"] == 2.5 / 4.0
    assert out["overhead_fraction_end_to_end"] == 1 - (4 * 1.5) / (8.0 * 2)


def test_headline_keys_come_from_their_parts():
    out = {"speed": {"train_loop_ratio": 1.02, "flop_fraction": 0.9}, "metric": {"speedup": 1000.0},
           "first_run": {"first_s": 170.0, "cached_s": 65.0, "peak_rss_mb": 870.0, "peak_tree_pss_mb": 2300.0,
                         "runner": {"overhead_fraction": 0.5}, "budget": {"retrain_s": 6.2, "seconds": 1.24},
                         "timer_noise": {"spread": 0.47}}}
    assert bench_main.headline(out) == {
        "train_loop_ratio": 1.02, "flop_fraction": 0.9, "scorer_speedup": 1000.0, "runner_overhead_fraction": 0.5,
        "score_default_first_s": 170.0, "score_default_cached_s": 65.0, "peak_rss_mb": 870.0,
        "peak_tree_pss_mb": 2300.0, "retrain_s": 6.2, "budget_s": 1.24, "timer_noise": 0.47}
    assert bench_main.headline({"metric": {"speedup": 3.0}}) == {"scorer_speedup": 3.0}  # only what ran


def test_timer_noise_is_each_scores_slowest_run_over_its_median():
    out = first_run.timer_noise([[1.0, 1.0, 1.2, 1.5], [2.0, 2.0, 2.2]])
    assert out["runs"] == 7 and out["max_s"] == 2.2 and out["median_s"] == 1.5
    assert out["spread_per_score"] == [1.5 / 1.1 - 1, 2.2 / 2.0 - 1] and out["spread"] == 1.5 / 1.1 - 1


def test_copy_check_margins_are_distances_over_thresholds():
    from bench import copycheck
    from harness import copies

    near = {"weights_distance": 1.3, "spectrum_distance": 0.03, "function_distance": 0.5}
    m = copycheck.margins(near, closest_pair=0.8)
    assert m["weights"] == 1.3 / copies.NEAR_WEIGHTS and m["spectrum"] == 0.03 / copies.NEAR_SPECTRUM
    assert m["function"] == 0.5 / (copies.NEAR_FUNCTION * 0.8)


def test_an_unknown_part_is_one_line():
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "bench", "everything"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: unknown benchmark 'everything': use one of all, runner, copycheck, speed, metric, first, scaling, stack, "
        "kernels, gpu, paired"]
    assert time.perf_counter() - started < 30
