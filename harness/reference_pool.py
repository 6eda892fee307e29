"""The reference pool: one original model and K retrained-from-scratch models, with their
confidences on the forget set and accuracies, cached under `<cache>/<profile>-<hash>/`.

Every model is its own record, written atomically the moment it is trained, so an interrupted
build resumes and growing K trains only the models that are missing.

Integrity. Each record holds the sha256 of its weights file. `ensure` checks every file it is
about to rely on and trains again, with one warning line, any model whose file is missing,
truncated or altered; `load` never returns a pool that fails the check; `load_state` checks the
bytes it loads. One process at a time builds a pool (a lock file, `.build.lock`); another waits
and then finds the models done.

Seeds. By default (`secret_seeds`) retrained model j's seed derives from the pool's key, which
derives from the cache's secret key (harness.keys): the first 4 bytes, big-endian, of
sha256(pool key + j as 8 bytes big-endian), masked to 31 bits. A submission that knows the public
recipe cannot rebuild the retrained models to imitate them (and the data they were trained on is
secret too). Records store "seed": null and the pool's `seed_commitment`, sha256(pool key), which
results publish: whoever holds the key can later show that the pool came from it by retraining any
model. The original's record carries the commitment as well (its data derives from the same key),
while its seed stays public. With public seeds (`--public-seeds`) retrained model j is trained
with seed retrain_seed0 + j: anyone with the protocol can rebuild the pool bit for bit. Unlearning
runs' seeds are public in both modes.

Stacking. With a stack size G > 1 (`stack_size`: HARNESS_STACK, else 16 on a GPU, 1 on a CPU)
the retrained models train G at a time in one job (harness.stacked); each still gets its own
record, with "stack": G, and "seconds" the stack's time divided by G. A stack trains only missing
models, and a lone one trains alone (its record has no "stack"). Stacked weights are not
bit-identical to a model trained alone (another summation order), yet the recipe is the same: like
the device, stacking is an execution detail recorded per model and not part of the cache key.

Layout:
    <cache>/secret.key                        the key secret seeds derive from (harness.keys)
    <cache>/data-<data hash>/                 the data set (harness.data)
    <cache>/<profile>-<reference hash>/
        manifest.json                         protocol, hashes, accuracies, timings
        original.pt, original.json            weights, and record (accuracies, confidences, seconds, weights_sha256)
        retrain/0000.pt, retrain/0000.json    retrained model j
        .build.lock                           held while a process trains models here
"""
from __future__ import annotations

import hashlib
import io
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import evaluate, keys, paths
from harness.protocol import PROTOCOL_VERSION, Protocol

RECORD_KEYS = ("seed", "seconds", "retain_acc", "test_acc", "forget_acc", "val_acc", "forget_confidences",
               "weights_sha256")
LOCK_FILE = ".build.lock"


class CacheCorrupt(ValueError):
    """A cached file does not match the sha256 recorded for it, or cannot be read."""


@dataclass
class Pool:
    dir: Path
    protocol: Protocol
    data_root: Path
    original: dict
    retrains: list[dict]          # K records, index j = retrained model j
    seed_commitment: str | None = None  # sha256(pool key) with secret seeds, else None

    @property
    def k(self) -> int:
        return len(self.retrains)

    def forget_confidences(self) -> np.ndarray:   # [K, N]
        return np.array([r["forget_confidences"] for r in self.retrains], dtype=np.float64)

    def accuracies(self, key: str) -> np.ndarray:  # [K], percent
        return np.array([r[key] for r in self.retrains], dtype=np.float64)

    def retrain_seconds(self) -> float:
        """Mean wall-clock seconds of one retrain trained alone on this machine: the unit of the time
        budget. A stacked model's seconds are its share of the stack's, less than it takes alone, so
        when every retrained model was stacked the original (always trained alone, on ~2% more
        images) stands in for them."""
        alone = [r["seconds"] for r in self.retrains if not r.get("stack")]
        if not alone and not self.original.get("given"):
            alone = [self.original["seconds"]]
        return float(np.mean(alone or [r["seconds"] for r in self.retrains]))

    @property
    def original_weights(self) -> Path:
        return self.dir / "original.pt"

    def retrain_weights(self, j: int) -> Path:
        return _record_path(self.dir, j).with_suffix(".pt")


