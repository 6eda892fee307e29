"""The GPU path, checked where it can be on a CPU: workers are fresh interpreters (nothing forks
a process that has initialised CUDA), the device is recorded, and bf16 is an option with its own
pool and name."""
from __future__ import annotations

import os
import pytest
import torch

from harness import cli, data, parallel, protocol, training


def _whoami() -> tuple[int, bytes]:
    with open("/proc/self/cmdline", "rb") as f:
        return os.getpid(), f.read()


@pytest.mark.parametrize("n", [1, 2])
def test_jobs_run_in_exec_started_worker_processes(n):
    # Never in the harness process (which stays free of training state and CUDA), and never a
    # fork: a forked worker would carry the harness's command line, and any CUDA context it had.
    # The runs themselves are `python -m harness.sandbox`, exec-started by the worker.
    ours = _whoami()
    for pid, cmdline in parallel.run([(_whoami, ())] * n, n, False, "probe", "job"):
        assert pid != ours[0]
        assert cmdline != ours[1]


def test_precision_is_a_pool_of_its_own_and_named():
    fp32 = cli._protocol(cli.build_parser().parse_args(["score", "x.py", "--profile", "quick"]))
    bf16 = cli._protocol(cli.build_parser().parse_args(["score", "x.py", "--profile", "quick", "--precision", "bf16",
                                                        "--pool", "dev"]))
    assert (fp32.name, fp32.precision) == ("quick", "fp32") and fp32 == protocol.QUICK
    assert (bf16.name, bf16.precision) == ("quick+bf16-dev", "bf16")
    assert bf16.reference_hash() != protocol.dev(protocol.QUICK).reference_hash()


def test_bf16_trains_float32_weights_that_differ_from_fp32(cache):
    p = protocol.QUICK.replace(epochs=1, retrain_best_from_epoch=1)
    splits = data.load_splits(data.ensure_data(p, cache))
    states = {}
    for precision in ("fp32", "bf16"):
        state, info = training.train(p.replace(precision=precision), splits["retain"], splits["validation"], 1, 1)
        assert info["precision"] == precision and info["device"] == "cpu"
        assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
        assert all(v.isfinite().all() for v in state.values() if v.is_floating_point())
        states[precision] = state
    assert any(not torch.equal(states["fp32"][k], states["bf16"][k]) for k in states["fp32"])


def test_unknown_precision_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown precision 'fp8': use one of fp32, bf16"):
        training.autocast(protocol.QUICK.replace(precision="fp8"), torch.device("cpu"))
