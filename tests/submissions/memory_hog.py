def unlearning(net, retain_loader, forget_loader, val_loader):
    hoard = []
    while True:
        hoard.append(bytearray(256 * 2**20))