def pool_dir(protocol: Protocol, cache: Path | None = None) -> Path:
    return (cache or paths.cache_dir()) / f"{protocol.name}-{protocol.reference_hash()}"


def _record_path(root: Path, j: int | None) -> Path:
    return root / "original.json" if j is None else root / "retrain" / f"{j:04d}.json"


def _read_record(path: Path) -> dict | None:
    """A finished record, or None when it is absent, unreadable or of an older format (then it is
    trained again)."""
    try:
        rec = paths.read_json(path)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and all(k in rec for k in RECORD_KEYS) else None


def load_state(path: Path, sha256: str) -> dict:
    """The state dict in `path`, read once, checked against `sha256`, loaded with weights_only."""
    import torch

    path = Path(path)
    fix = "run the same command again and the harness trains that model anew"
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise CacheCorrupt(f"{path} cannot be read ({e.strerror or e}); {fix}") from None
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise CacheCorrupt(f"{path} does not match its recorded sha256 (truncated or altered); {fix}")
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as e:  # whatever the unpickler makes of foreign bytes
        raise CacheCorrupt(f"{path} is not a loadable checkpoint ({type(e).__name__}); {fix}") from None
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise CacheCorrupt(f"{path} holds no state dict of tensors; {fix}")
    return state


def secret_seed(secret: bytes, j: int) -> int:
    """Seed of retrained model j under secret seeds (see the module docstring)."""
    return int.from_bytes(hashlib.sha256(secret + j.to_bytes(8, "big")).digest()[:4], "big") & 0x7FFFFFFF


def _pool_key(protocol: Protocol, cache: Path, create: bool) -> bytes | None:
    """The pool's key (None with public seeds, or when the cache has no key and `create` is false)."""
    if not protocol.secret_seeds:
        return None
    return keys.pool_key(protocol, keys.install(cache) if create else keys.read(cache))


def _check(root: Path, protocol: Protocol, k: int, commitment: str | None) -> tuple[dict, list[str]]:
    """The records (key None = the original, j = retrained model j) whose weights files match
    their recorded sha256 (and, with secret seeds, come from this pool's secret), and a line for
    each model that is present but fails."""
    good, problems = {}, []
    for j in [None, *range(k)]:
        rec = _read_record(_record_path(root, j))
        if rec is None:
            continue
        weights = _record_path(root, j).with_suffix(".pt")
        name = weights.relative_to(root).as_posix()
        try:
            actual = paths.file_sha256(weights)
        except OSError as e:
            problems.append(f"{name} is missing" if isinstance(e, FileNotFoundError) else
                            f"{name} cannot be read ({e.strerror})")
            continue
        if actual != rec["weights_sha256"]:
            problems.append(f"{name} does not match its recorded sha256 (truncated or altered)")
        elif protocol.secret_seeds and rec.get("seed_commitment") != commitment:
            problems.append(f"{name} was trained under another {keys.KEY_FILE}")
        else:
            good[j] = rec
    return good, problems


# ---- worker side: runs in a worker process with one intra-op thread -------------------------

_WORKER_CACHE: dict = {}


def version(*files: Path) -> tuple:
    """When these files last changed (every write here renames a new file into place): what a
    worker's cache is keyed by besides the path, so a data set or pool made again at the same path
    (a new key, a damaged file) is never served from memory."""
    out = []
    for f in files:
        try:
            out.append(Path(f).stat().st_mtime_ns)
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def worker_splits(data_root: Path) -> dict:
    """The data splits, loaded once per worker process (and again when the data set was remade)."""
    from harness import data

    key = ("splits", str(data_root), version(Path(data_root) / "meta.json"))
    if key not in _WORKER_CACHE:
        for old in [c for c in _WORKER_CACHE if c[:2] == key[:2]]:
            del _WORKER_CACHE[old]
        _WORKER_CACHE[key] = data.load_splits(Path(data_root))
    return _WORKER_CACHE[key]


