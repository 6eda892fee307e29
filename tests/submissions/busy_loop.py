def unlearning(net, retain_loader, forget_loader, val_loader):
    n = 0
    while True:
        n += 1
