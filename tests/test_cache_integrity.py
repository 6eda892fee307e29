"""Every cached file is checked before it is relied on: a reference model whose weights file is
missing, truncated or altered is trained again (never used), the data set's packed splits are
used only when they match their recorded sha256, and images or CSVs that differ from meta.json are
an error for a folder you provide and are generated again for the harness's own. Secret seeds.
Real files, the quick profile with K=2."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from harness import data, keys, paths, protocol, reference_pool
from harness.data import layout

P = protocol.QUICK
K = 2


@pytest.fixture(scope="module")
def built(quick_pool) -> Path:
    """The session's cache (conftest): the quick data set and pool, of which K=2 models are used."""
    return quick_pool.dir.parent


@pytest.fixture
def copy(own_cache) -> Path:
    """A private copy of the data set and pool (conftest), for a test to damage."""
    return own_cache.dir.parent


def _flip_byte(path: Path, at: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[at] ^= 0xFF
    path.write_bytes(bytes(blob))


def _stderr_lines(capfd) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if line.strip()]


# ---- the reference pool ---------------------------------------------------------------------

def test_records_carry_the_sha256_of_their_weights_and_load_state_checks_it(copy):
    pool = reference_pool.load(P, K, copy)
    assert "weights_sha256" in reference_pool.RECORD_KEYS
    for rec, path in [(pool.original, pool.original_weights), *((pool.retrains[j], pool.retrain_weights(j))
                                                              for j in range(K))]:
        assert rec["weights_sha256"] == paths.file_sha256(path)
    state = reference_pool.load_state(pool.retrain_weights(1), pool.retrains[1]["weights_sha256"])
    expected = torch.load(pool.retrain_weights(1), map_location="cpu", weights_only=True)
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)

    with pytest.raises(reference_pool.CacheCorrupt, match=r"retrain/0001\.pt does not match its recorded sha256"):
        reference_pool.load_state(pool.retrain_weights(1), pool.retrains[0]["weights_sha256"])
    pool.retrain_weights(1).unlink()
    with pytest.raises(reference_pool.CacheCorrupt, match=r"retrain/0001\.pt cannot be read.*trains that model anew"):
        reference_pool.load_state(pool.retrain_weights(1), pool.retrains[1]["weights_sha256"])
    assert issubclass(reference_pool.CacheCorrupt, ValueError)


