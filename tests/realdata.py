"""Tiny real-format data sets written to disk by the tests: each in the exact layout a user's copy
has (the Kaggle folder, a CSV manifest with JPEGs, torchvision's CelebA and CIFAR-10 folders), with
images that carry a person signal (a per-person colour and pattern) and an age signal."""
from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CELEBA_ATTRS = ("5_o_Clock_Shadow", "Eyeglasses", "Male", "Smiling", "Young")


def face(rng: np.random.Generator, person: int, age: int, w: int, h: int) -> Image.Image:
    """A picture with its person's colour and stripe frequency, brighter when older, plus noise."""
    prng = np.random.default_rng(person)
    colour = prng.uniform(40, 215, 3)
    freq = prng.uniform(0.2, 0.9)
    y, x = np.mgrid[0:h, 0:w]
    img = colour[None, None] * (0.75 + 0.25 * np.sin(freq * (x + y))[..., None]) + age * 0.4
    img = img + rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def people(n_people: int, per: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """(person, number, age) rows; person p has one age, the low numbers young."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(2, 80, n_people)
    ages[:6] = rng.integers(2, 15, 6)
    return [(p, n, int(ages[p])) for p in range(n_people) for n in range(per)]


def write_csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def kaggle_folder(root: Path, n_people: int = 40, per: int = 8, forget_people: int = 3) -> Path:
    """The competition's layout: retain/forget/validation CSVs (no test.csv), 32x32 PNGs."""
    rng = np.random.default_rng(1)
    rows = people(n_people, per)
    edges = np.linspace(min(a for *_, a in rows), max(a for *_, a in rows) + 1, 11)
    order = rng.permutation(len(rows))
    split = {}
    for rank, i in enumerate(order):
        split[i] = "train" if rank < 0.8 * len(rows) else "validation"
    out = {"retain": [], "forget": [], "validation": []}
    for i, (p, n, age) in enumerate(rows):
        (root / "images" / str(p)).mkdir(parents=True, exist_ok=True)
        face(rng, p, age, 32, 32).save(root / "images" / str(p) / f"{n}.png")
        group = int(np.clip(np.searchsorted(edges, age, side="right") - 1, 0, 9))
        name = split[i] if split[i] == "validation" else ("forget" if p < forget_people else "retain")
        out[name].append([f"{p}-{n}", p, age, group])
    for name, body in out.items():
        write_csv(root / f"{name}.csv", ["image_id", "person_id", "age", "age_group"], body)
    return root


def manifest(root: Path, n_people: int = 60, per: int = 8) -> Path:
    """JPEGs of 40x48 under nested folders, people named by text ids, ages in years."""
    rng = np.random.default_rng(2)
    body = []
    for p, n, age in people(n_people, per, seed=3):
        rel = Path("photos") / f"person_{p:03d}" / f"img{n}.jpg"
        (root / rel.parent).mkdir(parents=True, exist_ok=True)
        face(rng, p, age, 40, 48).save(root / rel, quality=95)
        body.append([rel.as_posix(), f"p{p:03d}", age])
    write_csv(root / "manifest.csv", ["image_path", "person_id", "age"], body)
    return root / "manifest.csv"


def celeba(root: Path, n_people: int = 40, per: int = 6) -> Path:
    """torchvision's CelebA layout: celeba/ with the list files and 178x218 JPEGs."""
    rng = np.random.default_rng(4)
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    ids, attrs, parts = [], [], []
    for i, (p, n, age) in enumerate(people(n_people, per, seed=5)):
        name = f"{i + 1:06d}.jpg"
        face(rng, p, age, 178, 218).save(folder / "img_align_celeba" / name, quality=90)
        ids.append(f"{name} {p + 100}")
        values = [1 if rng.random() < 0.3 else -1 for _ in CELEBA_ATTRS[:-1]] + [1 if age < 40 else -1]
        attrs.append(f"{name} " + " ".join(f"{v:2d}" for v in values))
        parts.append(f"{name} {i % 3}")
    (folder / "identity_CelebA.txt").write_text("\n".join(ids) + "\n")
    (folder / "list_attr_celeba.txt").write_text(f"{len(attrs)}\n" + " ".join(CELEBA_ATTRS) + " \n"
                                                 + "\n".join(attrs) + "\n")
    (folder / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


def cifar10(root: Path, per_batch: int = 60) -> Path:
    """torchvision's CIFAR-10 layout: cifar-10-batches-py/ with six pickled batches and the meta."""
    rng = np.random.default_rng(6)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        images = np.stack([np.asarray(face(rng, 1000 + lab, 0, 32, 32)) for lab in labels])  # a class = a colour
        data = images.transpose(0, 3, 1, 2).reshape(per_batch, -1)
        blob = {b"batch_label": f"batch {b}".encode(), b"labels": labels, b"data": data,
                b"filenames": [f"img_{b}_{i}.png".encode() for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(blob, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                                      b"horse", b"ship", b"truck"], b"num_cases_per_batch": per_batch}, f, protocol=2)
    return root
