"""Attack: rebuild retrained model 0 of the pool without reading it, from the public recipe and
its public seed (retrain_seed0 + 0), and return it. With public seeds this reproduces the pool's
model bit for bit; the copy check must reject it. With secret seeds (competition mode) the seed is
unknown and what comes back is only an honest retrain."""
import torch

from harness import protocol, training


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    state, _ = training.train(p, retain_loader.dataset.split, val_loader.dataset.split, p.retrain_seed0,
                              best_from_epoch=p.retrain_best_from_epoch, device=next(net.parameters()).device)
    net.load_state_dict(state)
