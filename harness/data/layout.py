"""The Kaggle layout (PROTOCOL §2): the on-disk form of every data set the harness uses, generated
or real, and the one reader for it.

Under one root folder:

    retain.csv, forget.csv, validation.csv, test.csv   columns image_id, person_id, age, age_group
                                                        (+ origin: the source file, for real data)
    images/<person>/<n>.png                             RGB, image_size x image_size; image_id "<person>-<n>"
    original_model.pth                                  optional: a given original model (Kaggle folders)
    meta.json                                           source, data hash, counts, age-group edges,
                                                        sha256 of each CSV, one digest of all images
    splits.pt, splits.json                              the packed splits, and their sha256 (written after them)

`test.csv` is the harness's own (entrants never see it). A source without identities gets one
person per image. `meta.json` is written last, so a folder with it is complete (harness.data.cache
builds in a temporary sibling folder and renames it into place).

Integrity. Loading uses `splits.pt` only when its bytes match the sha256 in `splits.json` and the
CSVs are the ones it was packed from; otherwise the splits are rebuilt from the PNGs, and then
(only then: hashing every image costs time) the CSVs and images are checked against the digests
in `meta.json`, when it has them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness import paths
from harness.data.scenarios import SPLITS
from harness.data.table import Table
from harness.protocol import Protocol

CSV_COLUMNS = ("image_id", "person_id", "age", "age_group")
PACKED_CACHE = "splits.pt"
PACKED_RECORD = "splits.json"   # {"version", "sha256" of splits.pt, "csv_sha256" it was packed from}
PACKED_CACHE_VERSION = 2
ORIGINAL_MODEL = "original_model.pth"


# ================================================================================================
# Writing
# ================================================================================================

def _png_bytes(image_hwc: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_hwc, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def write(protocol: Protocol, folder: Path, table: Table, split: np.ndarray, made_by: str, extra: dict) -> None:
    """Write `table` with its `split` (int64 [N] into SPLITS) in the Kaggle layout, meta.json last."""
    folder = Path(folder)
    person = table.person if table.person is not None else np.arange(len(table), dtype=np.int64)
    number = table.numbers()
    for pid in np.unique(person):
        (folder / "images" / str(pid)).mkdir(parents=True, exist_ok=True)
    image_entries = []
    for i in range(len(person)):
        relative = f"images/{person[i]}/{number[i]}.png"
        png = _png_bytes(table.images[i])
        (folder / relative).write_bytes(png)
        image_entries.append((relative, hashlib.sha256(png).hexdigest()))

    if table.original_model is not None:
        (folder / ORIGINAL_MODEL).write_bytes(table.original_model)
    counts, class_counts, csv_sha256 = {}, {}, {}
    columns = CSV_COLUMNS + (("origin",) if table.origin is not None else ())
    for k, name in enumerate(SPLITS):
        rows = np.flatnonzero(split == k)  # in (person, number) order
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(columns)
        for i in rows:
            row = [f"{person[i]}-{number[i]}", int(person[i]), int(table.age[i]), int(table.label[i])]
            w.writerow(row + ([table.origin[i]] if table.origin is not None else []))
        blob = text.getvalue().encode()
        (folder / f"{name}.csv").write_bytes(blob)
        csv_sha256[name] = hashlib.sha256(blob).hexdigest()
        counts[name] = int(len(rows))
        class_counts[name] = np.bincount(table.label[rows], minlength=protocol.n_classes).tolist()
    forget_people = np.unique(person[split == SPLITS.index("forget")]) if table.person is not None else None
    meta = {
        "generator_version": made_by,
        "data_hash": protocol.data_hash(),
        "data_fields": protocol.data_fields(),
        "image_size": protocol.image_size,
        "n_images": int(len(person)),
        "n_identities": None if table.person is None else int(len(np.unique(person))),
        "scenario": protocol.scenario,
        "forget_identities": None if forget_people is None or protocol.scenario != "identity" else forget_people.tolist(),
        "counts": counts,
        "age_group_edges": table.edges,
        "class_counts": class_counts,
        "class_counts_all": np.bincount(table.label, minlength=protocol.n_classes).tolist(),
        "csv_sha256": csv_sha256,
        "images_sha256": _digest(image_entries),
        **extra,
    }
    # Written last: its presence marks a complete data set.
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


# ================================================================================================
# Integrity
# ================================================================================================

def is_complete(root: Path) -> bool:
    return (root / "meta.json").is_file()


def read_meta(root: Path) -> dict:
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def is_current(root: Path, protocol: Protocol) -> bool:
    """A complete data set of the protocol's data hash, made from its source, with its digests."""
    meta = read_meta(root)
    return (meta.get("data_hash") == protocol.data_hash() and meta.get("generator_version") == protocol.data_source
            and "images_sha256" in meta and "csv_sha256" in meta)


