from torch import nn


def unlearning(net, retain_loader, forget_loader, val_loader):
    net.add_module("extra_head", nn.Linear(10, 10))
