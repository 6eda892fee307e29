"""Fan work out over worker processes of one thread each, with a progress bar.

On a 2-core machine one process with two intra-op threads loses most of its speed whenever
anything else runs, while single-thread processes hold steady: so the unit of parallelism is
the process (joblib's loky backend, whose workers persist and keep their loaded data)."""
from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator

from joblib import Parallel, delayed
from tqdm import tqdm


def run(jobs: Iterable[tuple[Callable, tuple]], workers: int, progress: bool, desc: str,
        unit: str) -> Iterator:
    """Yield each job's result as it finishes (any order). The first exception is re-raised in
    the caller and the jobs not yet started are cancelled."""
    jobs = list(jobs)
    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress, file=sys.stderr,
               dynamic_ncols=True, smoothing=0.1)
    try:
        # Always worker processes, even for one job: the harness process stays free of the
        # training state and of the forked runs that the workers start.
        results = Parallel(n_jobs=max(1, min(workers, len(jobs))), backend="loky",
                           return_as="generator_unordered", inner_max_num_threads=1)(
            delayed(fn)(*args) for fn, args in jobs)
        for result in results:
            bar.update(1)
            yield result
    finally:
        bar.close()
