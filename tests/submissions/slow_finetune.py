"""finetune, slowed down so that a test can interrupt a score in the middle. A run sees only its
own file (the sandbox has no checkout), so the starting kit's epoch is written out here."""
import time

from torch import nn, optim


def unlearning(net, retain_loader, forget_loader, val_loader):
    time.sleep(1.0)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    device = next(net.parameters()).device
    net.train()
    for batch in retain_loader:
        inputs, targets = batch["image"].to(device), batch["age_group"].to(device)
        optimizer.zero_grad()
        criterion(net(inputs), targets).backward()
        optimizer.step()
    net.eval()
