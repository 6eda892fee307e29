import copy


def unlearning(net, retain_loader, forget_loader, val_loader):
    return copy.deepcopy(net)
