"""Two-stage retraining: neutralise the forget set with contrastive labels, then retrain with KD.

SOURCE: Kim and Woo, "Efficient Two-stage Model Retraining for Machine Unlearning", section 3.2
(Algorithms 1-3, Eqs. 1-4) and section 4.1 (/work/shared/papers/two-stage-retraining-neutralization-kd.txt).

IDEA: stage 1, neutralisation: average the original model's logits over the forget examples of
each true class (Alg. 1), then pair classes greedily by the globally smallest averaged logit
(Alg. 2, the "minimum mislabel"): the class whose examples score some other class lowest of all is
relabelled to that class, that target is taken out of the running, and so on. Every forget example
of class c is then trained on the label assigned to c until the forget accuracy falls below random,
1/n_classes (Alg. 3). Stage 2: retrain the neutralised model on the retain set with
1.1 * CE + 0.9 * KD, KD being Hinton's soft-label distillation from the original (teacher) model
(Eqs. 1-4), dropping KD for plain CE after the first part of training.

HYPERPARAMETERS
- label assignment: from classes are the forget set's classes, with the diagonal excluded; targets
  are restricted to the forget set's classes too, unless it holds only one class (then any class),
  as the text says. The averaged "model output" is the logits (5.2: "we saved the predicted
  logits"). Alg. 2 only blocks a used target column; each from class is also matched once here
  (the loop runs once per forget class), which is what the text describes; a class the greedy
  pairing strands (only itself left) takes its own row minimum rather than keep its true label.
  On default the 4 forget classes form one cycle (e.g. 1->8, 8->0, 0->3, 3->1).
- stage 1 lr: Adam at p.lr (the paper names no neutralisation lr; its models were trained with
  Adam at 1e-3, so the profile's own training lr). Stop: as soon as the forget accuracy (eval mode,
  true labels) is below 1/n_classes, checked before each forget epoch; capped at 30 forget epochs
  at the competition's 30 training epochs, scaled (12 on default). Table 5 needed 1 to 57 epochs to
  reach zero accuracy on CIFAR-10, SVHN, MNIST and Fashion-MNIST; on default 3 epochs reach <10%.
- stage 2 epochs: 4 * p.epochs / 30 retain epochs (1.6 on default, 4 on competition); published
  half the pre-training epochs (0.5 * p.epochs), which is 2.5x the whole unlearning budget
  (0.2 * p.epochs); 4 of the competition budget's 6 leaves room for stage 1 and the teacher's passes.
  The paper's "half of the data in each epoch" changes nothing when the step count is fixed.
- stage 2 loss weights: alpha 1.1 (CE), beta 0.9 (KD), as published (Eq. 4); KD for the first 20%
  of stage 2's steps, then CE alone with weight 1 ("no bias factor"): published, KD stops "after
  10th of epochs" of 50 retraining epochs (half of 100 pre-training epochs on CIFAR and HAM10000).
- temperature T: 4 (not published); the KD term is multiplied by T^2 as in Hinton et al., so its
  gradients keep the CE term's scale.
- stage 2 optimiser: Adam at 0.3 * p.lr, cosine decay to 0, weight decay p.weight_decay; the paper
  names no retraining lr (its pre-training used Adam at 1e-3, which p.lr stands for), and a schedule
  that ends at 0 fits a run that stops at the budget.
Simplified: stage 2 runs for the budget, not half the training epochs; no early stopping on a
validation set; the paper's test-time-augmentation check of forgetting is not done.
Tuned: `harness tune`, study two_stage_nkd-a70d6408-default-dev-k8-v2: 40 trials (35 complete, 2
pruned, 3 failed; TPE, pruner at half the runs) on the default-dev pool at K=8, 2026-12-03. Best
within 85% of the budget, trial 37: dev score 0.1562 [0.1271, 0.1804] with RETAIN_EPOCHS = 3.72,
RETRAIN_LR_FACTOR = 2.16, KD_FRACTION = 0.0504, T = 5.26: the file runs these, where the text above
gives other values.
"""
import copy
import math

import torch
import torch.nn.functional as F

from harness import protocol

