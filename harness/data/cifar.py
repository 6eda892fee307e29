"""CIFAR-10 from a local folder in torchvision's layout (`cifar-10-batches-py/` with data_batch_1..5
and test_batch, as `torchvision.datasets.CIFAR10(root, download=False)` reads it): the papers'
setting for random-subset and class unlearning. All 60,000 images are pooled and split by the
protocol's own rule (80/10/10), not CIFAR's train/test division. No identities.

The batches are Python pickles; they are read with an unpickler that builds only plain data and
numpy arrays, so a doctored file cannot run code."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from harness.data.sources import Digest, read_bytes
from harness.data.table import Table, cap, fit_array
from harness.protocol import Protocol

FOLDER = "cifar-10-batches-py"
BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
            ("numpy.core.numeric", "_frombuffer"), ("_codecs", "encode")}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def find(path: Path) -> Path | None:
    for folder in (path / FOLDER, path):
        if (folder / BATCHES[0]).is_file():
            return folder
    return None


def identities(path: Path) -> bool:
    return False


def n_classes(protocol: Protocol) -> int:
    return 10


def _folder(path: Path) -> Path:
    folder = find(path)
    if folder is None:
        raise FileNotFoundError(f"{path}: no {FOLDER}/{BATCHES[0]}: expected torchvision's CIFAR-10 layout "
                                f"({FOLDER}/ with {', '.join(BATCHES)})")
    return folder


def digest(path: Path, protocol: Protocol) -> str:
    folder, d = _folder(path), Digest("cifar10")
    for name in BATCHES:
        d.text(name, read_bytes(folder / name, "CIFAR-10 batch file"))
    return d.hexdigest()


def _batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        blob = _Unpickler(io.BytesIO(read_bytes(path, "CIFAR-10 batch file")), encoding="bytes").load()
        data = np.asarray(blob[b"data"], dtype=np.uint8)
        labels = np.asarray(blob[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{path}: not a CIFAR-10 batch (a pickled dict with b'data' and b'labels': {e})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: data is {data.shape} with {len(labels)} labels; a CIFAR-10 batch holds N x 3072 "
                         "bytes and N labels")
    bad = np.flatnonzero((labels < 0) | (labels >= 10))
    if len(bad):
        raise ValueError(f"{path}: label {labels[bad[0]]} of image {bad[0]} is out of range 0..9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read(path: Path, protocol: Protocol) -> Table:
    folder = _folder(path)
    parts = [_batch(folder / name) for name in BATCHES]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    origin = [f"{name}[{i}]" for name, p in zip(BATCHES, parts) for i in range(len(p[1]))]
    keep = cap(protocol.max_images, protocol.data_seed, None, len(labels))
    return Table(images=fit_array(images[keep], protocol.image_size), label=labels[keep], age=labels[keep],
                 person=None, origin=[origin[i] for i in keep])
