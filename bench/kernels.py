"""What a faster kernel path would buy the reference pool: training steps per second of a profile's
recipe (its model, batch, input size and Adam, one thread as a pool worker runs) along each path,
as ratios to today's (eager, channels_last), in one run; and whether each path gives today's
weights bit for bit (one that does not changes every pool: a new protocol version).

    python -m bench kernels        (~2 minutes on 2 cores)

Random inputs of the profile's shape: this times the kernels, not the data."""
from __future__ import annotations

import time

import torch
from torch import nn

from harness import models, protocol as protocol_mod

PROFILES = ("default", "kaggle-mini")
WARM, STEPS = 3, 20


def _step_fn(p, path: str):
    torch.manual_seed(0)
    net = models.build(p, 0)
    fmt = torch.contiguous_format if path == "nchw" else torch.channels_last
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay, fused=path == "fused_adam")
    forward = torch.compile(net) if path == "compile" else net
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(p.batch_size, 3, p.image_size, p.image_size, generator=gen).contiguous(memory_format=fmt)
    y = torch.randint(0, p.n_classes, (p.batch_size,), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(forward(x), y).backward()
        opt.step()
    return net, step


def measure(profile: str) -> dict:
    p = protocol_mod.get(profile)
    out, reference = {}, None
    for path in ("eager", "nchw", "fused_adam", "compile"):
        try:
            net, step = _step_fn(p, path)
            started = time.perf_counter()
            for _ in range(WARM):
                step()
            warm = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(STEPS):
                step()
            rate = STEPS * p.batch_size / (time.perf_counter() - started)
        except Exception as e:  # noqa: BLE001 - a path this machine cannot take is a finding too
            out[path] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            continue
        weights = torch.cat([v.detach().flatten().float() for v in net.state_dict().values()])
        reference = weights if reference is None else reference
        out[path] = {"images_per_s": rate, "warm_s": warm, "identical": bool(torch.equal(weights, reference)),
                     "max_abs_diff": float((weights - reference).abs().max())}
    base = out["eager"]["images_per_s"]
    for path, row in out.items():
        if "images_per_s" in row:
            row["ratio"] = row["images_per_s"] / base
    return out


def main() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a pool worker
    try:
        results = {name: measure(name) for name in PROFILES}
    finally:
        torch.set_num_threads(threads)
    for name, rows in results.items():
        print(f"\n{name}: training images/s, one thread ({STEPS} steps after {WARM} warm-up steps)")
        for path, row in rows.items():
            if "error" in row:
                print(f"  {path:<11} unavailable: {row['error']}")
            else:
                same = "bit-identical" if row["identical"] else f"differs (max {row['max_abs_diff']:.1e})"
                print(f"  {path:<11} {row['images_per_s']:8.0f}  {row['ratio']:.2f}x  warm-up {row['warm_s']:.1f} s  {same}")
    return results
