"""CelebA from a local folder in torchvision's layout (`celeba/` with identity_CelebA.txt,
list_attr_celeba.txt and img_align_celeba/, as `torchvision.datasets.CelebA(root, download=False)`
reads it): the seed papers' public stand-in for the competition's faces.

Identities come from identity_CelebA.txt. CelebA has no ages, so the label is an attribute: `Young`
by default (2 classes), or what `--label` names: one attribute (2 classes) or up to four joined by
commas, "Male,Young" (class = sum of 2^i over the attributes i that are present; 4 classes there).
Images are 178x218: centre-cropped to 178x178 and resized (harness.data.table.fit). The eval
partition file is not used: the protocol's own split applies.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.sources import Digest, read_bytes
from harness.data.table import Table, cap, fit, person_index, read_image
from harness.protocol import Protocol

IDENTITY_FILE = "identity_CelebA.txt"
ATTR_FILE = "list_attr_celeba.txt"
IMAGES = "img_align_celeba"
DEFAULT_LABEL = "Young"
MAX_ATTRIBUTES = 4


def find(path: Path) -> Path | None:
    for folder in (path / "celeba", path):
        if (folder / IDENTITY_FILE).is_file():
            return folder
    return None


def _folder(path: Path) -> Path:
    folder = find(path)
    if folder is None:
        raise FileNotFoundError(f"{path}: no {IDENTITY_FILE}: expected torchvision's CelebA layout (celeba/ with "
                                f"{IDENTITY_FILE}, {ATTR_FILE} and {IMAGES}/)")
    return folder


def identities(path: Path) -> bool:
    return True


def attributes(protocol: Protocol) -> list[str]:
    names = [a.strip() for a in (protocol.label or DEFAULT_LABEL).split(",")]
    if not 1 <= len(names) <= MAX_ATTRIBUTES or not all(names):
        raise ValueError(f"--label {protocol.label}: give one to {MAX_ATTRIBUTES} CelebA attributes joined by commas")
    return names


def n_classes(protocol: Protocol) -> int:
    return 2 ** len(attributes(protocol))


def _lines(path: Path) -> list[str]:
    try:
        return read_bytes(path, "CelebA list file").decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _index(folder: Path, protocol: Protocol) -> tuple[list[str], list[str], np.ndarray]:
    """(image file names, person ids, labels [N]) of every image that has both an identity and attributes."""
    people = {}
    path = folder / IDENTITY_FILE
    for n, line in enumerate(_lines(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"{path}:{n}: expected '<image file> <person number>', got {line.strip()!r}")
        people[parts[0]] = parts[1]
    path = folder / ATTR_FILE
    lines = _lines(path)
    if len(lines) < 2:
        raise ValueError(f"{path}: expected a count line, then the attribute names, then one line per image")
    header = lines[1].split()
    wanted = attributes(protocol)
    missing = [a for a in wanted if a not in header]
    if missing:
        raise ValueError(f"{path}: no attribute {', '.join(missing)}: --label takes one of {', '.join(header)}")
    cols = [header.index(a) for a in wanted]
    files, persons, labels = [], [], []
    for n, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        values = parts[1:]
        if len(values) != len(header) or any(v not in ("1", "-1") for v in values):
            raise ValueError(f"{path}:{n}: expected an image file and {len(header)} values of 1 or -1")
        if parts[0] not in people:
            continue  # no identity for it
        files.append(parts[0])
        persons.append(people[parts[0]])
        labels.append(sum(1 << b for b, c in enumerate(cols) if values[c] == "1"))
    if not files:
        raise ValueError(f"{path}: no image is listed in both {ATTR_FILE} and {IDENTITY_FILE}")
    return files, persons, np.array(labels, dtype=np.int64)


def digest(path: Path, protocol: Protocol) -> str:
    folder, d = _folder(path), Digest("celeba")
    for name in (IDENTITY_FILE, ATTR_FILE):
        d.text(name, read_bytes(folder / name, "CelebA list file"))
    files, _, _ = _index(folder, protocol)
    for name in files:
        d.size(name, folder / IMAGES / name, f"listed in {ATTR_FILE}")
    return d.hexdigest()


def read(path: Path, protocol: Protocol) -> Table:
    folder = _folder(path)
    files, persons, labels = _index(folder, protocol)
    person = person_index(persons)
    keep = cap(protocol.max_images, protocol.data_seed, person, len(files))
    keep = keep[np.argsort(person[keep], kind="stable")]  # rows by (person, file order)
    person = person_index([persons[i] for i in keep])   # 0 = the lowest person number kept
    images = np.stack([fit(read_image(folder / IMAGES / files[i], f"listed in {ATTR_FILE}"), protocol.image_size)
                       for i in keep])
    return Table(images=images, label=labels[keep], age=labels[keep], person=person,
                 origin=[f"{IMAGES}/{files[i]}" for i in keep])
