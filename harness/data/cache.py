"""The data set of a protocol, made once per data hash: `<cache>/data-<data_hash>`, in the Kaggle
layout (harness.data.layout), from its source (the generator or real data, harness.data.sources),
split by its scenario (harness.data.scenarios).

A real source is read and checked whole before anything is written, so bad input leaves the
cache as it was. The folder is built in a temporary sibling and renamed into place, so an
interrupted run never leaves a folder that looks complete. A folder that fails its integrity
check is made again from the source (one warning line). Building holds a lock file,
`<cache>/.data-<hash>.lock`, so that two processes never make the same data set at once.
"""
from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np

from harness import keys, paths
from harness.data import layout, scenarios, sources
from harness.data.table import Table
from harness.protocol import Protocol

SECRET_RECORD = "secret_commitment"  # meta.json: sha256 of the data key it was made under (null: public seeds)

def table_and_split(protocol: Protocol) -> tuple[Table, np.ndarray]:
    """The protocol's images with their split (int64 [N] into SPLITS); ValueError or
    FileNotFoundError, naming the file and the fix, on bad input."""
    table = sources.read(protocol)
    label = sources.describe(protocol)
    if table.split is not None and protocol.scenario == "identity":
        split = table.split  # a Kaggle folder's own retain/forget sets
        scenarios.require_every_split(split, label, "are empty: every split needs at least one image")
    else:
        base = scenarios.by_image(protocol, len(table)) if table.split is None else scenarios.pooled(table.split)
        split = scenarios.forget(protocol, base, table.person, table.label, label)
    return table, split


def generate(protocol: Protocol, root: Path, made: tuple[Table, np.ndarray] | None = None,
             key: bytes | None = None) -> Path:
    """Write the protocol's data set at `root` (from `made`, or read/rendered now; with secret
    seeds from the cache's `key`, harness.keys) and return `root`. If `root` already holds a
    complete data set of the same data hash (another process won a race), the new copy is discarded."""
    root = Path(root)
    table, split = made or table_and_split(keys.data_protocol(protocol, key))
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        layout.write(protocol, tmp, table, split, protocol.data_source,
                     {**sources.provenance(protocol), SECRET_RECORD: keys.commitment(keys.data_key(protocol, key))})
        _install(tmp, root, protocol)
    except OSError as e:  # a full disk, say: name the data set, not a file of the folder removed below
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(root)) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _install(tmp: Path, root: Path, protocol: Protocol) -> None:
    try:
        os.replace(tmp, root)
        return
    except OSError:
        if not root.exists():
            raise
    # `root` exists and is not empty.
    if layout.is_current(root, protocol):
        return  # someone else finished the same data set first: keep theirs
    # A stale or different data set (or a partial folder left by something else): move it aside
    # first (a rename is atomic), put ours in place, then delete the old one.
    aside = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.replace(root, aside)
    try:
        os.replace(tmp, root)
    except OSError:
        if not layout.is_complete(root):
            raise
    shutil.rmtree(aside, ignore_errors=True)


def ensure_data(protocol: Protocol, cache_dir: Path) -> Path:
    """The protocol's data folder `cache_dir/data-<data_hash>`, made when missing, incomplete,
    made from another source, or failing its integrity check (then with a warning), and with its
    splits packed. Safe when several processes call it at once: one makes it, the others wait."""
    sources.check(protocol)
    cache_dir = Path(cache_dir)
    root = cache_dir / f"data-{protocol.data_hash()}"
    key = keys.read(cache_dir) if protocol.secret_seeds else None
    if (key is not None or not protocol.secret_seeds) and _unusable(root, protocol, key) is None:
        return root
    # Real data is read and checked before the cache is touched (with secret seeds, under a key
    # held in memory until then); the generator renders under the lock, so that two processes do
    # not both render.
    fresh = key or (keys.new_key() if protocol.secret_seeds else None)
    real = protocol.data_source != sources.SYNTHETIC
    made = table_and_split(keys.data_protocol(protocol, fresh)) if real else None
    root.parent.mkdir(parents=True, exist_ok=True)
    with paths.locked(root.parent / f".{root.name}.lock", f"making data set {root.name}"):
        if protocol.secret_seeds:
            key = keys.install(cache_dir, fresh)
            if key != fresh and real:  # another process made the cache's key first
                made = table_and_split(keys.data_protocol(protocol, key))
        problem = _unusable(root, protocol, key)  # again: another process may have made it meanwhile
        if problem is None:
            return root
        if problem:
            print(f"data set {root}: {problem}: making it again", file=sys.stderr, flush=True)
        # Under the lock, whatever a killed build left beside the folder is stale.
        _remove(root)
        for stale in [*root.parent.glob(f".{root.name}.tmp-*"), *root.parent.glob(f".{root.name}.old-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        generate(protocol, root, made, key)
        layout.load_splits(root)  # pack the splits once, here, rather than in every worker
    return root


def _unusable(root: Path, protocol: Protocol, key: bytes | None) -> str | None:
    """None when the data set at root can be used (packing its splits if needed); "" when it is
    absent, incomplete or outdated; else what failed its integrity check, or that it was made
    under another key than the cache's."""
    if not layout.is_current(root, protocol):
        return ""
    if layout.read_meta(root).get(SECRET_RECORD) != keys.commitment(keys.data_key(protocol, key)):
        return f"it was made under another {keys.KEY_FILE}"
    try:
        fingerprint = layout.csv_fingerprint(root)
        if layout.packed(root, fingerprint) is not None:
            return None
        problem = layout.mismatch(root, fingerprint)
        if problem is None:
            layout.pack(root, fingerprint)
        return problem
    except (OSError, ValueError) as e:
        return str(e)


def _remove(path: Path) -> None:
    """Delete a folder: renamed aside first (atomic), so nobody sees it half deleted."""
    if not path.exists():
        return
    aside = path.parent / f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)
