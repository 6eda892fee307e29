"""The training recipe shared by the original and the retrained models (PROTOCOL §3), and
batched evaluation. Deterministic on CPU: same seed, same thread count → bit-identical weights."""
from __future__ import annotations

import contextlib
import copy
import functools
import time

import torch
from torch import nn

from harness import data as data_mod
from harness.protocol import Protocol


def resolve_device(protocol: Protocol) -> torch.device:
    if protocol.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if protocol.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"profile {protocol.name!r} asks for CUDA but no GPU is visible: use a CPU profile")
    return torch.device(protocol.device)


PRECISIONS = ("fp32", "bf16")


def autocast(protocol: Protocol, device: torch.device):
    """The forward passes' arithmetic: float32, or bfloat16 autocast when the protocol asks for it
    (on a GPU, ~2x the throughput; on a CPU it runs, slowly). Weights stay float32 either way."""
    if protocol.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {protocol.precision!r}: use one of {', '.join(PRECISIONS)}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=protocol.precision == "bf16")


@functools.lru_cache(maxsize=None)
def device_info(device: torch.device) -> dict:
    """What a model was trained or evaluated on, for the records (read once per process and device:
    every run's evaluation records it)."""
    import platform

    if device.type == "cuda":
        return {"device": "cuda", "name": torch.cuda.get_device_name(device)}
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return {"device": device.type, "name": name}


def machine(device: torch.device) -> str:
    """Where a time was measured, as a short hash: host name, machine id, processor, cores, torch's
    version and thread count, device. The run budget trusts a pool's retrain times only where this
    hash is the same (harness.budget); anywhere else it times a slice of the recipe again."""
    import hashlib
    import json
    import os
    import platform

    try:
        with open("/etc/machine-id") as f:
            machine_id = f.read().strip()
    except OSError:
        machine_id = ""
    blob = json.dumps([platform.node(), machine_id, device_info(device), os.cpu_count(), torch.__version__,
                       torch.get_num_threads()])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def model_input(split: "data_mod.Split", protocol: Protocol, device: torch.device) -> torch.Tensor:
    x = data_mod.to_model_input(split.images, protocol.pixel_scale).to(device)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int, protocol: Protocol | None = None) -> torch.Tensor:
    """Eval-mode logits `[N, C]` (float32, on CPU) for inputs already on the model's device,
    under the protocol's precision when one is given."""
    model.eval()
    with autocast(protocol, x.device) if protocol is not None else contextlib.nullcontext():
        out = [model(x[i:i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             protocol: Protocol | None = None) -> float:
    """Accuracy in percent, as the competition reports it."""
    if len(y) == 0:
        return float("nan")
    return 100.0 * (logits(model, x, batch_size, protocol).argmax(1) == y.cpu()).double().mean().item()


_WARM: set = set()
# What warm_up reads of a protocol: two protocols equal in these are warmed up alike (harness.zygote
# keeps one zygote for all of them).
WARM_FIELDS = ("arch", "width", "n_classes", "image_size", "loader_batch_size")


def warm_up(protocol: Protocol) -> None:
    """Pay torch's one-time lazy initialisation (an optimiser's first step imports about a second
    of modules) once per process, outside any timed section: otherwise the first model a worker
    trains looks slower than the rest, and every forked unlearning run would pay it again."""
    from harness import models

    if protocol.arch in _WARM:
        return
    # One step in the shapes and memory format a run's first steps use (oneDNN makes its kernels per
    # shape), then each common optimiser's first step on those gradients.
    net = models.build(protocol).to(memory_format=torch.channels_last)
    x = torch.zeros(protocol.loader_batch_size, 3, protocol.image_size, protocol.image_size)
    nn.functional.cross_entropy(net(x), torch.zeros(len(x), dtype=torch.long)).backward()
    for opt in (torch.optim.SGD(net.parameters(), lr=0.0, momentum=0.9),
                torch.optim.Adam(net.parameters(), lr=0.0), torch.optim.AdamW(net.parameters(), lr=0.0)):
        opt.step()
        opt.zero_grad(set_to_none=False)
    _WARM.add(protocol.arch)


def recipe(protocol: Protocol, train_split: "data_mod.Split", params, device: torch.device):
    """The recipe's pieces for `params` (one model's, or a stack's in harness.stacked): the
    class-weighted loss, Adam, the schedule and the steps per epoch (a last batch of 1 breaks batch
    norm: it is dropped)."""
    weight = data_mod.class_weights(train_split.age_group, protocol.n_classes).to(device)
    loss_fn = nn.CrossEntropyLoss(weight=weight if protocol.class_weighted else None)
    if protocol.optimizer != "adam":
        raise ValueError(f"unknown optimizer {protocol.optimizer!r}: only 'adam' is implemented")
    opt = torch.optim.Adam(params, lr=protocol.lr, weight_decay=protocol.weight_decay)
    n, bs = len(train_split.age_group), protocol.batch_size
    steps_per_epoch = max(1, n // bs + (1 if n % bs > 1 else 0))
    if protocol.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=protocol.lr, total_steps=protocol.epochs * steps_per_epoch)
    elif protocol.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=protocol.epochs)
    else:
        raise ValueError(f"unknown schedule {protocol.schedule!r}: use 'onecycle' or 'cosine'")
    return loss_fn, opt, sched, steps_per_epoch


def train(protocol: Protocol, train_split: "data_mod.Split", val_split: "data_mod.Split", seed: int,
          best_from_epoch: int, device: torch.device | None = None, epochs: int | None = None) -> tuple[dict, dict]:
    """Train a fresh model with the protocol's recipe; return (best state dict, info).

    The kept checkpoint is the one with the best validation accuracy among epochs
    >= best_from_epoch (1-based), as the competition did. `epochs` stops the recipe early (a
    timing slice, harness.budget); info["epoch_seconds"] times each epoch's steps, without the
    validation."""
    from harness import models

    device = device or resolve_device(protocol)
    warm_up(protocol)
    start = time.perf_counter()
    model = models.build(protocol, seed).to(device).to(memory_format=torch.channels_last)
    x, y = model_input(train_split, protocol, device), train_split.age_group.to(device)
    xv, yv = model_input(val_split, protocol, device), val_split.age_group
    loss_fn, opt, sched, steps_per_epoch = recipe(protocol, train_split, model.parameters(), device)
    n, bs = len(y), protocol.batch_size
    gen = torch.Generator().manual_seed(seed)

    best_acc, best_state, best_epoch, epoch_seconds = -1.0, None, 0, []
    for epoch in range(1, (epochs or protocol.epochs) + 1):
        t_epoch = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen).to(device)
        for step in range(steps_per_epoch):
            idx = order[step * bs:(step + 1) * bs]
            opt.zero_grad(set_to_none=True)
            with autocast(protocol, device):
                loss = loss_fn(model(x[idx]).float(), y[idx])
            loss.backward()
            opt.step()
            if protocol.schedule == "onecycle":
                sched.step()
        if protocol.schedule == "cosine":
            sched.step()
        epoch_seconds.append(time.perf_counter() - t_epoch)
        if epoch >= best_from_epoch:
            acc = accuracy(model, xv, yv, protocol.eval_batch_size, protocol)
            if acc > best_acc:
                best_acc, best_epoch = acc, epoch
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    seconds = time.perf_counter() - start
    info = {"seed": seed, "seconds": seconds, "best_epoch": best_epoch, "val_acc": best_acc,
            "images_per_second": n * len(epoch_seconds) / seconds, **device_info(device), "precision": protocol.precision,
            "epoch_seconds": epoch_seconds, "machine": machine(device)}
    return best_state, info
