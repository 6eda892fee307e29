import sys


def unlearning(net, retain_loader, forget_loader, val_loader):
    sys.exit(3)
