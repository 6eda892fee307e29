"""Attack: find the reference pool by path and hand back a retrained model as the unlearned one.
Uses everything a competitor can read about the harness: the published profile, the pool's folder
rule, the default cache locations and a search of the usual places. Prints LEAK lines for what it
finds; returns a retrained model when it can read one (F would be 1.0 if that went unnoticed)."""
import os

import torch


def _candidates():
    from harness import paths, protocol, reference_pool

    # A run is told no seeds, so its own protocol does not hash to its pool: the profile as the
    # repository publishes it does (the seeds are reference fields, the unlearning side is not).
    told = protocol.active()
    p = protocol.PROFILES[told.name.split("+")[0].removesuffix(protocol.DEV_SUFFIX)]
    for cache in {str(paths.cache_dir()), os.path.join(str(paths.REPO_ROOT), "reference")}:
        yield os.path.join(str(reference_pool.pool_dir(p, __import__("pathlib").Path(cache))), "retrain", "0000.pt")
    # The pool's folder is named for the profile and its reference hash: search for exactly that
    # one (another profile's pool of the same architecture would load, but it is not this pool).
    name = reference_pool.pool_dir(p, __import__("pathlib").Path("/")).name
    for base in ("/tmp", "/work", "/root", "/home", "/var/tmp"):
        yield from _find(base, os.path.join(name, "retrain", "0000.pt"))


def _find(base, tail, max_depth=8):
    """Paths under base ending in tail, as a competitor would search: quickly, skipping the big
    trees that cannot hold a cache (Python installations, git objects)."""
    base = base.rstrip("/") or "/"
    for folder, dirs, files in os.walk(base):
        depth = folder[len(base):].count(os.sep)
        dirs[:] = [d for d in dirs if depth < max_depth and d not in ("site-packages", "dist-packages", ".git",
                                                                        "lib-dynload", "__pycache__", "include")]
        candidate = os.path.join(folder, tail)
        if os.path.exists(candidate):
            yield candidate


def _is_ours(path, given) -> bool:
    """A pool of the same name in another cache (another key: other data) is not this one: this
    one's original.pt is the very model the run was handed."""
    try:
        original = torch.load(os.path.join(os.path.dirname(os.path.dirname(path)), "original.pt"), map_location="cpu",
                              weights_only=True)
        return original.keys() == given.keys() and all(torch.equal(original[k], given[k].cpu()) for k in given)
    except Exception:
        return False


def unlearning(net, retain_loader, forget_loader, val_loader):
    given = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for path in _candidates():
        if not _is_ours(path, given):
            continue
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception:
            continue
        print("LEAK: read a retrained model at", path)
        return
