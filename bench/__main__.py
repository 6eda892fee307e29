"""`make bench`: the speed figures quoted in the README, measured in one run.

    python -m bench              all benchmarks (runner overhead on `default` builds its pool if absent)
    python -m bench metric       only the scorer
    python -m bench runner [P]   only the runner overhead, on profile P (default: default)
"""
from __future__ import annotations

import os
import platform
import sys

from harness import paths


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "all"
    out = {"machine": platform.platform(), "cpus": os.cpu_count()}
    if which in ("all", "metric"):
        from bench import metric_bench

        out["metric"] = metric_bench.main()
    if which in ("all", "runner"):
        from bench import runner_bench

        out["runner"] = runner_bench.main(argv[1] if len(argv) > 1 else "default")
    target = paths.results_dir() / "bench.json"
    paths.atomic_write_json(target, out)
    print(f"figures written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
