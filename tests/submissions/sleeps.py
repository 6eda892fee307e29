import time


def unlearning(net, retain_loader, forget_loader, val_loader):
    time.sleep(10**6)
