"""Train several retrained models at once as one stacked model (a GPU option).

The K retrained models are independent but identical in shape. One ResNet-18 at 32x32 and batch
64 leaves most of a GPU idle; G of them stacked turn every small convolution into one G times as
wide. `train_stack(protocol, ..., seeds)` gives each model exactly what `training.train` would:
the same init (models.build(protocol, seed)), the same per-seed data order, class-weighted loss,
Adam, schedule and best-validation checkpoint, and a state dict with a plain model's keys, shapes
and dtypes, batch-norm running statistics included.

Why torch.func (stack_module_state + functional_call + vmap) and not hand-written grouped
convolutions: vmap's batching rule for a convolution whose weight and input both carry the model
dimension *is* a grouped convolution (input [B, G*C, H, W], groups=G): the same kernels, while
the models stay the unmodified torchvision / harness modules. Hand-written grouped layers would
save vmap's layout copies between some layers, but need a second, rewritten copy of every
architecture (ResNet's blocks and downsample, BN, the head) to keep in step with the first.

Batch norm under vmap: its running_mean / running_var / num_batches_tracked are stacked like the
parameters ([G, C] and [G]) and passed to functional_call as buffers, so BN's in-place
updates land in each model's own row: vmap only refuses an in-place update of an *unbatched*
buffer by a batched value, which is the shared-statistics case that torch's docs warn about.
tests/test_stacked.py checks one step's parameters, running statistics and counters against each
model trained alone.

Where it pays. On a GPU (the point: few, small kernels leave it idle), not measured here for want
of one. On a CPU, no: on 2 cores, one thread per worker, stacking measured slower per model (the
`default` cnn 0.42x, 0.40x, 0.32x the single-model rate at G=2, 4, 8; `kaggle-mini`'s ResNet-18
0.83x, 0.75x, 0.48x): one thread is already busy, oneDNN's grouped convolutions are themselves
slower than separate ones, and vmap adds layout copies (max-pooling a [B, G*C, H, W] layout as G
models). So reference_pool.stack_size is 1 on a CPU. channels_last: a stack's activations are
5-d, which has no channels_last form; making the gathered batch channels_last measured the same.

Not bit-identical: a grouped convolution sums in another order than G separate ones, so stacked
weights differ from single ones in the last float bits after one step, and over a whole run the
two part ways as runs on two machines would: per seed, two draws of the same recipe.
Like the device, stacking is an execution detail recorded per model ("stack": G), not part of the
pool's cache key: both ways train the same recipe (the test compares the pools' accuracies).
"""
from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from harness import data as data_mod, models, training
from harness.protocol import Protocol


