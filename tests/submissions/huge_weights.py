"""Finite but huge weights: every float32 weight times 1e30 stays finite, every logit overflows to
inf. The trusted evaluation must call that one failed run, not raise from the metric."""
import torch


def unlearning(net, retain_loader, forget_loader, val_loader):
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1e30)
