"""The oracle: throw the original away and retrain from scratch on the retain set with exactly the
recipe that trained the reference models. By construction it is distributed like them, so it
reaches the null ceiling of forget quality; it needs a whole retrain, far over the time budget
(score it with --budget-fraction 3, as `harness ladder` does)."""
import torch

from harness import protocol, training


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    seed = torch.initial_seed()  # the run's own seed, set by the harness
    state, _ = training.train(p, retain_loader.dataset.split, val_loader.dataset.split, seed,
                              best_from_epoch=p.retrain_best_from_epoch, device=next(net.parameters()).device)
    net.load_state_dict(state)
    net.eval()
