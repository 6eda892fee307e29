"""Attack: look through the run's own process, which a zygote's fork shares with every run, for the
pool: the worker's modules, the state it keeps for its runs (the test split, the retrained models'
weights and outputs), and the cache's key; and for a descriptor of the zygote's socket. A fork of a
process that read the pool holds all of it; the zygote holds none (tests/test_zygote.py)."""
import gc
import os
import sys

WORKER_MODULES = ("harness.reference_pool", "harness.runner", "harness.copies", "harness.score")  # a run imports keys too
WORKER_KEYS = ("pool_views", "pool_funcs", "closest_pair", "retrains")


def sockets() -> list[str]:
    """Descriptors of this process that are sockets: the zygote's own, inherited, would let a run ask
    it for forks of its own (one line, `fork`, and four descriptors)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.append(f"descriptor {fd} is a {target}")
    return found


def found() -> list[str]:
    hits = [f"module {m}" for m in WORKER_MODULES if m in sys.modules] + sockets()
    for obj in gc.get_objects():
        if type(obj) is dict and any(k in obj for k in WORKER_KEYS if isinstance(k, str)):
            hits.append("the worker's run state " + str(sorted(k for k in obj if isinstance(k, str))[:6]))
            break
    for obj in gc.get_objects():
        if type(obj).__name__ == "Pool" and hasattr(obj, "retrains"):
            hits.append("a reference pool")
            break
    return hits


def unlearning(net, retain_loader, forget_loader, val_loader):
    hits = found()
    for hit in hits:
        print(f"LEAK: {hit}")
    if hits:
        raise RuntimeError("found the pool in the run's memory: " + "; ".join(hits))
