"""The time an unlearning run may take: the competition's rule, in one value made in one place.

The competition allowed its 512 runs about 20% of one retrain each (PROTOCOL §3), on the machine
that ran them. Here a run's budget is `unlearn_budget_fraction` x the seconds of one retrain
measured on the machine that scores, in the same kind of worker and with the same thread count:

- basis "pool": the reference pool's own retrains were trained on this machine (their records
  carry the machine's hash, harness.training.machine): the mean of their seconds.
- basis "calibrated": the pool was trained elsewhere (a copied cache, a GPU pool scored on a
  CPU): every worker times the same slice of the recipe now (CALIBRATION_EPOCHS of a fresh
  model; the last epoch counts), and the pool's retrain time is scaled by that slice against
  the same slice in the pool's records.

What every run pays and no submission can shorten (the run's process, imports including the
optimisers, the model copy, the loaders) happens before the run's clock starts; the clock is the
worker's, from the run's `ready` line to the end of its result pipe. A run fails when that exceeds
the budget plus the protocol's tolerance for timer noise (a fraction of the budget, measured by
`make bench`, and never less than unlearn_budget_tolerance_min_s, for the part of a run's time that
does not shrink with its budget). The tolerance is for noise, and noise averages out: a score fails
when the mean of its runs is past the budget plus that fixed part (`mean_limit_s`), so a method
that is slower than the budget in every run does not live off the tolerance.
`setup_s` (unlearn_grace_s) bounds only the harness's own work before `ready`.

Not the competition's budget, and said so in every result and on the leaderboard: a custom
fraction (`--budget-fraction`), an oracle's own budget (declared in its file or with
`--oracle`), and a floor above the fraction (`unlearn_budget_min_s`, which only test protocols
set).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.protocol import Protocol

CALIBRATION_EPOCHS = 2     # the first epoch of a fresh process pays one-time costs; the second is timed
OVERRUN_MEASURED = 2.0     # a run over its budget is killed at this many budgets (or the limit), so
                           # that the failure can say by how much it was over
DEFAULT_ORACLE_FRACTION = 3.0


@dataclass(frozen=True)
class Budget:
    seconds: float           # what a run may take: fraction x retrain_s, or the floor where it is higher
    tolerance_s: float       # timer noise allowed on top: protocol.unlearn_budget_tolerance x seconds, at least
                             # protocol.unlearn_budget_tolerance_min_s
    setup_s: float           # the harness's own work before the clock starts (protocol.unlearn_grace_s)
    fraction: float
    retrain_s: float         # one retrain on this machine
    basis: str               # "pool" or "calibrated" (module docstring)
    floor_s: float           # protocol.unlearn_budget_min_s (0: none)
    protocol_budget: bool    # the protocol's own fraction
    oracle: bool             # an oracle's own budget (never ranked beside the others)
    fixed_s: float = 0.0     # protocol.unlearn_budget_tolerance_min_s: the part of a run's time that does not
                             # shrink with its budget
    calibration: dict | None = None

    @property
    def limit_s(self) -> float:
        """Past this a run has failed: the budget plus the tolerance."""
        return self.seconds + self.tolerance_s

    @property
    def mean_limit_s(self) -> float:
        """Past this the mean of a score's runs has failed: the tolerance covers one run's timer
        noise, which averages out over K runs; a method's own time does not."""
        return self.seconds + self.fixed_s

    def mean_overrun(self, seconds: list[float]) -> str | None:
        """The one-line failure of runs whose mean is past mean_limit_s, else None."""
        if not seconds:
            return None
        mean = sum(seconds) / len(seconds)
        if mean <= self.mean_limit_s:
            return None
        return (f"its runs exceeded their time budget on average: they took {mean:.2f} s, "
                f"{mean / self.seconds:.1f}x the budget of {self.seconds:.2f} s (+ {self.fixed_s:.2f} s that does not "
                f"shrink with a budget), over by {mean - self.mean_limit_s:.2f} s; one run may go past the budget by the "
                f"tolerance for timer noise ({self.tolerance_s:.2f} s), the mean of {len(seconds)} runs may not")

    @property
    def kill_s(self) -> float:
        """When the worker kills a run, counted from `ready`."""
        return max(self.limit_s, OVERRUN_MEASURED * self.seconds)

    @property
    def floor_binds(self) -> bool:
        return self.floor_s > self.fraction * self.retrain_s

    @property
    def competition(self) -> bool:
        """The competition's rule: the protocol's fraction of a retrain timed here, no floor above it."""
        return self.protocol_budget and not self.oracle and not self.floor_binds

    def why_not_competition(self) -> str | None:
        if self.oracle:
            return f"oracle, own budget ({self.fraction:g} x one retrain)"
        if not self.protocol_budget:
            return f"custom budget ({self.fraction:g} x one retrain)"
        if self.floor_binds:
            return f"a floor of {self.floor_s:g} s, above {self.fraction:g} x one retrain ({self.fraction * self.retrain_s:.2f} s)"
        return None

    def to_dict(self) -> dict:
        return {**asdict(self), "limit_s": self.limit_s, "mean_limit_s": self.mean_limit_s,
                "competition": self.competition,
                "not_competition": self.why_not_competition()}


