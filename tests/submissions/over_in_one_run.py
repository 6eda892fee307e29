"""Takes 1.2x its budget in the run of an even seed, and nothing in the others: one run over its
budget within the tolerance for timer noise, the mean well inside it."""
import time

import torch

from harness import protocol


def unlearning(net, retain_loader, forget_loader, val_loader):
    if torch.initial_seed() % 2 == 0:   # a run's torch generator is seeded with its public seed
        time.sleep(1.2 * protocol.active_budget()["seconds"])
