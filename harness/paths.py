"""Where the harness keeps its cache and results, and the one way it writes files (atomically)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_UMASK = os.umask(0)
os.umask(_UMASK)


def _default_root() -> Path:
    # In a checkout (editable install) the cache and results live beside the code, as the README
    # says; an installed package falls back to the working directory.
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").exists() else Path.cwd()


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or _default_root() / "reference")


def results_dir() -> Path:
    return Path(os.environ.get("HARNESS_RESULTS_DIR") or _default_root() / "results")


def atomic_write_bytes(path: Path, blob: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target: a reader
    sees the old file or the new one, never half of one, even after kill -9."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode())


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)
