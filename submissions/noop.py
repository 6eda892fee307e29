"""Does nothing: the original model unchanged. The floor of the sanity ladder: the forget set is
still memorised, so the attack separates it from the retrained models, and every run returns the
same model, which the competition's range-ratio rule scores 0.

Source: the trivial baseline of any unlearning benchmark (NeurIPS 2023 Machine Unlearning
competition, starting kit). Hyperparameters: none.

Tuned: nothing (there is nothing to tune)."""


def unlearning(net, retain_loader, forget_loader, val_loader):
    return None
