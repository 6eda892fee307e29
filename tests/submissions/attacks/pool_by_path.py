"""Attack: find the reference pool by path and hand back a retrained model as the unlearned one.
Uses everything a competitor can read about the harness: the active protocol, the pool's folder
rule, the default cache locations and a search of the usual places. Prints LEAK lines for what it
finds; returns a retrained model when it can read one (F would be 1.0 if that went unnoticed)."""
import os

import torch


def _candidates():
    from harness import paths, protocol, reference_pool

    p = protocol.active()
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


def unlearning(net, retain_loader, forget_loader, val_loader):
    for path in _candidates():
        try:  # another profile's pool (another architecture) does not load: try the next
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception:
            continue
        print("LEAK: read a retrained model at", path)
        return
