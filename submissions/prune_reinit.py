"""Prune, re-initialise, retrain, quantise ("PRMQ"): the 4th-place solution of the NeurIPS 2023
Machine Unlearning competition (Kaggle; summarised in Triantafillou et al. 2024, "Are we making
progress in unlearning?", arXiv 2406.09073; re-implemented as KGLTop4 in xcadet/deepunlearn,
munl/unlearning/kgltop4.py, where every published value below is read from).

IDEA: keep only the largest-magnitude weights of the whole network (global L1 over every conv
and linear weight and bias; published: the top 1%), re-initialise the others, and retrain on the
retain set with class-weighted cross-entropy plus a term that matches the per-image output
entropy of the original model, so that the new model is as (un)certain as the original on
retain-like images. Finally the weights are rounded through fp16, which blurs the last bits of
what was memorised.

Hyperparameters (published -> here):
- pruned share: PRUNE = 0.7 (published 0.99), global L1 over conv/linear weights and biases;
  pruned weights re-drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as published, pruned biases
  stay 0. Why not 0.99: the top 1% of ResNet-18's 11M weights is 110k weights, the top 1% of the
  small CNN's 23k is 230, i.e. a re-initialisation from scratch that 1.28 epochs cannot retrain
  (dev score 0.045, retain acc 33% vs 59% retrained, forget acc 23% vs 48%). CAVEAT: this file
  prunes 70% on ResNet-18 too; set PRUNE = 0.99 for the published strength there.
- loss: CE with class weights count^-0.1 (published: the same exponent) + MSE between the
  entropies of the model's and the frozen original's softmax outputs (weight 1, published 1).
- epochs: 3.2 published -> 3.2 * p.epochs / 30 (1.28 on default, 3.2 on competition), as
  optimiser steps of the loaders' batch size (64, published 64); no schedule, as published.
- lr: published SGD 5e-4, momentum 0.9, weight decay 5e-4. Here Adam at LR * p.lr with the
  profile's weight decay p.weight_decay (its Adam L2 coefficient; an SGD decay does not carry over
  to Adam). LR = 0.5 stands in for SGD 5e-4.
- fp16: the published code casts the final model to half and back; so does this file (all
  dtypes are float32 again when it returns).
Tuned: `harness tune`, study prune_reinit-7bc88edd-default-dev-k8-v2: 40 trials (17 complete, 11
pruned, 12 failed; TPE, pruner at half the runs) on the default-dev pool at K=8, 2026-12-03. Best
within 85% of the budget, trial 0: dev score 0.1434 [0.1226, 0.1664] with PRUNE = 0.7, LR = 0.5,
EPOCHS_OF_30 = 3.2: the file runs these, where the text above gives other values.
"""
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from harness import protocol

EPOCHS_OF_30 = 3.2  # epochs of the competition's 30-epoch recipe, scaled to the profile's
PRUNE = 0.7       # share of weights pruned and re-initialised (tuned; published 0.99)
CLASS_WEIGHT_EXPONENT = -0.1  # CE weight of a class: (its retain count) ** -0.1
LR = 0.5          # x p.lr, Adam; stands in for the published SGD lr 5e-4 (tuned)
# What `harness tune` may change (EPOCHS_OF_30 is the only knob on the retraining's length).
SEARCH_SPACE = {"PRUNE": ("float", 0.3, 0.99), "LR": ("log", 0.1, 5.0), "EPOCHS_OF_30": ("float", 1.0, 4.5)}


def _cycle(loader):
    while True:
        yield from loader


def _entropy(logits):
    return -(F.softmax(logits, dim=1) * F.log_softmax(logits, dim=1)).sum(dim=1)


@torch.no_grad()
def _prune_and_reinit(net):
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    tensors = [t for m in layers for t in (m.weight, m.bias) if t is not None]
    magnitudes = torch.cat([t.abs().flatten() for t in tensors])
    threshold = torch.kthvalue(magnitudes.cpu(), round(PRUNE * magnitudes.numel())).values.item()
    for t in tensors:
        t[t.abs() <= threshold] = 0
    for m in layers:
        bound = 1 / math.sqrt(m.weight[0].numel())  # 1 / sqrt(fan_in)
        fresh = torch.empty_like(m.weight).uniform_(-bound, bound)
        m.weight.copy_(torch.where(m.weight == 0, fresh, m.weight))


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    device = next(net.parameters()).device
    original = copy.deepcopy(net).eval()
    n_classes = [m for m in net.modules() if isinstance(m, nn.Linear)][-1].out_features
    retain = retain_loader.dataset
    labels = torch.tensor([int(retain[i]["age_group"]) for i in range(len(retain))])
    counts = torch.bincount(labels, minlength=n_classes).float()
    weights = torch.where(counts > 0, counts.clamp(min=1) ** CLASS_WEIGHT_EXPONENT, 0.0).to(device)

    _prune_and_reinit(net)

    steps = max(1, round(EPOCHS_OF_30 * p.epochs / 30 * len(retain_loader)))
    opt = torch.optim.Adam(net.parameters(), lr=LR * p.lr, weight_decay=p.weight_decay)
    batches = _cycle(retain_loader)
    net.train()
    for _ in range(steps):
        batch = next(batches)
        x, y = batch["image"].to(device), batch["age_group"].to(device)
        with torch.no_grad():
            target_entropy = _entropy(original(x))
        out = net(x)
        loss = F.cross_entropy(out, y, weight=weights) + F.mse_loss(_entropy(out), target_entropy)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Round every weight through fp16, as the published solution does.
    net.half()
    net.float()
    net.eval()
