"""The competition starting kit's baseline: one epoch of SGD on the retain set only
(lr 1e-3, momentum 0.9, weight decay 5e-4, cosine schedule over the epoch count). Forgetting
comes only from catastrophic interference with what the retain set teaches.

Source: NeurIPS 2023 Machine Unlearning competition, starting kit notebook (`unlearning()` of the
"Unlearning Starting Kit"), kept exactly as published so that it is the reference every method in
this folder is compared with.

Hyperparameters (published values, not scaled: this file is the yardstick, so it stays the
starting kit's code on every profile): EPOCHS = 1 pass over the retain loader; SGD lr 1e-3,
momentum 0.9, weight decay 5e-4; CosineAnnealingLR with T_max = EPOCHS, stepped once per epoch
(so the single epoch runs at lr 1e-3 throughout).

Tuned: nothing (published values)."""
import torch
from torch import nn, optim

EPOCHS = 1
LR = 1e-3
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
# What `harness tune` may change (the published values above stay the yardstick's defaults).
SEARCH_SPACE = {"LR": ("log", 1e-4, 1e-1), "MOMENTUM": ("float", 0.0, 0.99), "WEIGHT_DECAY": ("log", 1e-5, 1e-2)}


def unlearning(net, retain_loader, forget_loader, val_loader):
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    device = next(net.parameters()).device
    net.train()
    for _ in range(EPOCHS):
        for batch in retain_loader:
            inputs, targets = batch["image"].to(device), batch["age_group"].to(device)
            optimizer.zero_grad()
            criterion(net(inputs), targets).backward()
            optimizer.step()
        scheduler.step()
    net.eval()
