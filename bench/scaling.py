"""How a whole first score grows: with K, with the forget set and with the image size, each point
a `quick` score of finetune from an empty cache (pool + runs + metric, in this process as
`harness score` runs it), and what that means for `competition` on one GPU and on N.

The competition projection is arithmetic, not a measurement (no GPU was lent while this was
written): the competition recipe's training FLOP (torch's flop counter on the ResNet-18 at 32×32,
times images, epochs and 513 models) over an assumed sustained GPU throughput, split evenly over
N GPUs (the models are independent). When a GPU is at hand, `python -m bench gpu` measures it."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from harness import protocol as protocol_mod

REPO = Path(__file__).resolve().parents[1]
PROFILE = "quick"
KS = (2, 4, 8, 16)
FORGET_IDENTITIES = (5, 15, 40)
IMAGE_SIZES = (16, 24, 32)
BASE_K = 8
# Assumed sustained training throughputs of one GPU on ResNet-18 at 32x32: a range, not a
# measurement (one model at batch 64 keeps a large GPU mostly idle; stacks of 16 in bf16 fill more
# of it), to be replaced by `python -m bench gpu` on a GPU.
ASSUMED_GPU_TFLOPS = (2.0, 10.0, 40.0)
GOAL_HOURS = 1.0  # issue 13's goal: the whole K=512 pool in under an hour on one H100
GPUS = (1, 2, 4, 8)


def first_score(protocol, k: int) -> dict:
    """Seconds of one whole first score from an empty cache, by phase."""
    from joblib.externals.loky import get_reusable_executor

    from harness import score

    saved = {key: os.environ.get(key) for key in ("HARNESS_CACHE_DIR", "HARNESS_RESULTS_DIR")}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        os.environ.update(HARNESS_CACHE_DIR=f"{tmp}/cache", HARNESS_RESULTS_DIR=f"{tmp}/results")
        try:
            get_reusable_executor().shutdown(wait=True)  # every point starts its own workers, as a user's score does
            started = time.perf_counter()
            # A custom budget of 5 retrains: these points measure time, and one run brushing quick's
            # tiny budget (a fifth of a 0.7 s retrain) would end the whole benchmark.
            r = score.score(str(REPO / "submissions" / "finetune.py"), protocol, k=k, progress=False, budget_fraction=5.0)
            total = time.perf_counter() - started
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return {"total_s": total, "pool_s": r["seconds"]["reference_pool"], "runs_s": r["seconds"]["runs_wall"],
            "n_forget": r["n_forget"], "score": r["score"]}


def competition_projection() -> dict:
    """Training FLOP of the whole competition pool, and hours on N GPUs at the assumed throughputs."""
    from bench import speed
    from harness import protocol as pm

    p = pm.get("competition")
    per_image = speed.flop_per_image(p)
    # Images per epoch: the synthetic competition data's training split (retain for the K retrained
    # models, retain + forget for the original), read from the generator's own numbers.
    train_images = _train_images(p)
    total = per_image * train_images * p.epochs * (p.k + 1)
    hours = {f"{tf:g}": {str(n): total / (tf * 1e12) / n / 3600 for n in GPUS} for tf in ASSUMED_GPU_TFLOPS}
    return {"gflop_per_image": per_image / 1e9, "train_images": train_images, "models": p.k + 1,
            "total_pflop": total / 1e15, "assumed_tflops": list(ASSUMED_GPU_TFLOPS), "hours": hours,
            "tflops_for_goal_on_one_gpu": total / (GOAL_HOURS * 3600) / 1e12, "measured": False}


def _train_images(p) -> int:
    from harness import data, paths

    splits = data.load_splits(data.ensure_data(p, paths.cache_dir()))
    return len(splits["retain"].age_group) + len(splits["forget"].age_group)


def main() -> dict:
    base = protocol_mod.get(PROFILE)
    measured: dict = {}

    def point(k: int = BASE_K, **changes) -> dict:
        p = base.replace(**changes)
        key = (k, p.n_forget_identities, p.image_size)  # the base point is shared by the three sweeps
        if key not in measured:
            measured[key] = first_score(p, k)
            print(f"  {PROFILE} K={k}, {p.n_forget_identities} forget identities, {p.image_size}x{p.image_size}: "
                  f"{measured[key]['total_s']:.1f} s (pool {measured[key]['pool_s']:.1f} s, "
                  f"runs {measured[key]['runs_s']:.1f} s)", flush=True)
        return measured[key]

    print(f"scaling: whole first scores of finetune on {PROFILE} from empty caches")
    out = {
        "profile": PROFILE,
        "k": [{"k": k, **point(k=k)} for k in KS],
        "forget": [{"n_forget_identities": n, **point(n_forget_identities=n)} for n in FORGET_IDENTITIES],
        "image_size": [{"image_size": s, **point(image_size=s)} for s in IMAGE_SIZES],
        "competition": competition_projection(),
    }
    c = out["competition"]
    print(f"  competition pool: {c['total_pflop']:.1f} PFLOP of training ({c['gflop_per_image']:.3f} GFLOP per "
          f"image x {c['train_images']} images x 30 epochs x {c['models']} models); under an hour on one GPU "
          f"needs {c['tflops_for_goal_on_one_gpu']:.1f} TFLOP/s sustained; at an assumed "
          + ", ".join(f"{tf:g} TFLOP/s: {c['hours'][f'{tf:g}']['1']:.1f} h on 1 GPU, "
                      f"{c['hours'][f'{tf:g}'][str(GPUS[-1])]:.2f} h on {GPUS[-1]}" for tf in ASSUMED_GPU_TFLOPS))
    return out


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = (("k", "k", "K (retrained models = runs)"),
              ("forget", "n_forget", "forget-set size (images)"),
              ("image_size", "image_size", "image size (pixels per side)"))
    for ax, (key, x, label) in zip(axes, panels):
        rows = out[key]
        xs = [r[x] for r in rows]
        for part, style in (("total_s", "o-"), ("pool_s", "s--"), ("runs_s", "^--")):
            ax.plot(xs, [r[part] for r in rows], style, label=part.removesuffix("_s"))
        ax.set_xlabel(label)
        ax.set_ylabel("seconds (first score)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[0].set_title(f"{out['profile']}, finetune, empty cache")
    c, ax = out["competition"], axes[3]
    for tf in c["assumed_tflops"]:
        hours = c["hours"][f"{tf:g}"]
        ax.plot([int(n) for n in hours], list(hours.values()), "o-", label=f"{tf:g} TFLOP/s per GPU (assumed)")
    ax.axhline(GOAL_HOURS, color="grey", lw=0.8, ls=":", label="goal: 1 hour")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("GPUs")
    ax.set_ylabel("hours for the K=512 pool")
    ax.set_title("competition K=512: projected from FLOP")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    result = main()
    plot(result, REPO / "bench" / "scaling.png")