def set_worker_threads(protocol: Protocol) -> None:
    import torch

    if protocol.device != "cuda":
        torch.set_num_threads(int(os.environ.get("HARNESS_THREADS", "1")))


def _train_one(protocol_dict: dict, data_root: str, root: str, j: int | None, seed: int,
               commitment: str | None) -> dict:
    """Train the original (j=None) or retrained model j with `seed`, evaluate it, write its
    record. Under secret seeds (`commitment` set) its record keeps the pool's commitment, and a
    retrained model's record keeps it instead of its seed."""
    import torch

    from harness import data as data_mod, protocol as protocol_mod, training

    protocol = protocol_mod.from_dict(protocol_dict)
    set_worker_threads(protocol)
    splits = worker_splits(Path(data_root))
    if j is None:
        train_split, best_from = _concat(splits["retain"], splits["forget"]), protocol.original_best_from_epoch
    else:
        train_split, best_from = splits["retain"], protocol.retrain_best_from_epoch
    given = Path(data_root) / data_mod.ORIGINAL_MODEL
    if j is None and given.exists():  # a Kaggle folder's own original model (harness.data.kaggle_folder)
        state = torch.load(given, map_location="cpu", weights_only=True)
        info = {"seed": None, "seconds": 0.0, "best_epoch": None, "val_acc": None, "images_per_second": None,
                "given": data_mod.ORIGINAL_MODEL}
    else:
        state, info = training.train(protocol, train_split, splits["validation"], seed, best_from)
    return _write_record(protocol, splits, root, j, state, info, commitment)


def time_slice(protocol_dict: dict, data_root: str, epochs: int) -> float:
    """In a worker: the seconds of one epoch of the recipe on the retain set, the last of `epochs`
    of a fresh model (the first pays one-time costs). What the run budget is scaled by when the
    pool was trained on another machine (harness.budget)."""
    from harness import protocol as protocol_mod, training

    protocol = protocol_mod.from_dict(protocol_dict)
    set_worker_threads(protocol)
    splits = worker_splits(Path(data_root))
    _, info = training.train(protocol, splits["retain"], splits["validation"], seed=0, best_from_epoch=10**9,
                             epochs=epochs)
    return info["epoch_seconds"][-1]


def _train_stack_job(protocol_dict: dict, data_root: str, root: str, js: list[int], seeds: list[int],
                     commitment: str | None) -> list[dict]:
    """Train retrained models js (seeds in the same order) together as one stack
    (harness.stacked), then evaluate each and write its record as _train_one does."""
    from harness import protocol as protocol_mod, stacked

    protocol = protocol_mod.from_dict(protocol_dict)
    set_worker_threads(protocol)
    splits = worker_splits(Path(data_root))
    trained = stacked.train_stack(protocol, splits["retain"], splits["validation"], seeds,
                                  protocol.retrain_best_from_epoch)
    return [_write_record(protocol, splits, root, j, state, info, commitment) for j, (state, info) in zip(js, trained)]


def _write_record(protocol: Protocol, splits: dict, root: str, j: int | None, state: dict, info: dict,
                  commitment: str | None) -> dict:
    """Evaluate a trained model and write its weights and record (the record last)."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    blob = buf.getvalue()
    rec = {**info, **evaluate.evaluate_state(protocol, state, splits), "torch_threads": torch.get_num_threads(),
           "weights_sha256": hashlib.sha256(blob).hexdigest()}
    if commitment is not None:
        rec.update(seed_commitment=commitment)
        if j is not None:  # the original's seed stays public
            rec.update(seed=None)
    path = _record_path(Path(root), j)
    paths.atomic_write_bytes(path.with_suffix(".pt"), blob)
    paths.atomic_write_json(path, rec)  # last: its presence marks the model finished
    return {"j": j, **rec}


def _concat(a, b):
    """The original's training set, D = retain ∪ forget."""
    import torch

    from harness import data

    return data.Split(images=torch.cat([a.images, b.images]), age_group=torch.cat([a.age_group, b.age_group]),
                      age=torch.cat([a.age, b.age]), person_id=torch.cat([a.person_id, b.person_id]),
                      image_id=list(a.image_id) + list(b.image_id))


