"""The data layer: the synthetic generator on disk (Kaggle layout), the loader, the packed cache,
and what the model and the submissions' loaders see. Real files in tmp_path, QUICK protocol."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import data, keys
from harness.data import layout, synthetic
from harness.protocol import QUICK

# The generator and the layout are tested on the public seeds' data set, the one the repository
# pins down; under secret seeds (the default) the same code renders other faces (test_keys_...).
P = QUICK.replace(secret_seeds=False)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return data.ensure_data(P, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def splits(root) -> dict[str, data.Split]:
    return {name: data.read_split(root, name) for name in data.SPLITS}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- generation -------------------------------------------------------------------------------

def test_layout_and_meta(root):
    assert root.name == f"data-{P.data_hash()}"
    meta = json.loads((root / "meta.json").read_text())
    assert meta["generator_version"] == data.GENERATOR_VERSION
    assert meta["data_hash"] == P.data_hash()
    for name in data.SPLITS:
        rows = _rows(root / f"{name}.csv")
        assert list(rows[0]) == list(data.CSV_COLUMNS)
        assert meta["counts"][name] == len(rows)
        for row in rows[:5]:
            person, n = row["image_id"].split("-")
            assert person == row["person_id"]
            with Image.open(root / "images" / person / f"{n}.png") as img:
                assert img.mode == "RGB" and img.size == (P.image_size, P.image_size)
    # No temporary or half-written siblings are left behind; only the (empty) generation lock.
    assert sorted(p.name for p in root.parent.iterdir()) == sorted([root.name, f".{root.name}.lock"])
    assert set(meta["csv_sha256"]) == set(data.SPLITS) and meta["images_sha256"] == data.images_digest(root)


def test_generation_is_deterministic(root, splits, tmp_path):
    other = data.generate(P, tmp_path / "again")
    for name in data.SPLITS:
        assert (root / f"{name}.csv").read_bytes() == (other / f"{name}.csv").read_bytes()
        again = data.read_split(other, name)
        assert torch.equal(again.images, splits[name].images)
    assert json.loads((root / "meta.json").read_text()) == json.loads((other / "meta.json").read_text())


def test_keys_make_their_own_faces_the_same_every_time(splits, tmp_path):
    """Under secret seeds the images and the split derive from the cache's key: one key, one data
    set, bit for bit; another key, other faces; no key, no data set (never a public one by mistake)."""
    secret = QUICK
    a = data.generate(secret, tmp_path / "a", key=bytes(32))
    b = data.generate(secret, tmp_path / "b", key=bytes(32))
    c = data.generate(secret, tmp_path / "c", key=bytes([1] * 32))
    for name in data.SPLITS:
        assert (a / f"{name}.csv").read_bytes() == (b / f"{name}.csv").read_bytes()
    assert data.images_digest(a) == data.images_digest(b) != data.images_digest(c)
    assert not torch.equal(data.read_split(a, "retain").images[:10], splits["retain"].images[:10])
    meta = json.loads((a / "meta.json").read_text())
    assert meta["secret_commitment"] == keys.commitment(keys.data_key(secret, bytes(32)))
    with pytest.raises(ValueError, match="has secret seeds, and no key to make its data set with"):
        data.generate(secret, tmp_path / "d")


def test_split_sizes_follow_the_fractions(splits):
    n = sum(len(s) for s in splits.values())
    n_train = len(splits["retain"]) + len(splits["forget"])
    f_train, f_val, f_test = P.split_fractions
    assert abs(n_train - f_train * n) <= 1
    assert abs(len(splits["validation"]) - f_val * n) <= 1
    assert abs(len(splits["test"]) - f_test * n) <= 1
    ids = [i for s in splits.values() for i in s.image_id]
    assert len(ids) == len(set(ids)) == n


def test_forget_is_all_training_images_of_the_lowest_identities(splits):
    k = P.n_forget_identities
    forget, retain = splits["forget"], splits["retain"]
    assert len(forget) > 0
    assert (forget.person_id < k).all()
    assert not (retain.person_id < k).any()
    assert not set(forget.person_id.tolist()) & set(retain.person_id.tolist())
    # About 2% of the training images for the default profile's sizes; a small share here too.
    assert len(forget) / (len(forget) + len(retain)) < 0.2
    # The split is by image: forget identities may also appear in validation/test.
    held_out = torch.cat([splits["validation"].person_id, splits["test"].person_id])
    assert (held_out < k).any()


def test_forget_is_biased_young(splits):
    young_forget = (splits["forget"].age_group <= 1).double().mean().item()
    young_retain = (splits["retain"].age_group <= 1).double().mean().item()
    assert young_forget > 0.5
    assert young_forget > 2 * young_retain


def test_age_groups_are_equal_width_bins_and_imbalanced(root, splits):
    meta = json.loads((root / "meta.json").read_text())
    ages = torch.cat([s.age for s in splits.values()])
    groups = torch.cat([s.age_group for s in splits.values()])
    edges = np.linspace(ages.min().item(), ages.max().item() + 1, P.n_classes + 1)
    assert np.allclose(meta["age_group_edges"], edges)
    expected = np.clip(np.searchsorted(edges, ages.numpy(), side="right") - 1, 0, P.n_classes - 1)
    assert np.array_equal(groups.numpy(), expected)
    counts = torch.bincount(groups, minlength=P.n_classes)
    assert len(counts) == P.n_classes == 10
    assert (counts > 0).all()
    assert counts.max() >= 3 * counts.min()
    assert meta["class_counts_all"] == counts.tolist()
    # One age per person.
    persons = torch.cat([s.person_id for s in splits.values()])
    for pid in persons.unique()[:20]:
        assert ages[persons == pid].unique().numel() == 1


# ---- reading ----------------------------------------------------------------------------------

def test_read_split_round_trips_through_png(splits):
    ids = synthetic._sample_identities(P)
    im = synthetic._sample_images(P, ids)
    rendered = synthetic.render(P, ids, im)
    index = {f"{p}-{n}": i for i, (p, n) in enumerate(zip(im["person"], im["number"]))}
    for name, split in splits.items():
        rows = [index[i] for i in split.image_id]
        assert split.images.dtype == torch.uint8
        assert split.images.shape == (len(split), 3, P.image_size, P.image_size)
        assert torch.equal(split.images, torch.from_numpy(rendered[rows]).permute(0, 3, 1, 2))
        assert torch.equal(split.age, torch.from_numpy(ids["age"][im["person"][rows]]))
        assert split.age_group.dtype == split.age.dtype == split.person_id.dtype == torch.int64


def test_load_splits_builds_and_uses_the_packed_cache(root, splits, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(data.PACKED_CACHE, data.PACKED_RECORD))
    loaded = data.load_splits(copy)
    assert (copy / data.PACKED_CACHE).is_file() and (copy / data.PACKED_RECORD).is_file()
    assert set(loaded) == set(data.SPLITS)
    for name in data.SPLITS:
        a, b = loaded[name], splits[name]
        assert torch.equal(a.images, b.images) and torch.equal(a.age_group, b.age_group)
        assert torch.equal(a.age, b.age) and torch.equal(a.person_id, b.person_id)
        assert a.image_id == b.image_id

    def no_png_decoding(*args, **kwargs):
        raise AssertionError("read_split called although the cache is valid")

    monkeypatch.setattr(data, "read_split", no_png_decoding)
    cached = data.load_splits(copy)
    assert all(torch.equal(cached[n].images, splits[n].images) for n in data.SPLITS)
    monkeypatch.undo()

    # A changed CSV invalidates the cache: it is rebuilt to match (a folder whose meta.json records
    # no digests, as real data has none; with them, see test_cache_integrity).
    (copy / "meta.json").unlink()
    path = copy / "validation.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    rebuilt = data.load_splits(copy)
    assert len(rebuilt["validation"]) == len(splits["validation"]) - 1
    assert data.load_splits(copy)["validation"].image_id == rebuilt["validation"].image_id


# ---- what the model and the loaders see --------------------------------------------------------

def test_class_weights():
    w = data.class_weights(torch.tensor([0, 0, 1, 3, 3, 3, 3]), 5)
    assert w.dtype == torch.float32 and w.shape == (5,)
    assert torch.allclose(w, torch.tensor([1 / 2, 1, 0, 1 / 4, 0]))


def test_to_model_input_scales():
    x = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    unit, raw = data.to_model_input(x, "unit"), data.to_model_input(x, "raw")
    assert unit.dtype == raw.dtype == torch.float32
    assert torch.allclose(unit, torch.tensor([[0.0, 0.2, 1.0]]))
    assert torch.equal(raw, torch.tensor([[0.0, 51.0, 255.0]]))
    with pytest.raises(ValueError, match="pixel_scale"):
        data.to_model_input(x, "imagenet")


def test_dataset_with_a_plain_dataloader(splits):
    split = splits["retain"]
    ds = data.FaceAgeDataset(split, "raw")
    assert len(ds) == len(split)
    item = ds[3]
    assert set(item) == {"image", "age_group", "age", "person_id", "image_id"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, P.image_size, P.image_size)
    assert item["image"].max() > 1  # raw: 0..255
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)))
    assert batch["image"].shape == (8, 3, P.image_size, P.image_size)
    for key in ("age_group", "age", "person_id"):
        assert batch[key].dtype == torch.int64 and batch[key].shape == (8,)
    assert len(batch["image_id"]) == 8 and isinstance(batch["image_id"][0], str)
    with pytest.raises(ValueError):
        data.FaceAgeDataset(split, "bogus")


def test_make_loader_seeded_order_is_reproducible(splits):
    def order(seed):
        loader = data.make_loader(splits["retain"], "unit", 64, shuffle=True, seed=seed)
        return [i for batch in loader for i in batch["image_id"]]

    assert order(7) == order(7)
    assert order(7) != order(8)
    assert sorted(order(7)) == sorted(splits["retain"].image_id)
    plain = data.make_loader(splits["forget"], "unit", 16, shuffle=False)
    assert [i for b in plain for i in b["image_id"]] == splits["forget"].image_id
    assert plain.dataset.split is splits["forget"]


# ---- clear errors -------------------------------------------------------------------------------

def _tiny_layout(folder: Path, header=data.CSV_COLUMNS, images=((0, 0), (0, 1), (1, 0))) -> Path:
    rows = [[f"{p}-{n}", p, 30 + p, 3] for p, n in images]
    with open(folder / "retain.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    for p, n in images:
        (folder / "images" / str(p)).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (10 * p, 20 * n, 30)).save(folder / "images" / str(p) / f"{n}.png")
    return folder


def test_read_split_of_a_hand_made_folder(tmp_path):
    split = data.read_split(_tiny_layout(tmp_path), "retain")
    assert len(split) == 3 and split.images.shape == (3, 3, 8, 8)
    assert split.image_id == ["0-0", "0-1", "1-0"] and split.person_id.tolist() == [0, 0, 1]
    assert split.images[2, 0, 0, 0].item() == 10


def test_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="forget.csv"):
        data.read_split(_tiny_layout(tmp_path), "forget")
    with pytest.raises(FileNotFoundError, match="forget.csv"):
        data.load_splits(tmp_path)


def test_missing_image(tmp_path):
    _tiny_layout(tmp_path)
    (tmp_path / "images" / "0" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"images/0/1\.png"):
        data.read_split(tmp_path, "retain")


def test_wrong_columns(tmp_path):
    _tiny_layout(tmp_path, header=("image_id", "person_id", "age", "label"))
    with pytest.raises(ValueError, match=r"retain\.csv.*age_group"):
        data.read_split(tmp_path, "retain")


def test_wrong_mode_and_inconsistent_size(tmp_path):
    _tiny_layout(tmp_path)
    Image.new("L", (8, 8), 5).save(tmp_path / "images" / "0" / "1.png")
    with pytest.raises(ValueError, match=r"images/0/1\.png.*mode"):
        data.read_split(tmp_path, "retain")
    Image.new("RGB", (9, 9)).save(tmp_path / "images" / "0" / "1.png")
    with pytest.raises(ValueError, match=r"images/0/1\.png.*size"):
        data.read_split(tmp_path, "retain")


# ---- atomic generation, interrupted runs, races -------------------------------------------------

def test_interrupted_generation_does_not_count_as_complete(root, tmp_path):
    cache = tmp_path / "cache"
    target = cache / f"data-{P.data_hash()}"
    # A temp folder left by a killed run, and a partial target without meta.json.
    leftover = cache / f".{target.name}.tmp-999-deadbeef"
    (leftover / "images" / "0").mkdir(parents=True)
    shutil.copy(root / "retain.csv", leftover / "retain.csv")
    (target / "images" / "0").mkdir(parents=True)
    shutil.copy(root / "retain.csv", target / "retain.csv")
    assert data.ensure_data(P, cache) == target
    assert (target / "meta.json").is_file()
    for name in data.SPLITS:
        assert (target / f"{name}.csv").read_bytes() == (root / f"{name}.csv").read_bytes()
    assert not [p for p in cache.iterdir() if ".old-" in p.name]


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def crash_after_a_few(image):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return b""

    monkeypatch.setattr(layout, "_png_bytes", crash_after_a_few)
    with pytest.raises(KeyboardInterrupt):
        data.ensure_data(P, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f".data-{P.data_hash()}.lock"]


def test_a_data_set_of_another_generator_version_is_regenerated(root, tmp_path):
    target = tmp_path / f"data-{P.data_hash()}"
    shutil.copytree(root, target)
    meta = json.loads((target / "meta.json").read_text())
    (target / "meta.json").write_text(json.dumps({**meta, "generator_version": "older"}))
    data.ensure_data(P, tmp_path)
    assert json.loads((target / "meta.json").read_text())["generator_version"] == data.GENERATOR_VERSION


def test_complete_data_is_reused_and_a_lost_race_keeps_the_winner(root, tmp_path, monkeypatch):
    target = tmp_path / f"data-{P.data_hash()}"
    shutil.copytree(root, target)
    marker = target / "winner"
    marker.write_text("")

    def no_generation(*args, **kwargs):
        raise AssertionError("generated although the data set is complete")

    monkeypatch.setattr(layout, "write", no_generation)
    assert data.ensure_data(P, tmp_path) == target
    monkeypatch.undo()

    # Another process finished first: this one's os.replace hits a non-empty folder and must end
    # with the winner's copy in place and its own copy discarded.
    assert data.generate(P, target) == target
    assert marker.exists() and (target / "meta.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
