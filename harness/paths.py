"""Where the harness keeps its cache and results, the one way it writes files (atomically), and
the one way processes take turns on a shared folder (a lock file)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
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


def atomic_write_bytes(path: Path, blob: bytes, mode: int = 0o666) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target: a reader
    sees the old file or the new one, never half of one, even after kill -9 or a full disk. An
    OSError names `path` (not the temporary file), so the user knows which write failed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        if e.errno is None:
            raise
        # OSError(errno, ...) makes the matching subclass (PermissionError, ...), as the original was
        raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode())


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (checkpoints can be tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def locked(lock_file: Path, doing: str):
    """Hold an exclusive lock on `lock_file` (a dot-file beside what it guards, so that folder
    listings ignore it) for the duration; when another process holds it, say so once (unless
    `doing` is empty) and wait. The kernel drops the lock when its holder dies, even by kill -9."""
    from filelock import FileLock, Timeout

    lock = FileLock(lock_file)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if doing:
            print(f"waiting for another harness process {doing}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