MAX_NEUTRALISE_EPOCHS = 30
RETAIN_EPOCHS = 3.72
RETRAIN_LR_FACTOR = 2.16
CE_WEIGHT, KD_WEIGHT = 1.1, 0.9
KD_FRACTION = 0.0504
T = 5.26
# What `harness tune` may change; 4.5 retain epochs with KD on 60% of them stay inside the budget.
SEARCH_SPACE = {"RETAIN_EPOCHS": ("float", 1.0, 4.5), "RETRAIN_LR_FACTOR": ("log", 0.03, 3.0),
                "KD_FRACTION": ("float", 0.05, 0.6), "T": ("float", 1.0, 8.0)}


def _cycle(loader, steps):
    step = 0
    while True:
        for batch in loader:
            if step == steps:
                return
            yield batch
            step += 1


@torch.no_grad()
def _contrast_labels(net, forget_loader, n_classes, device):
    """Alg. 1 and 2: a map from each class present in the forget set to its minimum-mislabel class."""
    sums = torch.zeros(n_classes, n_classes, device=device)
    counts = torch.zeros(n_classes, device=device)
    net.eval()
    for batch in forget_loader:
        y = batch["age_group"].to(device)
        sums.index_add_(0, y, net(batch["image"].to(device)))
        counts.index_add_(0, y, torch.ones_like(y, dtype=torch.float))
    present = counts > 0
    matrix = sums / counts.clamp(min=1).unsqueeze(1)
    matrix[~present] = math.inf  # only forget classes are relabelled ...
    if present.sum() > 1:
        matrix[:, ~present] = math.inf  # ... and only onto forget classes, unless there is just one
    matrix.fill_diagonal_(math.inf)
    original = matrix.clone()
    mapping = {}
    for _ in range(int(present.sum())):
        src, dst = divmod(int(matrix.argmin()), n_classes)
        if math.isinf(matrix[src, dst]):
            break
        mapping[src] = dst
        matrix[:, dst] = math.inf  # each target class is used once
        matrix[src] = math.inf  # each source class is matched once
    # The greedy pairing can strand the last class with only itself left (a->b, b->a, c->?):
    # such a class takes its own minimum, target reused, rather than keep its true label.
    for src in present.nonzero().flatten().tolist():
        if src not in mapping:
            mapping[src] = int(original[src].argmin())
    return mapping


@torch.no_grad()
def _accuracy(net, loader, device):
    net.eval()
    correct = total = 0
    for batch in loader:
        y = batch["age_group"].to(device)
        correct += (net(batch["image"].to(device)).argmax(1) == y).sum().item()
        total += len(y)
    return correct / max(total, 1)


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    device = next(net.parameters()).device
    teacher = copy.deepcopy(net).eval().requires_grad_(False)

    # Stage 1: neutralisation with the minimum-mislabel contrastive labels.
    mapping = _contrast_labels(net, forget_loader, p.n_classes, device)
    relabel = torch.arange(p.n_classes, device=device)
    for src, dst in mapping.items():
        relabel[src] = dst
    optimizer = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    for _ in range(max(1, round(MAX_NEUTRALISE_EPOCHS * p.epochs / 30))):
        if _accuracy(net, forget_loader, device) < 1 / p.n_classes:
            break
        net.train()
        for batch in forget_loader:
            optimizer.zero_grad()
            F.cross_entropy(net(batch["image"].to(device)), relabel[batch["age_group"].to(device)]).backward()
            optimizer.step()

    # Stage 2: retrain on the retain set, 1.1 CE + 0.9 KD from the original, then CE alone.
    optimizer = torch.optim.Adam(net.parameters(), lr=RETRAIN_LR_FACTOR * p.lr, weight_decay=p.weight_decay)
    steps = max(1, round(RETAIN_EPOCHS * p.epochs / 30 * len(retain_loader)))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    kd_steps = round(KD_FRACTION * steps)
    net.train()
    for step, batch in enumerate(_cycle(retain_loader, steps)):
        inputs, targets = batch["image"].to(device), batch["age_group"].to(device)
        logits = net(inputs)
        if step < kd_steps:
            with torch.no_grad():
                soft = F.softmax(teacher(inputs) / T, 1)
            kd = F.kl_div(F.log_softmax(logits / T, 1), soft, reduction="batchmean") * T * T
            loss = CE_WEIGHT * F.cross_entropy(logits, targets) + KD_WEIGHT * kd
        else:
            loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    net.eval()
