"""The competition's input folder, written for one notebook run: what a Kaggle notebook found
under /kaggle, made from a profile's data and reference pool.

    kaggle/input/neurips-2023-machine-unlearning/
        retain.csv  forget.csv  validation.csv     image_id, person_id, age, age_group
        images/<person>/<n>.png                    32x32 RGB, only the images of those three splits
        original_model.pth                         state dict of the pool's original model
    kaggle/working/                                the kernel's working directory (submission.zip)
    kaggle/tmp/                                    where the notebooks write their checkpoints

The test split is not there, as it was not on Kaggle. Everything is copied (not linked), so a
notebook that writes into its input cannot change the harness's cache.
"""
from __future__ import annotations

import shutil
from pathlib import Path

COMPETITION = "neurips-2023-machine-unlearning"
SPLITS = ("retain", "forget", "validation")
ORIGINAL = "original_model.pth"


def write(pool, kaggle: Path) -> Path:
    """Write the tree above at `kaggle` (which must not exist); return the input folder."""
    import torch

    from harness import reference_pool
    from harness.data import layout as data_layout

    inp = kaggle / "input" / COMPETITION
    (inp / "images").mkdir(parents=True)
    for name in ("working", "tmp"):
        (kaggle / name).mkdir()
    source = Path(pool.data_root)
    for split in SPLITS:
        shutil.copyfile(source / f"{split}.csv", inp / f"{split}.csv")
        for row in data_layout.read_csv(inp / f"{split}.csv"):
            image = data_layout.image_path(source, row["image_id"])
            target = inp / image.relative_to(source)
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(image, target)
    state = reference_pool.load_state(pool.original_weights, pool.original["weights_sha256"])
    torch.save(state, inp / ORIGINAL)
    return inp
