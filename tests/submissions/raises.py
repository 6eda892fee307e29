def unlearning(net, retain_loader, forget_loader, val_loader):
    raise ZeroDivisionError("deliberate failure inside unlearning")
