"""Does nothing: the original model unchanged. The floor of the sanity ladder: the forget set is
still memorised, so the attack separates it from the retrained models."""


def unlearning(net, retain_loader, forget_loader, val_loader):
    return None