# ---- harness side -----------------------------------------------------------------------------

def default_workers(protocol: Protocol) -> int:
    if os.environ.get("HARNESS_WORKERS"):
        return max(1, int(os.environ["HARNESS_WORKERS"]))
    return 1 if protocol.device in ("cuda", "auto") and _cuda_available() else (os.cpu_count() or 1)


STACK_ENV = "HARNESS_STACK"


def stack_size(protocol: Protocol) -> int:
    """How many retrained models one job trains together (harness.stacked); 1 = each alone.

    HARNESS_STACK overrides. On a GPU, 16 ResNet-18s at 32x32 (batch 64 each: one batch of 1024)
    is a guess at what fills a device (not measured here: no GPU at hand), fewer for larger images.
    On a CPU 1: measured on 2 cores with single-thread workers, stacking was slower per model at
    every G tried (harness.stacked's docstring has the figures; bench/stack_bench.py measures them)."""
    value = os.environ.get(STACK_ENV)
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{STACK_ENV}={value!r} is not a stack size: use a whole number of models, 1 to train "
                             "each alone")
        return int(value)
    if protocol.device in ("cuda", "auto") and _cuda_available():
        return max(1, min(16, 16 * 32 * 32 // protocol.image_size ** 2))
    return 1


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def ensure(protocol: Protocol, k: int | None = None, cache: Path | None = None, workers: int | None = None,
           progress: bool = True) -> Pool:
    """The pool with at least K retrained models, training whatever is missing or fails its
    sha256 check. Several processes may call it at once: one trains, the others wait for it."""
    from harness import data, parallel

    k = protocol.k if k is None else k
    if k < 2:
        raise ValueError(f"K must be at least 2 (got {k}): the metric compares two populations of models")
    cache = cache or paths.cache_dir()
    data_root = data.ensure_data(protocol, cache)
    root = pool_dir(protocol, cache)
    pool = _load(protocol, k, root, data_root)[0]
    if pool is not None:
        return pool
    (root / "retrain").mkdir(parents=True, exist_ok=True)
    with paths.locked(root / LOCK_FILE, f"building reference pool {root.name}"):
        secret = _pool_key(protocol, cache, create=True)
        commitment = keys.commitment(secret)
        good, problems = _check(root, protocol, k, commitment)  # again: another process may have trained them
        for problem in problems:
            print(f"reference pool: {problem}: training it again", file=sys.stderr, flush=True)
        todo = [j for j in [None, *range(k)] if j not in good]
        for stale in [*root.glob(".*.tmp"), *(root / "retrain").glob(".*.tmp")]:
            stale.unlink(missing_ok=True)  # left by a process killed while writing; nobody else writes here now
        if not todo:
            return Pool(root, protocol, data_root, good[None], [good[j] for j in range(k)], commitment)
        started = time.perf_counter()
        args = (protocol.to_dict(), str(data_root), str(root))
        g = stack_size(protocol)
        rest = [j for j in todo if j is not None]  # the original (None) trains alone: other data
        groups = [[None]] * (None in todo) + [rest[i:i + g] for i in range(0, len(rest), g)]
        jobs = [(_train_one, (*args, js[0], _seed(protocol, secret, js[0]), commitment)) if len(js) == 1 else
                (_train_stack_job, (*args, js, [_seed(protocol, secret, j) for j in js], commitment))
                for js in groups]
        desc = f"reference pool {protocol.name}" + (f" (stacks of {g})" if g > 1 else "")
        for out in parallel.run(jobs, workers or default_workers(protocol), progress, desc=desc,
                                unit="model" if g == 1 else "job"):
            for rec in out if isinstance(out, list) else [out]:
                good[rec.pop("j")] = rec
        pool = Pool(root, protocol, data_root, good[None], [good[j] for j in range(k)], commitment)
        _write_manifest(pool, trained=len(todo), seconds=time.perf_counter() - started)
    return pool


def seed_of(protocol: Protocol, j: int | None, cache: Path | None = None) -> int:
    """The seed the pool's model j (None: the original) is trained with, for whoever holds the
    cache (and so its key): how one shows that a pool came from its key, by training a model again."""
    return _seed(protocol, _pool_key(protocol, Path(cache or paths.cache_dir()), create=False), j)


def _seed(protocol: Protocol, secret: bytes | None, j: int | None) -> int:
    if j is None:
        return protocol.original_seed
    return protocol.retrain_seed0 + j if secret is None else secret_seed(secret, j)


def _load(protocol: Protocol, k: int, root: Path, data_root: Path) -> tuple[Pool | None, list[str], int]:
    """The pool if every model is present and passes its check, else None; the problems found;
    the number of models missing or failing."""
    secret = _pool_key(protocol, root.parent, create=False)
    commitment = keys.commitment(secret)
    good, problems = _check(root, protocol, k, commitment)
    if protocol.secret_seeds and secret is None:
        problems.insert(0, f"the cache's {keys.KEY_FILE} is missing")
    missing = k + 1 - len(good)
    if missing:
        return None, problems, missing
    return Pool(root, protocol, data_root, good[None], [good[j] for j in range(k)], commitment), problems, 0


def records(protocol: Protocol, k: int, data_root: Path, cache: Path | None = None) -> Pool:
    """The pool's records as written, without hashing its files: for a caller that loads every
    file it uses through `load_state`, which checks it (the runner's workers: one read, one hash)."""
    root = pool_dir(protocol, cache)
    recs = {j: _read_record(_record_path(root, j)) for j in [None, *range(k)]}
    if any(r is None for r in recs.values()):
        raise FileNotFoundError(f"reference pool {root} lacks models: run `make reference PROFILE={protocol.name}`")
    commitment = keys.commitment(_pool_key(protocol, root.parent, create=False))
    return Pool(root, protocol, Path(data_root), recs[None], [recs[j] for j in range(k)], commitment)


def load(protocol: Protocol, k: int, cache: Path | None = None) -> Pool:
    """The pool as it is on disk; FileNotFoundError when a model is missing or fails its check."""
    from harness import data

    cache = cache or paths.cache_dir()
    root = pool_dir(protocol, cache)
    pool, problems, missing = _load(protocol, k, root, data.ensure_data(protocol, cache))
    if pool is None:
        why = f" ({'; '.join(problems[:3])}{'; ...' if len(problems) > 3 else ''})" if problems else ""
        raise FileNotFoundError(f"reference pool {root} lacks {missing} usable model(s){why}: run "
                                f"`make reference PROFILE={protocol.name}` (or `harness reference --k {k}`)")
    return pool


def _write_manifest(pool: Pool, trained: int, seconds: float) -> None:
    import torch

    recs = pool.retrains
    paths.atomic_write_json(pool.dir / "manifest.json", {
        "protocol_version": PROTOCOL_VERSION,
        "profile": pool.protocol.name,
        "reference_hash": pool.protocol.reference_hash(),
        "data_hash": pool.protocol.data_hash(),
        "protocol": pool.protocol.reference_fields(),
        "k": pool.k,
        "original": {k: pool.original[k] for k in ("seed", "seconds", "retain_acc", "test_acc", "forget_acc", "val_acc")},
        "retrained_mean": {key: float(np.mean([r[key] for r in recs]))
                           for key in ("seconds", "retain_acc", "test_acc", "forget_acc", "val_acc")},
        "retrain_seeds": None if pool.seed_commitment else [r["seed"] for r in recs],
        "seed_commitment": pool.seed_commitment,
        "last_build": {"models_trained": trained, "seconds": seconds},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    })
