import a_module_that_does_not_exist_anywhere  # noqa: F401


def unlearning(net, retain_loader, forget_loader, val_loader):
    return None
