"""Run 0 fails at once; every other run keeps a process busy (its argv holds a marker the test looks
for) and never returns: the score must stop at run 0's failure, not at the others' time limits."""
import subprocess
import sys
import time

import torch

MARKER = "harness-busy-marker-91d4"


def unlearning(net, retain_loader, forget_loader, val_loader):
    if torch.initial_seed() % 1000 == 0:  # run 0 (seed unlearn_seed0 + 0)
        time.sleep(0.5)
        raise RuntimeError("run zero fails on purpose")
    subprocess.Popen([sys.executable, "-c", "while True: pass", MARKER])
    while True:
        pass
