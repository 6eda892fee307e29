"""A method with one tunable setting that decides whether it keeps the budget: 0 s keeps it, 60 s
does not (harness tune must fail that trial and go on)."""
import time

SLEEP_S = 0.0
SEARCH_SPACE = {"SLEEP_S": [0.0, 60.0]}


def unlearning(net, retain_loader, forget_loader, val_loader):
    time.sleep(SLEEP_S)
