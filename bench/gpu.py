"""`python -m bench gpu`: a measured slice of the `competition` profile (ResNet-18, 32×32, its
recipe) on whatever device the profile resolves to: seconds per model-epoch trained alone and in
stacks (harness.stacked), in fp32 and bf16, then models per hour and the projected time of the
whole K=512 pool (513 models × 30 epochs) on one device.

On a GPU the slice is the full retain set for EPOCHS_GPU epochs. On a CPU it is a few hundred
images for one epoch in fp32 only (bf16 autocast on a CPU measures nothing useful): a check that
the path runs, and the CPU's own projection, which says why `competition` is a GPU profile."""
from __future__ import annotations

import time

import torch

from harness import data, paths, protocol as protocol_mod, reference_pool, stacked, training

EPOCHS_GPU = 2
CPU_IMAGES = 256
SEED0 = 1000


def _subset(split, n: int | None):
    if n is None or n >= len(split.age_group):
        return split
    return data.Split(images=split.images[:n], age_group=split.age_group[:n], age=split.age[:n],
                      person_id=split.person_id[:n], image_id=list(split.image_id[:n]))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_model_epoch(p, retain, val, g: int, device: torch.device) -> float:
    """Seconds one model-epoch costs when g models train together (g = 1: training.train)."""
    seeds = [SEED0 + j for j in range(g)]
    _sync(device)
    started = time.perf_counter()
    if g == 1:
        training.train(p, retain, val, seeds[0], 1, device)
    else:
        stacked.train_stack(p, retain, val, seeds, 1, device)
    _sync(device)
    return (time.perf_counter() - started) / (g * p.epochs)


def main(profile: str = "competition") -> dict:
    base = protocol_mod.get(profile)
    device = training.resolve_device(base)
    on_gpu = device.type == "cuda"
    if not on_gpu:
        torch.set_num_threads(1)  # as a CPU worker trains
    splits = data.load_splits(data.ensure_data(base, paths.cache_dir()))
    full = len(splits["retain"].age_group)
    retain = _subset(splits["retain"], None if on_gpu else CPU_IMAGES)
    val = _subset(splits["validation"], None if on_gpu else CPU_IMAGES)
    scale = full / len(retain.age_group)  # a slice's model-epoch -> a full one
    epochs = EPOCHS_GPU if on_gpu else 1
    g = reference_pool.stack_size(base) if on_gpu else 2
    rows = []
    for precision in ("fp32", "bf16") if on_gpu else ("fp32",):
        p = base.replace(epochs=epochs, retrain_best_from_epoch=1, precision=precision)
        training.warm_up(p)
        for size in (1, g):
            s = per_model_epoch(p, retain, val, size, device) * scale
            model_s = s * base.epochs
            rows.append({"precision": precision, "stack": size, "model_epoch_s": s, "models_per_hour": 3600 / model_s,
                         "k512_hours": (base.k + 1) * model_s / 3600})
            print(f"  {profile} on {device.type} ({training.device_info(device)['name']}), {precision}, stack {size}: "
                  f"{s:.2f} s per model-epoch -> {rows[-1]['models_per_hour']:.1f} models/h, whole K={base.k} pool "
                  f"{rows[-1]['k512_hours']:.1f} h", flush=True)
    best = min(rows, key=lambda r: r["k512_hours"])
    return {"profile": profile, **training.device_info(device), "slice_images": len(retain.age_group),
            "retain_images": full, "epochs_measured": epochs, "rows": rows, "best": best}


if __name__ == "__main__":
    main()
