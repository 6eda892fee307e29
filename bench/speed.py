"""How close the training loop runs to the machine: the harness's loop against a bare PyTorch loop,
and achieved training FLOP/s against the single-thread matrix-multiply peak, all in one process
with one intra-op thread (how the workers train).

    train_loop_ratio  harness `training.train` seconds / bare loop seconds (same model, data,
                      batch, epochs, seed); above 1 is what the recipe adds: the schedule, the
                      per-epoch validation and the best-checkpoint copies
    flop_fraction     (training FLOP per image x images per second of the bare loop) / the
                      float32 matrix-multiply peak of one thread, both measured here
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness import data, models, paths, protocol as protocol_mod, training

PROFILE = "default"
SEED = 1000
MATMUL_N = 1024   # big enough to reach the BLAS kernel's peak, small enough to stay in cache-friendly tiles
REPEATS = 2       # the loops alternate; the best of each is kept (machines are noisy)


def bare_loop(protocol, split, seed: int) -> float:
    """The textbook loop on the same model, data, batch size, optimiser and epochs: seconds."""
    model = models.build(protocol, seed).to(memory_format=torch.channels_last)
    x = training.model_input(split, protocol, torch.device("cpu"))
    y = split.age_group
    opt = torch.optim.Adam(model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    n, bs = len(y), protocol.batch_size
    start = time.perf_counter()
    model.train()
    for _ in range(protocol.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - 1, bs):
            idx = order[i:i + bs]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return time.perf_counter() - start


def flop_per_image(protocol) -> float:
    """Forward + backward FLOP of one training image (torch's flop counter, one batch)."""
    model = models.build(protocol, 0)
    x = torch.randn(protocol.batch_size, 3, protocol.image_size, protocol.image_size)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long)).backward()
    return counter.get_total_flops() / len(x)


def matmul_peak() -> float:
    """float32 FLOP/s of one thread on a square matrix multiply (best of several)."""
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    for _ in range(3):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(10))
    return 2 * MATMUL_N ** 3 / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        protocol = protocol_mod.get(PROFILE)
        splits = data.load_splits(data.ensure_data(protocol, paths.cache_dir()))
        training.warm_up(protocol)
        harness_s, bare_s = [], []
        for _ in range(REPEATS):
            harness_s.append(_timed(lambda: training.train(protocol, splits["retain"], splits["validation"], SEED,
                                                           protocol.retrain_best_from_epoch)))
            bare_s.append(bare_loop(protocol, splits["retain"], SEED))
        images = len(splits["retain"].age_group) * protocol.epochs
        per_image = flop_per_image(protocol)
        peak = matmul_peak()
        achieved = per_image * images / min(bare_s)
    finally:
        torch.set_num_threads(threads)
    out = {"profile": PROFILE, "harness_train_s": min(harness_s), "bare_loop_s": min(bare_s),
           "train_loop_ratio": min(harness_s) / min(bare_s), "images_per_s": images / min(bare_s),
           "mflop_per_image": per_image / 1e6, "achieved_gflops": achieved / 1e9,
           "matmul_peak_gflops": peak / 1e9, "flop_fraction": achieved / peak}
    print(f"training loop ({PROFILE}, one thread): harness {out['harness_train_s']:.2f} s, bare PyTorch loop "
          f"{out['bare_loop_s']:.2f} s -> ratio {out['train_loop_ratio']:.3f}")
    print(f"  {out['mflop_per_image']:.2f} MFLOP per training image x {out['images_per_s']:.0f} images/s = "
          f"{out['achieved_gflops']:.1f} GFLOP/s; one thread's float32 matmul peak {out['matmul_peak_gflops']:.1f} "
          f"GFLOP/s -> flop fraction {out['flop_fraction']:.2f}")
    return out


if __name__ == "__main__":
    main()