def make(protocol: Protocol, pool, fraction: float | None = None, oracle: bool = False,
         workers: int | None = None, progress: bool = False) -> Budget:
    """The budget of every run of one score on `pool`. `fraction` overrides the protocol's
    (custom, or the oracle's own when `oracle`)."""
    if fraction is not None and not fraction > 0:
        raise ValueError(f"a budget fraction must be positive (got {fraction})")
    retrain_s, basis, calibration = retrain_seconds(protocol, pool, workers, progress)
    own = protocol.unlearn_budget_fraction if fraction is None else fraction
    seconds = max(protocol.unlearn_budget_min_s, own * retrain_s)
    tolerance = max(protocol.unlearn_budget_tolerance * seconds, protocol.unlearn_budget_tolerance_min_s)
    return Budget(seconds=seconds, tolerance_s=tolerance,
                  setup_s=protocol.unlearn_grace_s, fraction=own, retrain_s=retrain_s, basis=basis,
                  floor_s=protocol.unlearn_budget_min_s, protocol_budget=fraction is None, oracle=oracle,
                  fixed_s=protocol.unlearn_budget_tolerance_min_s, calibration=calibration)


_CALIBRATED: dict = {}


def retrain_seconds(protocol: Protocol, pool, workers: int | None = None, progress: bool = False
                    ) -> tuple[float, str, dict | None]:
    """(seconds of one retrain on this machine, basis, calibration details or None)."""
    from harness import parallel, reference_pool

    alone = [r for r in [pool.original, *pool.retrains] if not r.get("stack") and not r.get("given")]
    here = _machine_here(protocol)
    if alone and all(r.get("machine") == here for r in alone):
        return pool.retrain_seconds(), "pool", None
    reference = [float(_median(r["epoch_seconds"][1:] or r["epoch_seconds"])) for r in alone if r.get("epoch_seconds")]
    if not reference:
        raise ValueError(f"reference pool {pool.dir} records no epoch times to calibrate the run budget against: "
                         f"build it again (`make reference PROFILE={protocol.name}`)")
    key = (str(pool.dir), here)
    if key not in _CALIBRATED:
        workers = workers or reference_pool.default_workers(protocol)
        job = (reference_pool.time_slice, (protocol.to_dict(), str(pool.data_root), CALIBRATION_EPOCHS))
        slices = list(parallel.run([job] * workers, workers, progress, desc="timing the recipe here", unit="slice"))
        _CALIBRATED[key] = float(_median(slices))
    slice_here, slice_pool = _CALIBRATED[key], float(_median(reference))
    seconds = pool.retrain_seconds() * slice_here / slice_pool
    return seconds, "calibrated", {"slice_here_s": slice_here, "slice_pool_s": slice_pool,
                                   "pool_retrain_s": pool.retrain_seconds(), "machine": here,
                                   "pool_machines": sorted({str(r.get("machine")) for r in alone})}


def _machine_here(protocol: Protocol) -> str:
    """This machine's hash as a worker would record it (one thread on a CPU profile)."""
    import torch

    from harness import reference_pool, training

    threads = torch.get_num_threads()
    reference_pool.set_worker_threads(protocol)
    try:
        return training.machine(training.resolve_device(protocol))
    finally:
        torch.set_num_threads(threads)


def _median(values) -> float:
    import numpy as np

    return float(np.median(np.asarray(values, dtype=np.float64)))
