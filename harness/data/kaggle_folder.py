"""A folder in the competition's Kaggle layout (PROTOCOL §2), as the user's own copy of the
competition data or anything written in its shape: retain.csv, forget.csv, validation.csv (columns
image_id, person_id, age, age_group), images/<person>/<n>.png, optionally test.csv and
original_model.pth.

Under the identity scenario the folder's own retain and forget sets are kept. Without test.csv
(entrants never had it) a seeded half of validation.csv becomes the test split. original_model.pth
is used as the original model (not trained) when it loads into the profile's architecture; when
it does not (e.g. the competition's ResNet-18 under a `cnn` profile) one line says so and the
original is trained as usual. Images are brought to the profile's size (harness.data.table.fit).
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from harness.data.layout import CSV_COLUMNS, ORIGINAL_MODEL, image_path
from harness.data.scenarios import FORGET, RETAIN, TEST, VALIDATION
from harness.data.sources import Digest, csv_rows, read_bytes
from harness.data.table import Table, fit, person_index, read_image
from harness.protocol import Protocol

FILES = {"retain": RETAIN, "forget": FORGET, "validation": VALIDATION, "test": TEST}
REQUIRED = ("retain", "forget", "validation")


def identities(path: Path) -> bool:
    return True


def n_classes(protocol: Protocol) -> int:
    return protocol.n_classes


def _check_header(path: Path, header: list[str]) -> None:
    if sorted(header) != sorted(CSV_COLUMNS):
        missing = [c for c in CSV_COLUMNS if c not in header]
        extra = [c for c in header if c not in CSV_COLUMNS]
        why = (f"missing column(s) {', '.join(missing)}" if missing else f"unknown column(s) {', '.join(extra)}"
               if extra else "a repeated column")
        raise ValueError(f"{path}: {why}; the Kaggle layout's CSVs have exactly {', '.join(CSV_COLUMNS)}, found "
                         f"{', '.join(header) or 'no header'}")


def _csv(path: Path) -> list[dict]:
    _, rows = csv_rows(path, "CSV file", lambda h: _check_header(path, h))
    if not rows:
        raise ValueError(f"{path}: no rows: every split needs at least one image")
    return rows


def _index(root: Path, protocol: Protocol) -> list[tuple[str, dict]]:
    """(split name, row) of every image, checked: numbers, ranges, image ids, no image twice."""
    out, seen = [], {}
    for name in FILES:
        path = root / f"{name}.csv"
        if name not in REQUIRED and not path.exists():
            continue
        for row in _csv(path):
            where = f"{path}:{row['_line']}"
            for column in ("person_id", "age", "age_group"):
                if not row[column].isdigit():
                    raise ValueError(f"{where}: {column} {row[column]!r} is not a whole number >= 0")
            if int(row["age_group"]) >= protocol.n_classes:
                raise ValueError(f"{where}: age_group {row['age_group']} is out of range 0..{protocol.n_classes - 1}")
            try:
                image_path(root, row["image_id"])
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            if row["image_id"] in seen:
                raise ValueError(f"{where}: image {row['image_id']} is listed again (first in {seen[row['image_id']]})")
            seen[row["image_id"]] = where
            out.append((name, row))
    return out


def digest(path: Path, protocol: Protocol) -> str:
    d = Digest("kaggle")
    for name in FILES:
        if (path / f"{name}.csv").exists() or name in REQUIRED:
            d.text(f"{name}.csv", read_bytes(path / f"{name}.csv", "CSV file"))
    for name, row in _index(path, protocol):
        d.size(row["image_id"], image_path(path, row["image_id"]), f"{name}.csv line {row['_line']}")
    if (path / ORIGINAL_MODEL).exists():
        d.text(ORIGINAL_MODEL, read_bytes(path / ORIGINAL_MODEL, "model file"))
    return d.hexdigest()


def _original(path: Path, protocol: Protocol) -> bytes | None:
    """The bytes of original_model.pth when it loads into the profile's model, else None."""
    import torch

    from harness import models

    file = path / ORIGINAL_MODEL
    if not file.exists():
        return None
    blob = read_bytes(file, "model file")
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        models.build(protocol).load_state_dict(state)
        models.check_finite(state)
        return blob
    except Exception as e:
        print(f"note: {file} does not fit profile {protocol.name!r} ({protocol.arch}, {protocol.n_classes} classes: "
              f"{str(e).splitlines()[0][:120]}): training the original model instead", file=sys.stderr, flush=True)
        return None


def read(path: Path, protocol: Protocol) -> Table:
    rows = _index(path, protocol)
    person = person_index([r["person_id"] for _, r in rows])
    split = np.array([FILES[name] for name, _ in rows], dtype=np.int64)
    if not (split == TEST).any():  # no test.csv: a seeded half of validation
        val = np.flatnonzero(split == VALIDATION)
        chosen = np.random.default_rng([protocol.split_seed, 5]).choice(val, len(val) // 2, replace=False)
        split[chosen] = TEST
    order = np.argsort(person, kind="stable")
    images = np.stack([fit(read_image(image_path(path, rows[i][1]["image_id"]),
                                      f"{rows[i][0]}.csv line {rows[i][1]['_line']}"), protocol.image_size)
                       for i in order])
    pick = lambda column: np.array([int(rows[i][1][column]) for i in order], dtype=np.int64)  # noqa: E731
    return Table(images=images, label=pick("age_group"), age=pick("age"), person=person[order],
                 origin=[rows[i][1]["image_id"] for i in order], split=split[order],
                 original_model=_original(path, protocol))
