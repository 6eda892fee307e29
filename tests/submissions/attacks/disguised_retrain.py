"""Attack: the retrain oracle, disguised. It calls the reference recipe with the run's own seed
(an honest, independent model: no copy check can object), asks torch for every core, and bears an
innocent name and no oracle declaration. Under a budget above one retrain (the floor of protocol
1.x) it ranked first; under the competition's budget, a fifth of one retrain, it cannot finish."""
import os

import torch

from harness import protocol, training


def unlearning(net, retain_loader, forget_loader, val_loader):
    torch.set_num_threads(os.cpu_count() or 1)
    p = protocol.active()
    state, _ = training.train(p, retain_loader.dataset.split, val_loader.dataset.split, torch.initial_seed(),
                              best_from_epoch=p.retrain_best_from_epoch, device=next(net.parameters()).device)
    net.load_state_dict(state)
