"""Leaves a trace everywhere a process can (module state, builtins, the environment, a live object
on the heap, a file in each writable folder), after failing if it finds one a previous run left.
Runs forked one after another from the same zygote must each find nothing (tests/test_zygote.py)."""
import builtins
import gc
import os

import torch

FOLDERS = ("/tmp", "/dev/shm", "/scratch")
NAME = "harness-test-trace"


class Trace:
    """A marker object: one alive in this process means a run left it here."""


def traces() -> list[str]:
    found = [where for where, hit in (("builtins", hasattr(builtins, "_harness_trace")),
                                      ("torch's module state", hasattr(torch, "_harness_trace")),
                                      ("the environment", "HARNESS_TRACE" in os.environ)) if hit]
    found += ["the heap"] if sum(type(o).__name__ == "Trace" for o in gc.get_objects()) > 0 else []
    found += [f"a file in {d}" for d in FOLDERS if os.path.exists(os.path.join(d, NAME))]
    return found


def leave() -> None:
    builtins._harness_trace = True
    torch._harness_trace = [Trace()]
    os.environ["HARNESS_TRACE"] = "1"
    for d in FOLDERS:
        try:
            with open(os.path.join(d, NAME), "w") as f:
                f.write("here")
        except OSError:
            pass


def unlearning(net, retain_loader, forget_loader, val_loader):
    found = traces()
    if found:
        raise RuntimeError("a previous run left a trace in " + ", ".join(found))
    leave()
