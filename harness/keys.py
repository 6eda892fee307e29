"""The cache's secret key, and everything that derives from it.

A score measures a submission against retrained models and a test split. If a submission can
know either, the score measures something else: with public seeds anyone holding the repository
rebuilds retrained model j bit for bit (`retrain_seed0 + j`), and the synthetic data set is a pure
function of `data_seed`, so a run can render every image with its split and label, the hidden
test split included. So by default (the protocol field `secret_seeds`) both derive from a key that
lives only in the cache, `<cache>/secret.key` (32 random bytes, mode 0600), which no run can see:

    data key = HMAC-SHA256(key, "data:" + data hash)
               -> the generator's seed and the split's seed (so the images themselves, which
                  images are test and validation, a random scenario's forget set, a real
                  source's sample and a Kaggle folder's test half)
    pool key = HMAC-SHA256(key, "pool:" + reference hash)
               -> retrained model j's seed (harness.reference_pool.secret_seed)

One key per cache: a pool and its dev pool share their data (the same data hash) and original
model, and their retrained seeds differ (another reference hash). The data set's meta.json and
every model's record carry the sha256 of their derived key (a commitment), so a cache whose key
changed makes its data and models again instead of mixing them; results publish the same
commitments, and whoever holds the key can show which pool a result was scored on. Unlearning
runs' seeds stay public either way.

`--public-seeds` (secret_seeds=False) uses the protocol's own seeds: a pool anyone can rebuild bit
for bit, for the determinism tests or a paper's table. Its results and leaderboard rows say so.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from harness.protocol import Protocol

KEY_FILE = "secret.key"
KEY_BYTES = 32


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def read(cache: Path) -> bytes | None:
    """The cache's key, or None when it has none yet."""
    try:
        key = (Path(cache) / KEY_FILE).read_bytes()
    except FileNotFoundError:
        return None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{Path(cache) / KEY_FILE} is not a key ({len(key)} bytes, not {KEY_BYTES}): delete it, and "
                         "the cache makes its data and pools again under a new one")
    return key


def install(cache: Path, key: bytes | None = None) -> bytes:
    """The cache's key, made from `key` (or a new one) when it has none. Two processes racing to
    make it agree on one: the file is created exclusively, and the loser reads the winner's."""
    cache = Path(cache)
    found = read(cache)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key or new_key())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, cache / KEY_FILE)  # fails when another process made it first
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return read(cache)


def derive(key: bytes, label: str) -> bytes:
    return hmac.new(key, label.encode(), hashlib.sha256).digest()


def commitment(derived: bytes | None) -> str | None:
    return None if derived is None else hashlib.sha256(derived).hexdigest()


def data_key(protocol: Protocol, key: bytes | None) -> bytes | None:
    """The data set's key (None with public seeds)."""
    return derive(key, f"data:{protocol.data_hash()}") if protocol.secret_seeds and key is not None else None


def pool_key(protocol: Protocol, key: bytes | None) -> bytes | None:
    """The reference pool's key (None with public seeds)."""
    return derive(key, f"pool:{protocol.reference_hash()}") if protocol.secret_seeds and key is not None else None


def _seed(derived: bytes, label: str) -> int:
    return int.from_bytes(derive(derived, label)[:8], "big") & (2**63 - 1)


def data_protocol(protocol: Protocol, key: bytes | None) -> Protocol:
    """The protocol the data set is made with: its own with public seeds; with secret ones, the
    generator's and the split's seeds replaced by the data key's. Only rendering and splitting see
    it; the cache's keys (the data hash) stay the public protocol's."""
    if not protocol.secret_seeds:
        return protocol
    derived = data_key(protocol, key)
    if derived is None:
        raise ValueError(f"profile {protocol.name!r} has secret seeds, and no key to make its data set with: "
                         "make it through harness.data.ensure_data, which keeps the key in the cache")
    return protocol.replace(data_seed=_seed(derived, "data_seed"), split_seed=_seed(derived, "split_seed"))
