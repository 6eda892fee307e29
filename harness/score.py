"""Score a submission end to end: reference pool → K unlearning runs → metric → result file →
leaderboard row (harness.result)."""
from __future__ import annotations

import time

from harness import budget, reference_pool, result as result_mod, runner
from harness.protocol import Protocol


def population(protocol: Protocol, k: int | None) -> int:
    """K for a score (the profile's when not given); ValueError below 2."""
    k = protocol.k if k is None else k
    if k < 2:
        raise ValueError(f"--k must be at least 2 (got {k}): the metric compares two populations of models")
    return k


def score(submission_path: str, protocol: Protocol, k: int | None = None, workers: int | None = None,
          budget_fraction: float | None = None, progress: bool = True, record: bool = True,
          oracle: float | None = None, on_run=None) -> dict:
    """Score a submission. `budget_fraction` gives it a custom budget; `oracle` (or an
    ORACLE_BUDGET_FRACTION declared in the file) scores it as an oracle with its own budget. Either
    way the result is never ranked beside the protocol budget's (harness.budget). `on_run` is
runner.run_all's."""
    started = time.perf_counter()
    submission = runner.Submission.load(submission_path)   # before anything is written
    k = population(protocol, k)
    fraction, is_oracle = budget_choice(submission, budget_fraction, oracle)
    workers = workers or reference_pool.default_workers(protocol)
    pool = reference_pool.ensure(protocol, k, workers=workers, progress=progress)
    pool_seconds = time.perf_counter() - started
    run_budget = budget.make(protocol, pool, fraction, is_oracle, workers, progress)
    t_runs = time.perf_counter()
    runs = runner.run_all(protocol, pool, submission, k, run_budget, workers, progress, on_run)
    runs_seconds = time.perf_counter() - t_runs
    overrun = run_budget.mean_overrun([r["seconds"] for r in runs if r.get("seconds") is not None])
    if overrun:   # the runs stay stored: they are sound, it is the score that the rule refuses
        raise runner.RunError(overrun)
    result = result_mod.build(protocol, pool, submission, runs, run_budget, source="runner", started=started,
                              timings={"reference_pool": pool_seconds, "runs_wall": runs_seconds},
                              execution=result_mod.execution(workers))
    if record:
        result_mod.write(result)
    return result


def budget_choice(submission: runner.Submission, budget_fraction: float | None, oracle: float | None
                  ) -> tuple[float | None, bool]:
    """(fraction, oracle?) of a score: the protocol's (None), a custom one, or an oracle's own
    (from the command line, else declared in the file)."""
    if budget_fraction is not None and not budget_fraction > 0:
        raise ValueError(f"--budget-fraction must be positive (got {budget_fraction})")
    if oracle is not None and not oracle > 0:
        raise ValueError(f"--oracle must be a positive fraction of one retrain (got {oracle})")
    if budget_fraction is not None and oracle is not None:
        raise ValueError("--budget-fraction and --oracle both set a budget: pass one of them")
    declared = submission.oracle_budget_fraction
    if oracle is not None or (declared is not None and budget_fraction is None):
        return (oracle if oracle is not None else declared), True
    return budget_fraction, False


