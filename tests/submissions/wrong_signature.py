def unlearning(net, retain_loader):
    return None
