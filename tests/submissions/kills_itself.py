import os
import signal


def unlearning(net, retain_loader, forget_loader, val_loader):
    os.kill(os.getpid(), signal.SIGKILL)