def test_truncated_and_altered_weights_are_detected_and_only_they_are_retrained(copy, capfd):
    pool = reference_pool.load(P, K, copy)
    truncated, altered, kept = pool.retrain_weights(1), pool.original_weights, pool.retrain_weights(0)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    _flip_byte(altered, len(altered.read_bytes()) // 2)
    kept_inode = kept.stat().st_ino

    with pytest.raises(FileNotFoundError, match=r"lacks 2 usable model\(s\).*original\.pt does not match"):
        reference_pool.load(P, K, copy)
    capfd.readouterr()
    again = reference_pool.ensure(P, K, cache=copy, workers=2, progress=False)
    assert sorted(_stderr_lines(capfd)) == [
        "reference pool: original.pt does not match its recorded sha256 (truncated or altered): training it again",
        "reference pool: retrain/0001.pt does not match its recorded sha256 (truncated or altered): training it again",
    ]
    assert kept.stat().st_ino == kept_inode  # the intact model was not touched
    # Training is bit-exact: the models trained again are the ones that were damaged.
    assert paths.file_sha256(truncated) == pool.retrains[1]["weights_sha256"] == again.retrains[1]["weights_sha256"]
    assert paths.file_sha256(altered) == pool.original["weights_sha256"]
    assert paths.read_json(again.dir / "manifest.json")["last_build"]["models_trained"] == 2
    assert reference_pool.load(P, K, copy).retrains == again.retrains


def test_a_missing_weights_file_and_a_record_from_before_the_sha256_are_retrained(copy, capfd):
    root = reference_pool.pool_dir(P, copy)
    (root / "retrain" / "0000.pt").unlink()
    old = paths.read_json(root / "retrain" / "0001.json")
    del old["weights_sha256"]
    (root / "retrain" / "0001.json").write_text(json.dumps(old))
    (root / "retrain" / ".0001.pt.abc123.tmp").write_bytes(b"half")  # left by a process killed mid-write
    capfd.readouterr()
    pool = reference_pool.ensure(P, K, cache=copy, workers=2, progress=False)
    assert _stderr_lines(capfd) == ["reference pool: retrain/0000.pt is missing: training it again"]
    assert all(paths.file_sha256(pool.retrain_weights(j)) == pool.retrains[j]["weights_sha256"] for j in range(K))
    assert not list(root.rglob("*.tmp"))


# ---- secret seeds ---------------------------------------------------------------------------

def test_secret_seeds_derive_from_the_caches_key_and_are_not_published(copy, capfd):
    """The default: the pool's seeds and its data derive from the cache's key (harness.keys). Records
    and manifest hold commitments, never the key or the seeds; the public-seed pool of the same
    profile has other data and other models; a changed key makes the data and the pool again."""
    assert P.secret_seeds
    public = P.replace(secret_seeds=False)
    assert public.reference_hash() != P.reference_hash() and public.data_hash() != P.data_hash()
    pool = reference_pool.load(P, K, copy)
    key = (copy / keys.KEY_FILE).read_bytes()
    assert len(key) == 32 and (copy / keys.KEY_FILE).stat().st_mode & 0o777 == 0o600
    pool_key = keys.derive(key, f"pool:{P.reference_hash()}")
    assert pool.seed_commitment == hashlib.sha256(pool_key).hexdigest()
    assert [r["seed"] for r in pool.retrains] == [None] * K
    assert all(r["seed_commitment"] == pool.seed_commitment for r in [pool.original, *pool.retrains])
    assert pool.original["seed"] == P.original_seed  # its data is secret; its seed needs not be
    manifest = paths.read_json(pool.dir / "manifest.json")
    assert manifest["retrain_seeds"] is None and manifest["seed_commitment"] == pool.seed_commitment
    meta = paths.read_json(pool.data_root / "meta.json")
    assert meta["secret_commitment"] == hashlib.sha256(keys.derive(key, f"data:{P.data_hash()}")).hexdigest()
    for secret in (key, pool_key):
        assert secret.hex() not in json.dumps([manifest, meta, *pool.retrains])
    for j in range(K):
        seed = int.from_bytes(hashlib.sha256(pool_key + j.to_bytes(8, "big")).digest()[:4], "big") & 0x7FFFFFFF
        assert reference_pool.secret_seed(pool_key, j) == seed == reference_pool.seed_of(P, j, copy)
        assert seed not in pool.retrains[j].values()

    # The public-seed pool of the same profile: other images, other models, the seeds on record.
    open_pool = reference_pool.ensure(public, K, cache=copy, workers=2, progress=False)
    assert [r["seed"] for r in open_pool.retrains] == [P.retrain_seed0 + j for j in range(K)]
    ours, theirs = data.load_splits(pool.data_root), data.load_splits(open_pool.data_root)
    assert not torch.equal(ours["retain"].images[:20], theirs["retain"].images[:20])
    assert {r["weights_sha256"] for r in pool.retrains}.isdisjoint(r["weights_sha256"] for r in open_pool.retrains)

    # Whoever holds the key rebuilds the same models; another key is noticed and all is made again.
    pool.retrain_weights(0).unlink()
    again = reference_pool.ensure(P, K, cache=copy, workers=1, progress=False)
    assert again.retrains[0]["weights_sha256"] == pool.retrains[0]["weights_sha256"]
    (copy / keys.KEY_FILE).unlink()  # a lost key: the cache draws a new one and makes its data again
    capfd.readouterr()
    with pytest.raises(FileNotFoundError, match=r"original\.pt was trained under another secret\.key"):
        reference_pool.load(P, K, copy)
    assert "it was made under another secret.key: making it again" in capfd.readouterr().err
    assert (copy / keys.KEY_FILE).read_bytes() != key
    fresh = reference_pool.ensure(P, K, cache=copy, workers=2, progress=False)
    assert capfd.readouterr().err.count("was trained under another secret.key: training it again") == K + 1
    assert fresh.seed_commitment != pool.seed_commitment
    assert fresh.original["weights_sha256"] != pool.original["weights_sha256"]  # other data, another original


# ---- the data set ---------------------------------------------------------------------------

def _data_root(cache: Path) -> Path:
    return cache / f"data-{P.data_hash()}"


def _repaint(png: Path) -> None:
    """Replace an image by another valid PNG of the same size."""
    with Image.open(png) as img:
        Image.new("RGB", img.size, (1, 2, 3)).save(png)


def test_loading_uses_the_pack_without_hashing_images(built, monkeypatch):
    def no_image_hashing(*args):
        raise AssertionError("hashed every image although splits.pt is intact")

    monkeypatch.setattr(layout, "images_digest", no_image_hashing)
    monkeypatch.setattr(layout, "read_split", no_image_hashing)
    assert data.ensure_data(P, built) == _data_root(built)
    assert len(data.load_splits(_data_root(built))["forget"]) > 0


def test_a_corrupt_pack_is_rebuilt_from_intact_images(copy):
    root = _data_root(copy)
    expected = data.load_splits(root)
    _flip_byte(root / data.PACKED_CACHE, 100)
    rebuilt = data.load_splits(root)
    assert all(torch.equal(rebuilt[n].images, expected[n].images) for n in data.SPLITS)
    record = paths.read_json(root / data.PACKED_RECORD)
    assert record["sha256"] == paths.file_sha256(root / data.PACKED_CACHE)


def test_altered_images_or_csvs_of_a_provided_folder_are_an_error(copy):
    root = _data_root(copy)
    (root / data.PACKED_CACHE).unlink()
    png = next((root / "images" / "3").glob("*.png"))
    original = png.read_bytes()
    _repaint(png)
    with pytest.raises(data.DataCorrupt, match=r"the images do not match their digest in meta\.json.*restore"):
        data.load_splits(root)
    png.write_bytes(original[: len(original) // 2])  # truncated
    with pytest.raises(data.DataCorrupt, match="images do not match"):
        data.load_splits(root)
    png.write_bytes(original)
    (root / "images" / "3" / "extra.png").write_bytes(original)  # added
    with pytest.raises(data.DataCorrupt, match="images do not match"):
        data.load_splits(root)
    (root / "images" / "3" / "extra.png").unlink()
    csv_path = root / "test.csv"
    csv_path.write_text(csv_path.read_text() + csv_path.read_text().splitlines()[1] + "\n")  # a row twice
    with pytest.raises(data.DataCorrupt, match=r"test\.csv does not match its sha256 in meta\.json"):
        data.load_splits(root)


def test_the_generated_data_set_failing_its_check_is_made_again(copy, capfd):
    root = _data_root(copy)
    meta = (root / "meta.json").read_bytes()
    png = next((root / "images" / "5").glob("*.png"))
    png.write_bytes(png.read_bytes()[:40])
    (root / data.PACKED_CACHE).unlink()
    capfd.readouterr()
    assert data.ensure_data(P, copy) == root
    lines = _stderr_lines(capfd)
    assert len(lines) == 1 and "the images do not match their digest" in lines[0]
    assert lines[0].endswith(": making it again")
    assert (root / "meta.json").read_bytes() == meta and data.images_digest(root) == json.loads(meta)["images_sha256"]
    assert layout.packed(root, layout.csv_fingerprint(root)) is not None

    # An altered CSV invalidates the pack, then fails the check: generated again too.
    (root / "forget.csv").write_text((root / "forget.csv").read_text() + "1-1,1,30,3\n")
    assert data.ensure_data(P, copy) == root
    assert "forget.csv does not match" in capfd.readouterr().err
    assert paths.file_sha256(root / "forget.csv") == json.loads(meta)["csv_sha256"]["forget"]
    assert sorted(p.name for p in copy.iterdir() if p.name.startswith(".data")) == [f".{root.name}.lock"]
