"""Bad real data: each case is a tiny real-format fixture written here and broken the way users'
files break. Every one must end in one line naming the file (and row) and the fix, exit code 2,
and nothing written to the cache."""
from __future__ import annotations

import os
import pickle
import shutil

import pytest

import realdata
from conftest import run_cli
from test_score import harness


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    return {"manifest": realdata.manifest(root / "manifest", n_people=20, per=3),
            "kaggle": realdata.kaggle_folder(root / "kaggle", n_people=20, per=3),
            "celeba": realdata.celeba(root / "celeba", n_people=20, per=2),
            "cifar10": realdata.cifar10(root / "cifar", per_batch=5)}


def fails(tmp_path, source: str, *extra: str, command: str = "show") -> str:
    """The CLI's exit code and stderr, in this process (`data show` reads and checks a data set without
    training, and each case would otherwise pay a fresh interpreter); `score` as a subprocess."""
    cache = tmp_path / "cache"
    args = ("data", "show") if command == "show" else ("score", "submissions/finetune.py", "--k", "2")
    argv = [*args, "--profile", "quick", "--data", source, *extra]
    run = run_cli if command == "show" else harness
    out = run(*argv, env={"HARNESS_CACHE_DIR": str(cache)})
    code, stderr = out.returncode, out.stderr
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert not cache.exists() or not any(cache.iterdir()), sorted(p.name for p in cache.iterdir())
    return lines[0]


def copy_manifest(good, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(good["manifest"].parent, folder)
    return folder / "manifest.csv"


def edit(path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))


def test_a_manifest_missing_a_column(good, tmp_path):
    m = copy_manifest(good, tmp_path)
    edit(m, "image_path,person_id,age", "path,person_id,age")
    line = fails(tmp_path, str(m))
    assert f"{m}: missing column(s) image_path; a manifest has the columns image_path" in line


def test_a_manifest_with_an_extra_column(good, tmp_path):
    m = copy_manifest(good, tmp_path)
    rows = m.read_text().splitlines()
    m.write_text("\n".join([rows[0] + ",gender"] + [r + ",f" for r in rows[1:]]) + "\n")
    assert f"{m}: unknown column(s) gender" in fails(tmp_path, str(m))


def test_a_missing_image(good, tmp_path):
    m = copy_manifest(good, tmp_path)
    (m.parent / "photos" / "person_002" / "img1.jpg").unlink()
    line = fails(tmp_path, str(m), command="score")
    assert "person_002/img1.jpg: image file not found (manifest.csv row 9)" in line


def test_an_unreadable_image(good, tmp_path):
    m = copy_manifest(good, tmp_path)
    (m.parent / "photos" / "person_001" / "img0.jpg").write_bytes(b"not a jpeg at all")
    line = fails(tmp_path, str(m))
    assert "person_001/img0.jpg: not a readable image (manifest.csv row 5" in line


def test_an_age_that_is_not_a_number(good, tmp_path):
    m = copy_manifest(good, tmp_path)
    rows = m.read_text().splitlines()
    rows[3] = rows[3].rsplit(",", 1)[0] + ",thirty"
    m.write_text("\n".join(rows) + "\n")
    assert f"{m}:4: age 'thirty' is not a whole number >= 0" in fails(tmp_path, str(m))


def test_a_label_out_of_range(good, tmp_path):
    m = copy_manifest(good, tmp_path)
    rows = m.read_text().splitlines()
    body = [r.rsplit(",", 1)[0] + f",{i % 10}" for i, r in enumerate(rows[1:])]
    body[6] = body[6].rsplit(",", 1)[0] + ",12"
    m.write_text("\n".join(["image_path,person_id,label"] + body) + "\n")
    assert f"{m}:8: label 12 is out of range 0..9 (the profile has 10 classes)" in fails(tmp_path, str(m))


def test_too_few_identities_for_the_forget_rule(good, tmp_path):
    m = copy_manifest(good, tmp_path)
    rows = m.read_text().splitlines()
    m.write_text("\n".join(rows[:1 + 3 * 12]) + "\n")  # 12 people; the rule forgets 15
    line = fails(tmp_path, str(m))
    assert "has 12 identities; the identity scenario forgets the 15 lowest and needs more people" in line
    assert "--scenario random" in line


def test_an_empty_split(good, tmp_path):
    folder = tmp_path / "k"
    shutil.copytree(good["kaggle"], folder)
    (folder / "forget.csv").write_text("image_id,person_id,age,age_group\n")
    assert f"{folder / 'forget.csv'}: no rows: every split needs at least one image" in fails(tmp_path, str(folder))


def test_a_kaggle_csv_with_an_extra_column_or_a_bad_age_group(good, tmp_path):
    folder = tmp_path / "k"
    shutil.copytree(good["kaggle"], folder)
    retain = folder / "retain.csv"
    text = retain.read_text()
    edit(retain, "image_id,person_id,age,age_group", "image_id,person_id,age,age_group,extra")
    assert f"{retain}: unknown column(s) extra" in fails(tmp_path, str(folder))
    rows = text.splitlines()
    rows[2] = ",".join(rows[2].split(",")[:3] + ["10"])
    retain.write_text("\n".join(rows) + "\n")
    assert f"{retain}:3: age_group 10 is out of range 0..9" in fails(tmp_path, str(folder))


def test_a_folder_that_is_no_known_layout(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    line = fails(tmp_path, str(folder), command="score")
    assert f"--data {folder}: {folder} is not a known layout: give a Kaggle-layout folder" in line


def test_a_missing_folder(tmp_path):
    line = fails(tmp_path, str(tmp_path / "nowhere"), command="score")
    assert f"{tmp_path / 'nowhere'} does not exist" in line


def test_celeba_with_an_unknown_attribute(good, tmp_path):
    line = fails(tmp_path, str(good["celeba"]), "--label", "Old")
    assert "list_attr_celeba.txt: no attribute Old: --label takes one of 5_o_Clock_Shadow" in line


def test_a_doctored_cifar_batch_cannot_run_code(good, tmp_path):
    folder = tmp_path / "c"
    shutil.copytree(good["cifar10"], folder)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with open(folder / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": [0]}, f)
    line = fails(tmp_path, str(folder), "--scenario", "random")
    assert "data_batch_2: not a CIFAR-10 batch" in line and "refusing to load posix.system" in line
    assert not marker.exists()
