"""Reset and distil: a top solution of the NeurIPS 2023 Machine Unlearning competition (Kaggle
notebook "unlearning by resetting layers", 7th on the private leaderboard, as cited by its
re-implementation KGLTop6 in xcadet/deepunlearn, munl/unlearning/kgltop6.py, where every
published value below is read from; top solutions summarised in Triantafillou et al. 2024,
"Are we making progress in unlearning?", arXiv 2406.09073).

IDEA: re-initialise the first conv layer and the classifier, the two ends through which every
memorised identity passes, and keep a frozen copy of the original as teacher. A warm-up distils
the teacher's temperature-softened outputs back into the student; then the student trains on the
retain set with cross-entropy plus soft cross-entropy and KL to the teacher. The teacher only ever
speaks on retain images, so what it knew only about the forget set is not handed back.

Hyperparameters (published -> here):
- reset: the stem conv and the classifier, with the layers' own reset_parameters() (published:
  `conv1` and `fc`); here the first nn.Conv2d and the last nn.Linear.
- temperature: 5 (published 5) in every soft term; KL and soft CE are not multiplied by T^2, as
  published.
- warm-up: 3 published epochs of pure KL -> 3 * p.epochs / 30 epochs (1.2 on default, 3 on
  competition) on the retain set. The published re-implementation warms up on the validation
  loader instead (3 epochs of it are ~0.4 retain epochs); the retain set is used here, as asked
  in this project's brief, so the validation set stays out of training.
- retain phase: 3 published epochs -> 3 * p.epochs / 30 (1.2 on default), loss = CE + soft CE +
  KL, unweighted as published; the loaders' batch size (64, published 64).
- lr: published SGD, momentum 0.9, weight decay 5e-4; warm-up 9e-4 constant, retain phase 1e-3
  cosine to 0. Here Adam at 0.9 * LR * p.lr (warm-up, constant) and LR * p.lr (retain, per-step
  cosine to 0), with the profile's weight decay p.weight_decay (its Adam L2 coefficient; an SGD
  decay does not carry over to Adam). LR = 1.0 stands in for SGD 1e-3.
Cost: 2.4 retain epochs plus the teacher's forward passes at the published 3 + 3, about 4.3 s per run
on default, past a fifth of a retrain; the defaults below are 0.5 + 1.5, inside it.
Tuned: `harness tune`, study reset_distil-6a0725bf-default-dev-k8-v2: 40 trials (32 complete, 1
pruned, 7 failed; TPE, pruner at half the runs) on the default-dev pool at K=8, 2026-12-03. Best
within 85% of the budget, trial 32: dev score 0.0649 [0.0517, 0.0779] with WARMUP_EPOCHS_OF_30 =
1.07, RETAIN_EPOCHS_OF_30 = 1.56, TEMPERATURE = 2.06, LR = 3.92: the file runs these, where the text
above gives other values.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from harness import protocol

WARMUP_EPOCHS_OF_30 = 1.07  # epochs of the competition's 30-epoch recipe, scaled to the profile's (published 3)
RETAIN_EPOCHS_OF_30 = 1.56  # the same (published 3)
TEMPERATURE = 2.06
LR = 3.92  # x p.lr, Adam; stands in for the published SGD lr 1e-3 (warm-up 0.9 of it); tuned
# What `harness tune` may change (the two epoch counts are the only knobs on the phases' lengths). On
# default's dev pool every length of 3 or more in all failed the budget (40 of 40 trials over 0..3 + 1..4),
# so the published 3 + 3 is scaled into it, and the range reaches a little past it.
SEARCH_SPACE = {"WARMUP_EPOCHS_OF_30": ("float", 0.0, 1.5), "RETAIN_EPOCHS_OF_30": ("float", 0.5, 2.5),
                "TEMPERATURE": ("float", 1.0, 10.0), "LR": ("log", 0.1, 5.0)}


def _cycle(loader):
    while True:
        yield from loader


def _kl(student_logits, teacher_logits):
    return F.kl_div(F.log_softmax(student_logits / TEMPERATURE, dim=1),
                    F.softmax(teacher_logits / TEMPERATURE, dim=1), reduction="batchmean")


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    device = next(net.parameters()).device
    teacher = copy.deepcopy(net).eval()
    next(m for m in net.modules() if isinstance(m, nn.Conv2d)).reset_parameters()
    [m for m in net.modules() if isinstance(m, nn.Linear)][-1].reset_parameters()
    batches = _cycle(retain_loader)
    net.train()

    # Warm-up: pull the student back to the teacher's softened outputs on retain images.
    steps = max(1, round(WARMUP_EPOCHS_OF_30 * p.epochs / 30 * len(retain_loader)))
    opt = torch.optim.Adam(net.parameters(), lr=0.9 * LR * p.lr, weight_decay=p.weight_decay)
    for _ in range(steps):
        x = next(batches)["image"].to(device)
        with torch.no_grad():
            teacher_logits = teacher(x)
        loss = _kl(net(x), teacher_logits)
        opt.zero_grad()
        loss.backward()
        opt.step()

    # Retain phase: labels plus the teacher's soft targets.
    steps = max(1, round(RETAIN_EPOCHS_OF_30 * p.epochs / 30 * len(retain_loader)))
    opt = torch.optim.Adam(net.parameters(), lr=LR * p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(steps):
        batch = next(batches)
        x, y = batch["image"].to(device), batch["age_group"].to(device)
        with torch.no_grad():
            teacher_logits = teacher(x)
        out = net(x)
        soft_targets = F.softmax(teacher_logits / TEMPERATURE, dim=1)
        soft_ce = -(soft_targets * F.log_softmax(out / TEMPERATURE, dim=1)).sum(dim=1).mean()
        loss = F.cross_entropy(out, y) + soft_ce + _kl(out, teacher_logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
