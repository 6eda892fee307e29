"""scikit-learn's bundled handwritten digits (`sklearn.datasets.load_digits`): 1,797 real 8x8
greyscale images of 10 classes that ship inside a dependency, so the `digits` profile runs end to
end offline. Pixels 0..16 become 0..255 (x 255/16, rounded); grey is copied to three channels.
There are no identities (the writers are not published): scenarios random and class only."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from harness.data.table import Table, cap, fit_array
from harness.protocol import Protocol


def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255 / 16)).clip(0, 255).astype(np.uint8)  # [N, 8, 8]
    return images, d.target.astype(np.int64)


def identities(path: Path) -> bool:
    return False


def n_classes(protocol: Protocol) -> int:
    return 10


def digest(path: Path, protocol: Protocol) -> str:
    images, target = _load()
    return hashlib.sha256(b"digits\n" + images.tobytes() + target.tobytes()).hexdigest()


def read(path: Path, protocol: Protocol) -> Table:
    images, target = _load()
    keep = cap(protocol.max_images, protocol.data_seed, None, len(target))
    return Table(images=fit_array(images[keep], protocol.image_size), label=target[keep], age=target[keep],
                 person=None, origin=[f"load_digits[{i}]" for i in keep])