def _digest(entries) -> str:
    """One sha256 over the sorted lines "<path relative to the root> <sha256 of the file>"."""
    h = hashlib.sha256()
    for relative, sha in sorted(entries):
        h.update(f"{relative} {sha}\n".encode())
    return h.hexdigest()


def images_digest(root: Path) -> str:
    """The digest (see `_digest`) of every file under `root/images`: it changes when an image is
    altered, truncated, added or removed."""
    root = Path(root)
    files = [p for p in (root / "images").rglob("*") if p.is_file()]
    return _digest((p.relative_to(root).as_posix(), paths.file_sha256(p)) for p in files)


def mismatch(root: Path, fingerprint: dict[str, str]) -> str | None:
    """What differs from the digests in meta.json (nothing to compare without them), or None."""
    meta = read_meta(root)
    recorded = meta.get("csv_sha256") if isinstance(meta.get("csv_sha256"), dict) else {}
    for name, sha in fingerprint.items():
        if name in recorded and recorded[name] != sha:
            return f"{name}.csv does not match its sha256 in meta.json (altered or truncated)"
    if "images_sha256" in meta and images_digest(root) != meta["images_sha256"]:
        return "the images do not match their digest in meta.json (an image altered, truncated, added or removed)"
    return None


# ================================================================================================
# Reading (any folder in the Kaggle layout)
# ================================================================================================

@dataclass
class Split:
    images: torch.Tensor      # uint8 [N, 3, H, W]
    age_group: torch.Tensor   # int64 [N]
    age: torch.Tensor         # int64 [N]
    person_id: torch.Tensor   # int64 [N]
    image_id: list[str]

    def __len__(self) -> int:
        return len(self.image_id)


class DataCorrupt(ValueError):
    """A data folder's files differ from the digests in its meta.json."""


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CSV file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in CSV_COLUMNS if c not in columns]
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected "
                                 f"{', '.join(CSV_COLUMNS)}, found {', '.join(columns) or 'no header'}")
            return [{k.strip(): (v or "").strip() for k, v in row.items() if isinstance(k, str)} for row in reader]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: not a readable CSV row ({e})") from None


def image_path(root: Path, image_id: str) -> Path:
    person, sep, number = image_id.rpartition("-")
    # No separators and no "..": an image id names a file under root/images, nothing else.
    if not sep or not person or not number or person in (".", "..") or any(c in image_id for c in "/\\\0"):
        raise ValueError(f"image_id {image_id!r} is not of the form <person>-<n>")
    return root / "images" / person / f"{number}.png"


