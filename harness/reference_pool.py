"""The reference pool: one original model and K retrained-from-scratch models, with their
confidences on the forget set and accuracies, cached under `<cache>/<profile>-<hash>/`.

Every model is its own record, written atomically the moment it is trained, so an interrupted
build resumes and growing K trains only the models that are missing.

Layout:
    <cache>/data-<data hash>/                 the data set (harness.data)
    <cache>/<profile>-<reference hash>/
        manifest.json                         protocol, hashes, accuracies, timings
        original.pt, original.json            weights, and record (accuracies, confidences, seconds)
        retrain/0000.pt, retrain/0000.json    retrained model j, trained with seed retrain_seed0 + j
"""
from __future__ import annotations

import io
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import metric, paths
from harness.protocol import PROTOCOL_VERSION, Protocol

RECORD_KEYS = ("seed", "seconds", "retain_acc", "test_acc", "forget_acc", "val_acc", "forget_confidences")


@dataclass
class Pool:
    dir: Path
    protocol: Protocol
    data_root: Path
    original: dict
    retrains: list[dict]          # K records, index j = seed retrain_seed0 + j

    @property
    def k(self) -> int:
        return len(self.retrains)

    def forget_confidences(self) -> np.ndarray:   # [K, N]
        return np.array([r["forget_confidences"] for r in self.retrains], dtype=np.float64)

    def accuracies(self, key: str) -> np.ndarray:  # [K], percent
        return np.array([r[key] for r in self.retrains], dtype=np.float64)

    def retrain_seconds(self) -> float:
        """Mean wall-clock seconds of one retrain on this machine: the unit of the time budget."""
        return float(np.mean([r["seconds"] for r in self.retrains]))

    @property
    def original_weights(self) -> Path:
        return self.dir / "original.pt"


def pool_dir(protocol: Protocol, cache: Path | None = None) -> Path:
    return (cache or paths.cache_dir()) / f"{protocol.name}-{protocol.reference_hash()}"


def _record_path(root: Path, j: int | None) -> Path:
    return root / "original.json" if j is None else root / "retrain" / f"{j:04d}.json"


def _read_record(path: Path) -> dict | None:
    """A finished record, or None when it is absent or unreadable (then it is trained again)."""
    try:
        rec = paths.read_json(path)
    except (OSError, ValueError):
        return None
    if not all(k in rec for k in RECORD_KEYS) or not path.with_suffix(".pt").exists():
        return None
    return rec


# ---- worker side: runs in a worker process with one intra-op thread -------------------------

_WORKER_CACHE: dict = {}


def worker_splits(data_root: Path) -> dict:
    """The data splits, loaded once per worker process."""
    from harness import data

    key = ("splits", str(data_root))
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = data.load_splits(Path(data_root))
    return _WORKER_CACHE[key]


def set_worker_threads(protocol: Protocol) -> None:
    import torch

    if protocol.device != "cuda":
        torch.set_num_threads(int(os.environ.get("HARNESS_THREADS", "1")))


def evaluate_state(protocol: Protocol, state: dict, splits: dict, device=None) -> dict:
    """Accuracies (percent) and forget-set confidences of one model; the same code scores the
    reference models and the unlearned ones, so the two populations are measured alike."""
    import torch

    from harness import models, training

    device = device or training.resolve_device(protocol)
    model = models.build(protocol).to(device).to(memory_format=torch.channels_last)
    model.load_state_dict(state)
    out = {}
    for name in ("retain", "test", "forget", "validation"):
        split = splits[name]
        x = training.model_input(split, protocol, device)
        lg = training.logits(model, x, protocol.eval_batch_size)
        out[f"{'val' if name == 'validation' else name}_acc"] = (
            100.0 * (lg.argmax(1) == split.age_group).double().mean().item())
        if name == "forget":
            conf = metric.confidences(lg.double().numpy()[None], split.age_group.numpy())[0]
            out["forget_confidences"] = conf.tolist()
    return out


def _train_one(protocol_dict: dict, data_root: str, root: str, j: int | None) -> dict:
    """Train the original (j=None) or retrained model j, evaluate it, write its record."""
    import torch

    from harness import protocol as protocol_mod, training

    protocol = protocol_mod.from_dict(protocol_dict)
    set_worker_threads(protocol)
    splits = worker_splits(Path(data_root))
    if j is None:
        train_split = _concat(splits["retain"], splits["forget"])
        seed, best_from = protocol.original_seed, protocol.original_best_from_epoch
    else:
        train_split = splits["retain"]
        seed, best_from = protocol.retrain_seed0 + j, protocol.retrain_best_from_epoch
    state, info = training.train(protocol, train_split, splits["validation"], seed, best_from)
    rec = {**info, **evaluate_state(protocol, state, splits), "torch_threads": torch.get_num_threads()}
    path = _record_path(Path(root), j)
    buf = io.BytesIO()
    torch.save(state, buf)
    paths.atomic_write_bytes(path.with_suffix(".pt"), buf.getvalue())
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


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def ensure(protocol: Protocol, k: int | None = None, cache: Path | None = None, workers: int | None = None,
           progress: bool = True) -> Pool:
    """The pool with at least K retrained models, training whatever is missing."""
    from harness import data, parallel

    k = protocol.k if k is None else k
    if k < 2:
        raise ValueError(f"K must be at least 2 (got {k}): the metric compares two populations of models")
    cache = cache or paths.cache_dir()
    data_root = data.ensure_data(protocol, cache)
    root = pool_dir(protocol, cache)
    todo = ([None] if _read_record(_record_path(root, None)) is None else []) + [
        j for j in range(k) if _read_record(_record_path(root, j)) is None]
    started = time.perf_counter()
    if todo:
        (root / "retrain").mkdir(parents=True, exist_ok=True)
        jobs = [(_train_one, (protocol.to_dict(), str(data_root), str(root), j)) for j in todo]
        for _ in parallel.run(jobs, workers or default_workers(protocol), progress,
                              desc=f"reference pool {protocol.name}", unit="model"):
            pass
    pool = load(protocol, k, cache)
    if todo:
        _write_manifest(pool, trained=len(todo), seconds=time.perf_counter() - started)
    return pool


def load(protocol: Protocol, k: int, cache: Path | None = None) -> Pool:
    from harness import data

    cache = cache or paths.cache_dir()
    root = pool_dir(protocol, cache)
    original = _read_record(_record_path(root, None))
    retrains = [_read_record(_record_path(root, j)) for j in range(k)]
    if original is None or any(r is None for r in retrains):
        missing = sum(r is None for r in retrains) + (original is None)
        raise FileNotFoundError(f"reference pool {root} lacks {missing} model(s): run "
                                f"`make reference PROFILE={protocol.name}` (or `harness reference --k {k}`)")
    return Pool(root, protocol, data.ensure_data(protocol, cache), original, retrains)


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
        "retrain_seeds": [r["seed"] for r in recs],
        "last_build": {"models_trained": trained, "seconds": seconds},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    })
