"""Fisher masking: zero the parameters that matter more to the forget set than to the retain set.

SOURCE: "Machine Unlearning" report (Sapienza), section 5 "Fisher Masking"
(/work/shared/papers/sapienza-machine-unlearning-report.txt), after Liu et al. 2023, "Unlearning with
Fisher masking"; the recovery finetune is the report's section 2.1.

IDEA: estimate the diagonal of the empirical Fisher information (mean squared gradient of the
log-likelihood of the true label) once on the forget set, F_f, and once on the retain set, F_r.
Parameters with the largest F_f - F_r carry information about the forget set that the retain set
does not need: zero the top R% of all parameters ranked by that difference (5.1.1), then finetune
briefly on the retain set to repair the collateral damage.

HYPERPARAMETERS
- R (share of all parameters zeroed, one global ranking over every parameter tensor): 0.4% here;
  the report picks "R = 0.4" for random-sample unlearning and 0.01 for class unlearning (5.2) under a
  "top R %" heading, so 0.4 is read as a percentage (1% was also tried).
- Fisher estimate: squared gradient of the mean loss of each loader batch (64 images), averaged over
  batches, one pass over each set, in eval mode so BatchNorm running stats do not move; the report's
  per-example form (5.1) costs 64x more backward passes. Only the ranking of F_f - F_r is used.
  Known weakness, left as tuned: the forget loader's last batch is small (3 images on default) and
  its noisy squared gradient weighs as much as a full batch's in F_f (ssd.py, where it broke the
  method, switched to per-example gradients).
- finetuning epochs: 3 * p.epochs / 30 retain epochs (1.2 on default, 3 on competition); published 5
  (Fig. 10), cut to 3 so that the retain-set Fisher pass (~1 epoch) plus the finetune stay inside the
  budget rule's 6 competition epochs (published epochs * p.epochs / 30).
- finetune optimiser: Adam at 0.6 * p.lr, cosine decay to 0, weight decay p.weight_decay; published
  lr 1e-5 with L2 0.01 (optimiser not named), made relative to the profile's training lr because a
  1e-5 step cannot repair zeroed weights in about one epoch.
Tuned: `harness tune`, study fisher_masking-bb20553c-default-dev-k8-v2: 40 trials (14 complete, 16
pruned, 10 failed; TPE, pruner at half the runs) on the default-dev pool at K=8, 2026-12-03. Best
within 85% of the budget, trial 25: dev score 0.1374 [0.1108, 0.1720] with R = 0.000665,
FINETUNE_EPOCHS = 1, LR_FACTOR = 0.717: the file runs these, where the text above gives other
values.
"""
import math

import torch
import torch.nn.functional as F

from harness import protocol

R = 0.000665
FINETUNE_EPOCHS = 1  # at 30 training epochs, scaled to p.epochs below
LR_FACTOR = 0.717
# What `harness tune` may change (no longer finetune: the Fisher passes and 3 already come near the budget).
SEARCH_SPACE = {"R": ("log", 0.0004, 0.04), "FINETUNE_EPOCHS": ("int", 1, 3), "LR_FACTOR": ("log", 0.06, 2.0)}


def _fisher(net, loader, device):
    """Mean over batches of the squared gradient of the batch loss, one tensor per parameter."""
    fisher = [torch.zeros_like(p) for p in net.parameters()]
    net.eval()
    for batch in loader:
        net.zero_grad()
        F.cross_entropy(net(batch["image"].to(device)), batch["age_group"].to(device)).backward()
        for f, p in zip(fisher, net.parameters()):
            f.add_(p.grad.detach() ** 2)
    return [f / len(loader) for f in fisher]


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    device = next(net.parameters()).device

    diff = [f - r for f, r in zip(_fisher(net, forget_loader, device), _fisher(net, retain_loader, device))]
    flat = torch.cat([d.flatten() for d in diff])
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(max(1, round(R * flat.numel()))).indices] = True  # exactly R, whatever the ties
    with torch.no_grad():
        for param, m in zip(net.parameters(), mask.split([d.numel() for d in diff])):
            param[m.view_as(param)] = 0.0

    steps = max(1, round(FINETUNE_EPOCHS * p.epochs / 30 * len(retain_loader)))
    optimizer = torch.optim.Adam(net.parameters(), lr=LR_FACTOR * p.lr, weight_decay=p.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    net.train()
    step = 0
    while step < steps:  # cycle the loader: the step count need not be a whole number of epochs
        for batch in retain_loader:
            if step == steps:
                break
            optimizer.zero_grad()
            F.cross_entropy(net(batch["image"].to(device)), batch["age_group"].to(device)).backward()
            optimizer.step()
            schedule.step()
            step += 1
    net.eval()