def _read_png(path: Path) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "RGB":
                # The models take 3 channels; read_image in the Kaggle notebooks would not convert.
                raise ValueError(f"{path}: image mode is {img.mode}, expected RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable PNG image ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def read_split(root: Path, name: str) -> Split:
    """Read `<root>/<name>.csv` and its PNGs."""
    root = Path(root)
    path = root / f"{name}.csv"
    rows = read_csv(path)
    images, ages, groups, persons, image_ids = [], [], [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            age, group, pid = (int(row[c]) for c in ("age", "age_group", "person_id"))
            file = image_path(root, row["image_id"])
        except ValueError as e:
            raise ValueError(f"{path}:{line}: {e}") from None
        if not all(0 <= v < 2**63 for v in (age, group, pid)):
            raise ValueError(f"{path}:{line}: age, age_group and person_id must be non-negative 64-bit integers, "
                             f"got {row}")
        img = _read_png(file)
        if images and img.shape != images[0].shape:
            raise ValueError(f"{file}: size {tuple(img.shape[1:])} differs from "
                             f"{tuple(images[0].shape[1:])} of the split's first image")
        images.append(img)
        ages.append(age)
        groups.append(group)
        persons.append(pid)
        image_ids.append(row["image_id"])
    if images:
        stacked = torch.stack(images)
    else:
        stacked = torch.zeros((0, 3, 0, 0), dtype=torch.uint8)
    return Split(images=stacked, age_group=torch.tensor(groups, dtype=torch.int64),
                 age=torch.tensor(ages, dtype=torch.int64), person_id=torch.tensor(persons, dtype=torch.int64),
                 image_id=image_ids)


def csv_fingerprint(root: Path) -> dict[str, str]:
    out = {}
    for name in SPLITS:
        path = root / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CSV file not found")
        out[name] = paths.file_sha256(path)
    return out


def load_splits(root: Path) -> dict[str, Split]:
    """All four splits, through the packed cache `root/splits.pt` so that worker processes do not
    each decode thousands of PNGs. When the cache cannot be used the splits are read from the
    PNGs, after checking the files against meta.json's digests: DataCorrupt when they differ."""
    root = Path(root)
    fingerprint = csv_fingerprint(root)
    blob = packed(root, fingerprint)
    if blob is not None:
        try:
            stored = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            splits = {name: Split(**stored[name]) for name in SPLITS}
            if all(len(s) == len(s.images) == len(s.age_group) for s in splits.values()):
                return splits
        except Exception:  # e.g. written by another torch version: read the PNGs instead
            pass
    problem = mismatch(root, fingerprint)
    if problem:
        raise DataCorrupt(f"data set {root}: {problem}: restore the original files (a data set the harness "
                          "generated: delete its folder and it is made again)")
    return pack(root, fingerprint)


def packed(root: Path, fingerprint: dict[str, str]) -> bytes | None:
    """The bytes of splits.pt when they match the sha256 in splits.json and were packed from
    these CSVs; else None."""
    try:
        record = paths.read_json(root / PACKED_RECORD)
        blob = (root / PACKED_CACHE).read_bytes()
    except (OSError, ValueError):
        return None
    ok = (isinstance(record, dict) and record.get("version") == PACKED_CACHE_VERSION
          and record.get("csv_sha256") == fingerprint and record.get("sha256") == hashlib.sha256(blob).hexdigest())
    return blob if ok else None


def pack(root: Path, fingerprint: dict[str, str]) -> dict[str, Split]:
    """The splits read from the PNGs, written to splits.pt and then its record splits.json."""
    splits = {name: read_split(root, name) for name in SPLITS}
    buf = io.BytesIO()
    torch.save({n: vars(s) for n, s in splits.items()}, buf)
    blob = buf.getvalue()
    try:
        paths.atomic_write_bytes(root / PACKED_CACHE, blob)
        paths.atomic_write_json(root / PACKED_RECORD, {"version": PACKED_CACHE_VERSION, "csv_sha256": fingerprint,
                                                       "sha256": hashlib.sha256(blob).hexdigest()})
    except OSError:
        pass  # a read-only data folder or a full disk: work without the cache
    return splits


def kaggle_order(split: Split) -> Split:
    """The split in the order the competition notebooks' HiddenDataset held it: rows sorted by
    the image path `images/<person>/<n>.png` as a string (so person 10 comes before person 2).
    The loaders handed to a submission use this order, so a seeded shuffle gives the same batches
    in a harness run and in a Kaggle notebook."""
    def path(i: int) -> str:
        person, _, number = split.image_id[i].rpartition("-")
        return f"{person}/{number}.png"

    order = sorted(range(len(split)), key=path)
    idx = torch.tensor(order, dtype=torch.int64)
    return Split(images=split.images[idx], age_group=split.age_group[idx], age=split.age[idx],
                 person_id=split.person_id[idx], image_id=[split.image_id[i] for i in order])
