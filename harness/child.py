"""The run: `python -m harness.child INPUTS RESULT_FD CONTROL_FD` in the sandbox, or main() called
in a fork of the worker's zygote (harness.zygote), where the imports below are done already.

It is handed a folder with the original weights, the retain/forget/validation splits, the
submission and its seed (`run.json`), and two pipes to the trusted worker. Until the submission
is imported this is harness code; it then writes one line, `ready`, on the control pipe and
closes it, so the worker's clock starts before any submission code runs. After unlearning() it
writes on the result pipe one JSON line (ok, or the stage and error) and, when ok, the state
dict. That is all the worker takes from a run: it measures time itself and scores the weights in
trusted code. The status line only words a failure; nothing it says is believed.
"""
from __future__ import annotations

import importlib.util
import inspect
import io
import json
import os
import random
import resource
import sys
import traceback
from pathlib import Path


def _limit_memory(gib: float) -> None:
    """Address space, not resident size: CPU torch reserves little, and an unbounded allocation
    fails fast with MemoryError instead of taking the machine down."""
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = current + int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run(inputs: Path, result: int, control: int) -> int:
    import numpy as np
    import torch

    from harness import data, models, protocol as protocol_mod, training

    spec = json.loads((inputs / "run.json").read_text())
    protocol = protocol_mod.from_dict(spec["protocol"])
    seed = spec["seed"]
    if protocol.device != "cuda":
        torch.set_num_threads(1)  # one thread per run, as the reference models were trained
    training.warm_up(protocol)
    device = training.resolve_device(protocol)
    net = models.build(protocol)
    net.load_state_dict(torch.load(inputs / "original.pt", map_location="cpu", weights_only=True))
    # In the memory format the reference models were trained in: on a CPU its convolutions run
    # ~1.7x faster than in NCHW, so a run's budget buys the same work a retrain's second did.
    net.to(device).to(memory_format=torch.channels_last)
    splits = torch.load(inputs / "splits.pt", map_location="cpu", weights_only=True)
    # Seeded last, so the random state unlearning() starts from is the seed's alone: a Kaggle
    # notebook that seeds each iteration after reloading the original starts from the same state.
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    loaders = [data.make_loader(data.Split(**splits[name]), protocol.pixel_scale, protocol.loader_batch_size,
                                shuffle=True, seed=seed + offset)
               for offset, name in enumerate(("retain", "forget", "validation"))]
    del splits
    if spec["memory_limit_gb"] is not None:
        _limit_memory(spec["memory_limit_gb"])

    def finish(status: dict, payload: bytes = b"") -> int:
        with os.fdopen(result, "wb") as f:
            f.write((json.dumps(status) + "\n").encode() + payload)
        return 0 if status["ok"] else 3

    def fail(stage: str, error: str) -> int:
        return finish({"ok": False, "stage": stage, "error": error})

    os.write(control, b"ready\n")
    os.close(control)
    # ---- submission code from here on --------------------------------------------------------
    try:
        spec_ = importlib.util.spec_from_file_location("submission", inputs / "submission.py")
        module = importlib.util.module_from_spec(spec_)
        sys.modules["submission"] = module
        spec_.loader.exec_module(module)
    except BaseException:  # noqa: BLE001
        return fail("import", traceback.format_exc())
    fn = getattr(module, "unlearning", None)
    if fn is None:
        return fail("contract", "the file defines no `unlearning` function: "
                                "def unlearning(net, retain_loader, forget_loader, val_loader)")
    if not inspect.isfunction(fn):
        return fail("contract", f"`unlearning` is a {type(fn).__name__}, not a function")
    try:
        inspect.signature(fn).bind(net, *loaders)
    except TypeError as e:
        return fail("contract", f"`unlearning{inspect.signature(fn)}` cannot be called as "
                                f"unlearning(net, retain_loader, forget_loader, val_loader): {e}")
    try:
        returned = fn(net, *loaders)
    except SystemExit as e:
        return fail("unlearning", f"the submission called sys.exit({e.code!r}): return from unlearning() instead")
    except BaseException:  # noqa: BLE001
        return fail("unlearning", traceback.format_exc())
    if returned is not None and returned is not net:
        return fail("contract", f"unlearning() returned a {type(returned).__name__} that is not the net it was given: "
                                "change `net` in place and return nothing (or return net)")
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    return finish({"ok": True}, buf.getvalue())


def main(run_fn=run) -> int:
    """`python -m <module> INPUTS RESULT_FD CONTROL_FD`: run_fn(inputs, result, control), and a
    failure before the submission ran reported on the result pipe (harness.kaggle.kernel too)."""
    inputs, result, control = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    try:
        return run_fn(inputs, result, control)
    except BaseException:  # noqa: BLE001 - a failure before the submission ran: the harness's or the platform's
        try:
            with os.fdopen(result, "wb", closefd=False) as f:
                f.write((json.dumps({"ok": False, "stage": "setup", "error": traceback.format_exc()}) + "\n").encode())
        except OSError:
            pass
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def exit_after(main_fn) -> None:
    code = main_fn()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: nothing a submission registered at exit runs after this


if __name__ == "__main__":
    exit_after(main)
