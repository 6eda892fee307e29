"""`harness kaggle export SUBMISSION.py --out NOTEBOOK.ipynb`: a submission as a competition notebook.

The notebook has the structure of the competition's published entries: imports, the DEVICE line
and its CUDA guard, the HiddenDataset over /kaggle/input/neurips-2023-machine-unlearning, the
submission's own code unchanged, the empty.txt shortcut of the public run, the loop over
range(512) that reloads original_model.pth and saves /kaggle/tmp/unlearned_checkpoint_{i}.pth,
the 512-file check and `zip submission.zip /kaggle/tmp/*.pth`. Uploaded to Kaggle it runs as an
entry.

It also starts every iteration exactly as `harness score` starts a run, so that `harness kaggle
run` on it gives the same score to the last digit:
- a fresh ResNet-18 loaded with the original weights, then seeded (random, numpy, torch) with
  UNLEARN_SEED0 + i, the seed of the harness's run i;
- loaders over the data in the HiddenDataset's order (sorted by image path), shuffled by their
  own generators seeded with that seed + 0, 1, 2 (retain, forget, validation), batch size 64.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from harness.protocol import Protocol

ITERATIONS = 512

IMPORTS = """\
import os
import random
import subprocess

import numpy as np
import pandas as pd
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.models import resnet18"""

DEVICE = """\
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
if DEVICE != 'cuda':
    raise RuntimeError('Make sure you have added an accelerator to your notebook; the submission will fail otherwise!')"""

DATASET = """\
DATA = '/kaggle/input/neurips-2023-machine-unlearning'


def load_example(df_row):
    image = torchvision.io.read_image(df_row['image_path'])
    return {'image': image, 'image_id': df_row['image_id'], 'age_group': df_row['age_group'],
            'age': df_row['age'], 'person_id': df_row['person_id']}


class HiddenDataset(Dataset):
    '''The hidden dataset.'''
    def __init__(self, split='train'):
        super().__init__()
        self.examples = []
        df = pd.read_csv(f'{DATA}/{split}.csv')
        df['image_path'] = df['image_id'].apply(
            lambda x: os.path.join(DATA, 'images', x.split('-')[0], x.split('-')[1] + '.png'))
        df = df.sort_values(by='image_path')
        df.apply(lambda row: self.examples.append(load_example(row)), axis=1)
        if len(self.examples) == 0:
            raise ValueError('No examples.')

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, idx):
        example = self.examples[idx]
        example['image'] = example['image'].to(torch.float32)
        return example


DATASETS = {}


def get_dataset(batch_size, seed):
    '''Retain, forget and validation loaders, each shuffled by its own generator (seed + 0, 1, 2).'''
    loaders = []
    for offset, split in enumerate(('retain', 'forget', 'validation')):
        if split not in DATASETS:
            DATASETS[split] = HiddenDataset(split=split)
        generator = torch.Generator().manual_seed(seed + offset)
        loaders.append(DataLoader(DATASETS[split], batch_size=batch_size, shuffle=True, generator=generator))
    return loaders"""

LOOP = """\
UNLEARN_SEED0 = {seed0}  # iteration i is seeded with UNLEARN_SEED0 + i, as `harness score` seeds run i
BATCH_SIZE = {batch}


def seed_run(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


if os.path.exists('/kaggle/input/neurips-2023-machine-unlearning/empty.txt'):
    # The public run has no data: an empty submission.zip is all it needs.
    subprocess.run('touch submission.zip', shell=True)
else:
    # Checkpoints go to /kaggle/tmp: 512 of them do not fit in the working directory.
    os.makedirs('/kaggle/tmp', exist_ok=True)
    for i in range(512):
        net = resnet18(weights=None, num_classes={classes})
        net.load_state_dict(torch.load('/kaggle/input/neurips-2023-machine-unlearning/original_model.pth'))
        net.to(DEVICE).to(memory_format=torch.channels_last)  # as the harness hands a run its net
        seed_run(UNLEARN_SEED0 + i)
        retain_loader, forget_loader, validation_loader = get_dataset(BATCH_SIZE, UNLEARN_SEED0 + i)
        unlearning(net, retain_loader, forget_loader, validation_loader)
        state = net.state_dict()
        torch.save(state, f'/kaggle/tmp/unlearned_checkpoint_{{i}}.pth')

    # Exactly 512 checkpoints, or the scorer rejects the submission.
    unlearned_ckpts = os.listdir('/kaggle/tmp')
    if len(unlearned_ckpts) != 512:
        raise RuntimeError('Expected exactly 512 checkpoints. The submission will throw an exception otherwise.')

    subprocess.run('zip submission.zip /kaggle/tmp/*.pth', shell=True)"""


def _imports_harness(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n == "harness" or n.startswith("harness.") for n in names):
            return True
    return False


def notebook(submission: Path, protocol: Protocol):
    """The notebook (an nbformat node) for one submission file."""
    import nbformat
    from nbformat import v4

    from harness import __version__, runner

    sub = runner.Submission.load(submission)
    source = sub.path.read_text()
    if _imports_harness(ast.parse(source)):
        raise runner.SubmissionError(f"{submission} imports the harness package, which a Kaggle notebook does not "
                                     "have: only self-contained submissions can be exported")
    if protocol.arch != "resnet18" or protocol.pixel_scale != "raw" or protocol.image_size != 32:
        raise ValueError(f"profile {protocol.name!r} is not the competition's model and input (ResNet-18, 32x32, "
                         "raw pixels): export with --profile kaggle-mini or competition")
    intro = (f"# {sub.name}: a NeurIPS 2023 Machine Unlearning entry\n\n"
             f"Exported by unlearning-harness {__version__} from `{sub.path.name}` (sha256 `{sub.sha256[:12]}`). "
             "It runs on Kaggle as a competition notebook; `python -m harness kaggle run` runs it offline "
             "and scores its submission.zip. Iteration *i* is seeded with `UNLEARN_SEED0 + i` and its loaders "
             "shuffle with that seed, as run *i* of `harness score`.")
    cells = [v4.new_markdown_cell(intro), v4.new_code_cell(IMPORTS), v4.new_code_cell(DEVICE),
             v4.new_code_cell(DATASET),
             v4.new_markdown_cell(f"## The unlearning method: `{sub.path.name}`, unchanged"),
             v4.new_code_cell(source.rstrip("\n")),
             v4.new_markdown_cell("## 512 unlearned checkpoints, zipped into submission.zip"),
             v4.new_code_cell(LOOP.format(seed0=protocol.unlearn_seed0, batch=protocol.loader_batch_size,
                                          classes=protocol.n_classes))]
    nb = v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "unlearning_harness": {"submission": sub.path.name, "submission_sha256": sub.sha256,
                               "unlearn_seed0": protocol.unlearn_seed0}})
    for i, cell in enumerate(nb.cells):  # stable ids: the same submission always exports the same bytes
        cell["id"] = hashlib.sha256(f"{i}:{cell.source}".encode()).hexdigest()[:8]
    nbformat.validate(nb)
    return nb


def export(submission: Path, out: Path, protocol: Protocol) -> Path:
    import nbformat

    from harness import paths

    nb = notebook(Path(submission), protocol)
    out = Path(out)
    if out.suffix != ".ipynb":
        raise ValueError(f"--out {out}: a notebook's name ends in .ipynb")
    paths.atomic_write_bytes(out, nbformat.writes(nb).encode() + b"\n")
    return out