class Stack:
    """G models of one architecture as stacked tensors: parameters [G, ...] (leaf tensors an
    optimiser can hold) and buffers [G, ...], run through one stateless copy of the module."""

    def __init__(self, nets: list[nn.Module], device: torch.device):
        self.g = len(nets)
        self.keys = list(nets[0].state_dict())  # a plain model's state-dict order
        params, buffers = stack_module_state(nets)
        self.params = {k: v.detach().to(device).requires_grad_() for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.base = copy.deepcopy(nets[0]).to("meta")  # only its code and hyper-parameters are used

    def train(self, mode: bool = True) -> "Stack":
        self.base.train(mode)
        return self

    def __call__(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Logits [G, B, C] of inputs [G, B, ...] (model g sees x[g]), or of one batch [B, ...]
        that every model sees (`shared`)."""
        def one(p, b, xb):
            return functional_call(self.base, (p, b), (xb,))
        return vmap(one, in_dims=(0, 0, None if shared else 0))(self.params, self.buffers, x)

    def state_dict(self, g: int) -> dict:
        """Model g's state dict on the CPU, laid out as a plain model's: clones (saving a view
        would save the whole stack's storage), 4-d weights channels_last as training.train keeps them."""
        both = {**self.params, **self.buffers}
        out = {}
        for k in self.keys:
            v = both[k][g].detach().cpu()
            out[k] = v.clone(memory_format=torch.channels_last) if v.dim() == 4 else v.clone()
        return out


def step(stack: Stack, opt: torch.optim.Optimizer, loss_fn: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
         protocol: Protocol, device: torch.device) -> None:
    """One optimiser step of every model: xb [G, B, ...], yb [G, B]. The models' losses are summed
    for one backward pass: model g's parameters receive only model g's gradient."""
    opt.zero_grad(set_to_none=True)
    with training.autocast(protocol, device):
        out = stack(xb)
    out = out if out.dtype == torch.float64 else out.float()  # bf16 → float32 loss, as training.train
    loss = torch.stack([loss_fn(out[g], yb[g]) for g in range(stack.g)]).sum()
    loss.backward()
    opt.step()


@torch.no_grad()
def accuracies(stack: Stack, x: torch.Tensor, y: torch.Tensor, batch_size: int, protocol: Protocol) -> list[float]:
    """Each model's eval-mode accuracy in percent (training.accuracy, G at once)."""
    if len(y) == 0:
        return [float("nan")] * stack.g
    stack.train(False)
    with training.autocast(protocol, x.device):
        pred = torch.cat([stack(x[i:i + batch_size], shared=True).argmax(2).cpu()
                          for i in range(0, len(x), batch_size)], dim=1)
    return (100.0 * (pred == y.cpu()).double().mean(1)).tolist()


def train_stack(protocol: Protocol, train_split: "data_mod.Split", val_split: "data_mod.Split", seeds: list[int],
                best_from_epoch: int, device: torch.device | None = None) -> list[tuple[dict, dict]]:
    """training.train for each seed, the models trained together; [(best state dict, info)] in
    seed order. Each info's "seconds" is the stack's wall time divided by the number of models
    (the cost of one model, what the unlearning budget is measured in), "stack" is G."""
    device = device or training.resolve_device(protocol)
    training.warm_up(protocol)
    start = time.perf_counter()
    stack = Stack([models.build(protocol, seed) for seed in seeds], device)
    g = stack.g
    x, y = training.model_input(train_split, protocol, device), train_split.age_group.to(device)
    xv, yv = training.model_input(val_split, protocol, device), val_split.age_group
    # Adam (its L2 weight decay included) is elementwise, so one Adam over the [G, ...] tensors is
    # G independent Adams; the schedule sets one lr for all, as each model's would.
    loss_fn, opt, sched, steps_per_epoch = training.recipe(protocol, train_split, stack.params.values(), device)
    n, bs = len(y), protocol.batch_size
    gens = [torch.Generator().manual_seed(seed) for seed in seeds]  # each model its own data order

    best = [(-1.0, None, 0)] * g  # (val acc, state, epoch) per model
    for epoch in range(1, protocol.epochs + 1):
        stack.train()
        orders = torch.stack([torch.randperm(n, generator=gen) for gen in gens]).to(device)
        for s in range(steps_per_epoch):
            idx = orders[:, s * bs:(s + 1) * bs]
            step(stack, opt, loss_fn, x[idx], y[idx], protocol, device)
            if protocol.schedule == "onecycle":
                sched.step()
        if protocol.schedule == "cosine":
            sched.step()
        if epoch >= best_from_epoch:
            for i, acc in enumerate(accuracies(stack, xv, yv, protocol.eval_batch_size, protocol)):
                if acc > best[i][0]:
                    best[i] = (acc, stack.state_dict(i), epoch)
    seconds = (time.perf_counter() - start) / g
    return [(state, {"seed": seed, "seconds": seconds, "best_epoch": epoch, "val_acc": acc,
                     "images_per_second": n * protocol.epochs / seconds, **training.device_info(device),
                     "precision": protocol.precision, "stack": g, "machine": training.machine(device)})
            for seed, (acc, state, epoch) in zip(seeds, best)]
