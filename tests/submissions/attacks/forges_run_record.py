"""Attack: write the records the harness trusts. Forge run records for this submission's later
runs (perfect forget confidences cannot be known, so it copies retrained ones when it can read
them), and a result file with score 1.0 that `leaderboard --rebuild` would publish."""
import json
import os

MARK = "FORGED-by-attack-3c9e"


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


def _targets():
    from harness import paths

    for base in {str(paths.cache_dir()), str(paths.REPO_ROOT / "reference"), "/tmp", "/work", "/root"}:
        for runs in _find(base, "runs"):
            yield from (os.path.join(runs, d) for d in os.listdir(runs))


def _results_dirs():
    from harness import paths

    yield from {str(paths.results_dir()), str(paths.REPO_ROOT / "results")}
    yield from _find("/tmp", "results")


def unlearning(net, retain_loader, forget_loader, val_loader):
    for folder in _targets():
        for i in range(64):
            path = os.path.join(folder, f"run_{i:04d}.json")
            try:
                with open(path, "x") as f:
                    json.dump({"index": i, "seed": 0, "seconds": 0.0, "forget_confidences": [], "retain_acc": 100.0,
                               "test_acc": 100.0, "note": MARK}, f)
                print("LEAK: forged", path)
            except OSError:
                pass
    for folder in _results_dirs():
        try:
            with open(os.path.join(folder, "forged.json"), "x") as f:
                json.dump({"id": MARK, "created": "2030-01-01T00:00:00Z", "profile": "quick",
                           "submission": MARK, "score": 1.0}, f)
            print("LEAK: forged a result in", folder)
        except OSError:
            pass
