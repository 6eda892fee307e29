"""SCRUB: teacher-student unlearning with alternating max- and min-steps.

SOURCE: Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning"
(NeurIPS 2023), the SCRUB method section (its objective and the max/min alternation); defaults
of the official code as re-implemented in xcadet/deepunlearn (munl/unlearning/scrub.py).

IDEA: the student (`net`) starts as the original model and a frozen copy of it is the teacher.
Max-steps push the student's predictions away from the teacher's on the forget set (maximise
KL(teacher || student)); min-steps keep it close to the teacher on the retain set (minimise
alpha * KL + gamma * cross-entropy). Max-steps run only in the first rounds, so the later min-steps
can repair retain performance while the forget set stays disturbed.

HYPERPARAMETERS
- rounds: 10 (published: 10 epochs, each a forget pass of max-steps, while on, then a retain pass
  of min-steps). A round here is one forget pass plus 1/10 of the min-step budget, so the
  published structure (max-steps, lr decays) keeps its place inside the budget.
- max-step rounds: the first 3 (published msteps = 3).
- min-step budget: 2.5 * p.epochs / 30 retain epochs in total (published: 10 retain epochs,
  above the competition's 6-epoch budget). Cut to 2.5 competition epochs because every min-step
  also pays a teacher forward pass and the max-steps' forget passes weigh most on kaggle-mini,
  whose forget set is 7% of the training set: in forward-backward units this costs 56% of the
  budget on competition and 69% on kaggle-mini (process-CPU-time check on a kaggle-mini-sized
  ResNet-18; 3 epochs measured 80% there). 2.5 on competition, 1.0 on quick/default, 0.67 on
  kaggle-mini; expressed as steps.
- gamma (cross-entropy weight) 1, alpha (KL weight) 0.5, KL temperature 2 (the official code's
  defaults as deepunlearn records them).
- optimiser: Adam, lr 0.7 * p.lr (published Adam 5e-4, for the paper's own models and input
  normalisation, which share no scale with these; so relative to the profile's Adam lr, the
  training's peak lr: 7e-5 on competition, 2.1e-3 on quick/default), weight decay p.weight_decay
  (published 0.1 with SCRUB's own models; the training recipe's value here, so the regulariser
  matches the one the original was trained with).
- lr decay: x0.1 at rounds 5, 8, 9 (published: at 50%, 80%, 90% of the epochs).
- left out: the official code's proximal "smoothing" term and SWA average (not part of the
  paper's objective; with sstart = 10 of 10 epochs the average never reaches the returned model).
Tuned: `harness tune`, study scrub-a06c2cf8-default-dev-k8-v2: 40 trials (22 complete, 4 pruned, 14
failed; TPE, pruner at half the runs) on the default-dev pool at K=8, 2026-12-03. Best within 85% of
the budget, trial 38: dev score 0.1553 [0.1298, 0.1795] with LR_FACTOR = 0.936, EPOCHS_OF_30 = 2.36,
MAX_ROUNDS = 2, ALPHA = 0.462: the file runs these, where the text above gives other values.
"""
import copy

import torch
import torch.nn.functional as F

from harness import protocol

ROUNDS = 10
MAX_ROUNDS = 2
EPOCHS_OF_30 = 2.36  # epochs of the competition's 30-epoch recipe, scaled to the profile's
LR_FACTOR = 0.936  # x p.lr
GAMMA, T = 1.0, 2.0
ALPHA = 0.462
DECAY_AT = (5, 8, 9)
# What `harness tune` may change; 4 min-step epochs and 5 max-step rounds stay inside the budget.
SEARCH_SPACE = {"LR_FACTOR": ("log", 0.1, 3.0), "EPOCHS_OF_30": ("float", 1.0, 4.0),
                "MAX_ROUNDS": ("int", 1, 5), "ALPHA": ("float", 0.1, 2.0)}


def _batches(loader, steps):
    """`steps` batches, cycling the loader; a batch of one would break BatchNorm in train mode."""
    done = 0
    while True:
        for batch in loader:
            if len(batch["age_group"]) < 2:
                continue
            yield batch
            done += 1
            if done == steps:
                return


def _kl(student_logits, teacher_logits):
    """KL(teacher || student) at temperature T, scaled by T^2 as in distillation."""
    return F.kl_div(F.log_softmax(student_logits / T, 1), F.log_softmax(teacher_logits / T, 1),
                    reduction="batchmean", log_target=True) * T * T


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    device = next(net.parameters()).device
    teacher = copy.deepcopy(net).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR_FACTOR * p.lr, weight_decay=p.weight_decay)
    min_steps = max(ROUNDS, round(EPOCHS_OF_30 * p.epochs / 30 * len(retain_loader)))
    retain_batches = _batches(retain_loader, min_steps)
    net.train()
    for r in range(ROUNDS):
        if r in DECAY_AT:
            for group in optimizer.param_groups:
                group["lr"] *= 0.1
        if r < MAX_ROUNDS:
            for batch in _batches(forget_loader, len(forget_loader)):
                x = batch["image"].to(device)
                with torch.no_grad():
                    t = teacher(x)
                optimizer.zero_grad(set_to_none=True)
                (-_kl(net(x), t)).backward()
                optimizer.step()
        # This round's even share of the min-steps.
        for _ in range(min_steps * (r + 1) // ROUNDS - min_steps * r // ROUNDS):
            batch = next(retain_batches)
            x, y = batch["image"].to(device), batch["age_group"].to(device)
            with torch.no_grad():
                t = teacher(x)
            out = net(x)
            optimizer.zero_grad(set_to_none=True)
            (GAMMA * F.cross_entropy(out, y) + ALPHA * _kl(out, t)).backward()
            optimizer.step()
    net.eval()
