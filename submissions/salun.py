"""SalUn: random-label finetuning restricted to the weights salient for the forget set.

SOURCE: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in
Image Classification and Generation" (ICLR 2024), the SalUn method section (the weight saliency
mask; saliency-based unlearning with random labels); defaults of the official code as
re-implemented in xcadet/deepunlearn (munl/unlearning/salun.py).

IDEA: the gradient of the forget loss at the original weights says which weights the forget set
leans on. Keep only the weights whose |gradient| is in the top half (one global threshold over all
parameters) and finetune just those, on forget ∪ retain, with the forget images given random
labels: their predictions are scrambled while the other half of the network, and the retain
images' true labels, hold what the retain set needs.

HYPERPARAMETERS
- saliency: |sum over forget batches of the gradient of the mean cross-entropy|, model in eval
  mode (as the official code), every parameter tensor (BatchNorm affine included).
- mask fraction: top 50% (published threshold 0.5).
- random labels: uniform over all classes, drawn afresh each time a forget image is drawn
  (published: uniform random labels).
- epochs: 4 * p.epochs / 30 passes over forget ∪ retain (published: 10 epochs, above the
  competition's 6-epoch budget, so cut to 4 competition epochs, two thirds of it; with the mask
  pass this measured 68% of the kaggle-mini budget by process CPU time on a kaggle-mini-sized
  ResNet-18): 4 on competition, 1.6 on quick/default, 1.07 on kaggle-mini; as optimiser steps.
- batch size: the loader's (64 in every profile; published 256).
- optimiser: Adam, lr 0.3 * p.lr, no weight decay (published SGD lr 1e-2, no momentum, no weight
  decay, for its own CIFAR models; here relative to the profile's Adam lr: 3e-5 on
  competition, 9e-4 on quick/default). No weight decay so that the unmasked weights stay exactly
  as they were: with their gradient zeroed, Adam leaves them untouched.
Tuned: `harness tune`, study salun-477f2af4-default-dev-k8-v2: 40 trials (10 complete, 29 pruned, 1
failed; TPE, pruner at half the runs) on the default-dev pool at K=8, 2026-12-03. Best within 85% of
the budget, trial 11: dev score 0.1535 [0.1227, 0.1819] with EPOCHS_OF_30 = 2.24, MASK_FRACTION =
0.862, LR_FACTOR = 0.464: the file runs these, where the text above gives other values.
"""
import torch
from torch import nn

from harness import protocol

EPOCHS_OF_30 = 2.24  # epochs of the competition's 30-epoch recipe, scaled to the profile's
MASK_FRACTION = 0.862
LR_FACTOR = 0.464  # x p.lr
# What `harness tune` may change; 5.5 epochs with the mask pass stays inside the budget.
SEARCH_SPACE = {"EPOCHS_OF_30": ("float", 1.0, 5.5), "MASK_FRACTION": ("float", 0.1, 0.9),
                "LR_FACTOR": ("log", 0.03, 3.0)}


class _Tagged(torch.utils.data.Dataset):
    """(image, label, is_forget) items, so one shuffled loader can mix the two sets."""

    def __init__(self, dataset, forget):
        self.dataset, self.forget = dataset, forget

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        item = self.dataset[i]
        return item["image"], item["age_group"], self.forget


def _saliency_mask(net, forget_loader, device):
    net.eval()
    net.zero_grad(set_to_none=True)
    for batch in forget_loader:
        x, y = batch["image"].to(device), batch["age_group"].to(device)
        nn.functional.cross_entropy(net(x), y).backward()  # accumulates over batches
    grads = {n: p.grad.abs() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    flat = torch.cat([g.flatten() for g in grads.values()])
    k = max(1, round((1 - MASK_FRACTION) * flat.numel()))
    threshold = flat.kthvalue(k).values
    return {n: (g > threshold).to(g.dtype) for n, g in grads.items()}


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    device = next(net.parameters()).device
    n_classes = [m for m in net.modules() if isinstance(m, nn.Linear)][-1].out_features
    mask = _saliency_mask(net, forget_loader, device)

    mixed = torch.utils.data.ConcatDataset([_Tagged(forget_loader.dataset, True),
                                            _Tagged(retain_loader.dataset, False)])
    loader = torch.utils.data.DataLoader(mixed, batch_size=retain_loader.batch_size, shuffle=True)
    steps = max(1, round(EPOCHS_OF_30 * p.epochs / 30 * len(loader)))
    optimizer = torch.optim.Adam(net.parameters(), lr=LR_FACTOR * p.lr)
    params = dict(net.named_parameters())
    net.train()
    done = 0
    while done < steps:
        for x, y, is_forget in loader:
            if len(y) < 2:  # a batch of one would break BatchNorm in train mode
                continue
            y = torch.where(is_forget, torch.randint_like(y, n_classes), y)
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x), y).backward()
            for name, m in mask.items():
                params[name].grad.mul_(m)
            optimizer.step()
            done += 1
            if done == steps:
                break
    net.eval()
