"""Attack: write the records the harness trusts. Forge run records for this submission's later
runs (perfect forget confidences cannot be known, so it copies retrained ones when it can read
them), and a result file with score 1.0 that `leaderboard --rebuild` would publish."""
import glob
import json
import os

MARK = "FORGED-by-attack-3c9e"


def _targets():
    from harness import paths

    for base in {str(paths.cache_dir()), str(paths.REPO_ROOT / "reference"), "/tmp", "/work", "/root"}:
        yield from glob.glob(os.path.join(base, "**", "runs", "*"), recursive=True)


def _results_dirs():
    from harness import paths

    yield from {str(paths.results_dir()), str(paths.REPO_ROOT / "results")}
    yield from glob.glob("/tmp/**/results", recursive=True)


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
