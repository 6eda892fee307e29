"""A data set in memory before it is split, and the one transform that brings any image to a
profile's size."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Table:
    """One row per image, rows ordered by (person, number)."""
    images: np.ndarray               # uint8 [N, S, S, 3] at the profile's image size
    label: np.ndarray                # int64 [N] class: age group, or the source's own label
    age: np.ndarray                  # int64 [N] age in years; the label again for sources without ages
    person: np.ndarray | None        # int64 [N] person index (0 = lowest id); None: no identities
    origin: list[str] | None = None  # where each image came from; None for generated images
    split: np.ndarray | None = None  # int64 [N] into SPLITS when the source fixes its own split
    edges: list | None = None        # the age-group edges when labels are age groups
    original_model: bytes | None = None  # a given original model's state dict (Kaggle folders)

    def __len__(self) -> int:
        return len(self.label)

    def numbers(self) -> np.ndarray:
        """int64 [N]: each image's number within its person (0, 1, ...), in row order."""
        if self.person is None:
            return np.zeros(len(self), np.int64)
        out = np.zeros(len(self), np.int64)
        seen: dict[int, int] = {}
        for i, p in enumerate(self.person.tolist()):
            out[i] = seen.get(p, 0)
            seen[p] = out[i] + 1
        return out


def person_index(ids: list[str]) -> np.ndarray:
    """int64 [N]: each row's person as a rank, 0 = the lowest id (numeric order when every id is an
    integer, else text order): "the lowest person indices" of PROTOCOL §2 for any ids."""
    unique = sorted(set(ids), key=(lambda x: (int(x), x)) if all(_is_int(i) for i in ids) else None)
    rank = {pid: r for r, pid in enumerate(unique)}
    return np.array([rank[i] for i in ids], dtype=np.int64)


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def cap(max_images: int, seed: int, person: np.ndarray | None, n: int) -> np.ndarray:
    """Sorted row indices of at most `max_images` rows (all when 0 or already fewer): a seeded
    choice of whole people when there are identities (the identity scenario forgets whole
    people), else of images."""
    if not max_images or n <= max_images:
        return np.arange(n)
    rng = np.random.default_rng([seed, 4])
    if person is None:
        return np.sort(rng.choice(n, max_images, replace=False))
    people, counts = np.unique(person, return_counts=True)
    order = rng.permutation(len(people))
    take = order[np.cumsum(counts[order]) <= max_images]
    take = take if len(take) else order[:1]
    return np.flatnonzero(np.isin(person, people[take]))


def fit(image, size: int) -> np.ndarray:
    """uint8 [size, size, 3] from a PIL image: RGB (grey replicated), centre-cropped to a square
    on its shorter side, then resized with PIL's bilinear filter (antialiased when shrinking,
    integer arithmetic, so the same bytes on every machine). An image already at size is kept as is."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        image = image.crop((left, top, left + s, top + s))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def fit_array(images: np.ndarray, size: int) -> np.ndarray:
    """`fit` over uint8 [N, H, W, 3] or [N, H, W] arrays."""
    from PIL import Image

    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, img in enumerate(images):
        out[i] = fit(Image.fromarray(img), size)
    return out


def read_image(path, where: str):
    """An image file opened and decoded; one clear error naming the file (and `where`, e.g. the
    manifest row) when it is missing or unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found ({where})") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable image ({where}: {e})") from None
