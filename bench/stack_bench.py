"""Stacked against single-model training (harness.stacked): models per second, G=4 models trained
as one stack against the same 4 trained one after another, in one thread as a pool worker runs.

Shortened runs of the real recipes: the `default` profile's cnn for 2 epochs, and `kaggle-mini`'s
ResNet-18 for 1 epoch on 512 images (~1 minute on 2 cores). A ratio above 1 means stacking pays
on this machine; reference_pool.stack_size turns it on by default only on a GPU."""
from __future__ import annotations

import sys
import time

import torch

from harness import data, paths, protocol as protocol_mod, stacked, training

G = 4
CASES = {"cnn": ("default", 2, 0), "resnet18": ("kaggle-mini", 1, 512)}  # profile, epochs, images (0 = all)


def measure(profile: str, epochs: int, images: int) -> dict:
    p = protocol_mod.get(profile).replace(epochs=epochs, retrain_best_from_epoch=epochs)
    splits = data.load_splits(data.ensure_data(p, paths.cache_dir()))
    train_split, val = _head(splits["retain"], images or None), splits["validation"]
    seeds = list(range(G))
    device = torch.device("cpu")
    # Warm both paths (lazy imports, first-call dispatch) outside the clock.
    tiny = _head(train_split, 2 * p.batch_size)
    one_epoch = p.replace(epochs=1, retrain_best_from_epoch=1)
    training.train(one_epoch, tiny, val, 0, 1, device)
    stacked.train_stack(one_epoch, tiny, val, [0, 1], 1, device)

    start = time.perf_counter()
    for seed in seeds:
        training.train(p, train_split, val, seed, epochs, device)
    single = G / (time.perf_counter() - start)
    start = time.perf_counter()
    stacked.train_stack(p, train_split, val, seeds, epochs, device)
    stack = G / (time.perf_counter() - start)
    return {"profile": profile, "epochs": epochs, "images": len(train_split), "stack": G,
            "single_models_per_s": single, "stacked_models_per_s": stack, "ratio": stack / single}


def _head(split: data.Split, n: int | None) -> data.Split:
    return data.Split(split.images[:n], split.age_group[:n], split.age[:n], split.person_id[:n], split.image_id[:n])


def main() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a pool worker (reference_pool.set_worker_threads)
    try:
        out = {name: measure(*case) for name, case in CASES.items()}
    finally:
        torch.set_num_threads(threads)
    print(f"stacked (G={G}) against single-model training, 1 thread, CPU:")
    print(f"  {'arch':9s} {'profile':12s} {'single':>12s} {'stacked':>12s} {'ratio':>7s}")
    for name, r in out.items():
        print(f"  {name:9s} {r['profile']:12s} {r['single_models_per_s']:8.3f} m/s {r['stacked_models_per_s']:8.3f} m/s "
              f"{r['ratio']:7.2f}")
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
