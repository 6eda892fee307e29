"""Attack: change the scorer. In this process: monkeypatch torch, numpy and the harness's metric,
evaluation and loading code. On disk: open the harness's, torch's and numpy's sources for writing,
and drop a .pth file / sitecustomize.py into site-packages, which every later Python process (the
harness's own included) would execute. Nothing is actually written into a file it manages to open
(the test must never damage the checkout); opening it is the LEAK."""
import os
import site
import sys

import numpy as np
import torch

import harness.evaluate
import harness.metric
import harness.reference_pool
import harness.training

MARK = "harness-attack-pth-7d1e"


def unlearning(net, retain_loader, forget_loader, val_loader):
    harness.metric.epsilons = lambda *a, **k: np.zeros(a[0].shape[1])
    harness.metric.forget_quality = lambda *a, **k: 1.0
    harness.evaluate.evaluate_state = lambda *a, **k: {}
    harness.training.accuracy = lambda *a, **k: 100.0
    torch.load = lambda *a, **k: {}
    np.median = lambda *a, **k: 0.0
    targets = [harness.metric.__file__, harness.training.__file__, torch.__file__, np.__file__]
    for path in targets:
        try:
            with open(path, "a"):
                print("LEAK: could open for writing", path)
        except OSError:
            pass
    dirs = set(site.getsitepackages()) | {os.path.dirname(os.path.dirname(torch.__file__))}
    for d in dirs:
        for name in (f"zz-{MARK}.pth", "sitecustomize.py", "usercustomize.py"):
            path = os.path.join(d, name)
            if os.path.exists(path):
                continue
            try:
                with open(path, "x") as f:
                    f.write(f"# {MARK}\n")
                print("LEAK: created", path)
            except OSError:
                pass
