"""A CSV manifest: one row per image, for data in any folder layout (CACD, AgeDB, IMDB-WIKI, UTKFace,
in-house sets).

    image_path   the image file, relative to the manifest's folder or absolute (any format PIL reads)
    person_id    optional: who is in the image (any text); without it the data has no identities
    age          whole years: cut into the profile's n_classes equal-width age groups (PROTOCOL §2)
    label        instead of age: a class index 0 .. n_classes-1

`python -m harness data manifest {utkface,agedb,cacd} FOLDER --out FILE` writes one from a folder of
a common data set's file names: UTKFace `<age>_<gender>_<race>_<date>.jpg` (no identities), AgeDB
`<n>_<Name>_<age>_<gender>.jpg` and CACD2000 `<age>_<First>_<Last>_<nnnn>.jpg` (both with identities).
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path

import numpy as np

from harness.data.sources import Digest, age_labels, csv_rows, read_bytes
from harness.data.table import Table, cap, fit, person_index, read_image
from harness.protocol import Protocol

REQUIRED = ("image_path",)
OPTIONAL = ("person_id",)
TARGETS = ("age", "label")
COLUMNS_HELP = "image_path, person_id (optional), and age or label"


def _check_header(path: Path, header: list[str]) -> None:
    if not header:
        raise ValueError(f"{path}: empty: a manifest has a header row ({COLUMNS_HELP}) and one row per image")
    missing = [c for c in REQUIRED if c not in header]
    extra = [c for c in header if c not in REQUIRED + OPTIONAL + TARGETS]
    targets = [c for c in TARGETS if c in header]
    if missing or extra or len(targets) != 1 or len(set(header)) != len(header):
        why = (f"missing column(s) {', '.join(missing)}" if missing else f"unknown column(s) {', '.join(extra)}"
               if extra else "a repeated column" if len(set(header)) != len(header) else "both age and label"
               if targets else "no age or label column")
        raise ValueError(f"{path}: {why}; a manifest has the columns {COLUMNS_HELP}, found {', '.join(header)}")


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    header, rows = csv_rows(path, "manifest", lambda h: _check_header(path, h))
    if not rows:
        raise ValueError(f"{path}: no rows: a manifest lists at least one image per split")
    return header, rows


def identities(path: Path) -> bool:
    return "person_id" in _rows(path)[0]


def n_classes(protocol: Protocol) -> int:
    return protocol.n_classes


def _image(path: Path, row: dict) -> Path:
    p = Path(row["image_path"])
    if not row["image_path"]:
        raise ValueError(f"{path}:{row['_line']}: empty image_path")
    return p if p.is_absolute() else path.parent / p


def _whole(path: Path, row: dict, column: str, upper: int | None) -> int:
    text = row[column]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise ValueError(f"{path}:{row['_line']}: {column} {text!r} is not a whole number >= 0")
    if upper is not None and value >= upper:
        raise ValueError(f"{path}:{row['_line']}: label {int(value)} is out of range 0..{upper - 1} (the profile has "
                         f"{upper} classes)")
    return int(value)


def _parse(path: Path, protocol: Protocol) -> tuple[list[dict], np.ndarray, np.ndarray | None]:
    header, rows = _rows(path)
    target = "age" if "age" in header else "label"
    values = np.array([_whole(path, r, target, None if target == "age" else protocol.n_classes) for r in rows],
                      dtype=np.int64)
    if "person_id" in header:
        for r in rows:
            if not r["person_id"]:
                raise ValueError(f"{path}:{r['_line']}: empty person_id")
        person = person_index([r["person_id"] for r in rows])
    else:
        person = None
    return rows, values, person


def digest(path: Path, protocol: Protocol) -> str:
    d = Digest("manifest")
    d.text(path.name, read_bytes(path, "manifest"))
    rows, _, _ = _parse(path, protocol)
    for r in rows:
        d.size(r["image_path"], _image(path, r), f"{path.name} row {r['_line']}")
    return d.hexdigest()


def read(path: Path, protocol: Protocol) -> Table:
    rows, values, person = _parse(path, protocol)
    keep = cap(protocol.max_images, protocol.data_seed, person, len(rows))
    if person is not None:
        keep = keep[np.argsort(person[keep], kind="stable")]
        person = person_index([rows[i]["person_id"] for i in keep])
    images = np.stack([fit(read_image(_image(path, rows[i]), f"{path.name} row {rows[i]['_line']}"),
                           protocol.image_size) for i in keep])
    values = values[keep]
    if "age" in rows[0]:
        label, edges = age_labels(values, protocol.n_classes)
        age = values
    else:
        label, edges, age = values, None, values
    return Table(images=images, label=label, age=age, person=person, origin=[rows[i]["image_path"] for i in keep],
                 edges=edges)


# ---- converters: file names of common data sets -> a manifest --------------------------------------

# name -> (pattern over the file name, group of the age, group of the person or None)
CONVERTERS = {
    "utkface": (re.compile(r"^(\d+)_[01]_\d+_\d+\.jpg(\.chip\.jpg)?$", re.I), 1, None),
    "agedb": (re.compile(r"^\d+_(.+)_(\d+)_[mf]\.jpg$", re.I), 2, 1),
    "cacd": (re.compile(r"^(\d+)_(.+)_\d+\.jpg$", re.I), 1, 2),
}


def convert(kind: str, folder: Path, out: Path) -> tuple[int, list[str]]:
    """Write a manifest for every image under `folder` whose name fits `kind`; (rows written, names
    skipped). The image paths are relative to the manifest's folder."""
    from harness import paths

    if kind not in CONVERTERS:
        raise ValueError(f"unknown layout {kind!r}: choose one of {', '.join(CONVERTERS)}")
    folder, out = Path(folder).resolve(), Path(out).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    pattern, age_group, person_group = CONVERTERS[kind]
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["image_path"] + (["person_id"] if person_group else []) + ["age"])
    written, skipped = 0, []
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        m = pattern.match(p.name)
        if not m:
            skipped.append(p.name)
            continue
        rel = os.path.relpath(p, out.parent)
        w.writerow([Path(rel).as_posix()] + ([m.group(person_group)] if person_group else []) + [int(m.group(age_group))])
        written += 1
    if not written:
        raise ValueError(f"{folder}: no file name fits the {kind} pattern {pattern.pattern}")
    paths.atomic_write_bytes(out, text.getvalue().encode())
    return written, skipped
