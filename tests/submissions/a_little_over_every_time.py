"""Takes 1.2x its budget in every run: within the tolerance for timer noise each time, and so past
the budget on average. The tolerance is for noise, not for a method slower than the budget."""
import time

from harness import protocol


def unlearning(net, retain_loader, forget_loader, val_loader):
    time.sleep(1.2 * protocol.active_budget()["seconds"])
