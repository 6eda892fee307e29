"""harness.kaggle.zip_tool: the `zip` competition notebooks call, checked against Info-ZIP's behaviour."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_ZIP = "/usr/bin/zip"


def run_zip(cwd: Path, *args: str, real: bool = False) -> subprocess.CompletedProcess:
    command = [REAL_ZIP] if real else [sys.executable, "-m", "harness.kaggle.zip_tool"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """ckpt/ with two compressible 'checkpoints' and an empty file, and sub/ inside it."""
    (tmp_path / "ckpt" / "sub").mkdir(parents=True)
    (tmp_path / "ckpt" / "unlearned_checkpoint_0.pth").write_bytes(b"weights 0 " * 1000)
    (tmp_path / "ckpt" / "unlearned_checkpoint_1.pth").write_bytes(b"weights 1 " * 1000)
    (tmp_path / "ckpt" / "sub" / "empty.txt").write_bytes(b"")
    return tmp_path


def test_absolute_glob_as_the_shell_expands_it(tree):
    files = sorted(str(p) for p in (tree / "ckpt").glob("*.pth"))
    result = run_zip(tree, "submission.zip", *files)
    assert result.returncode == 0, result.stderr
    prefix = str(tree / "ckpt").lstrip("/")
    assert entries(tree / "submission.zip") == {
        f"{prefix}/unlearned_checkpoint_0.pth": b"weights 0 " * 1000,
        f"{prefix}/unlearned_checkpoint_1.pth": b"weights 1 " * 1000,
    }
    assert not any(name.startswith("/") for name in entries(tree / "submission.zip"))
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"  adding: {prefix}/unlearned_checkpoint_0.pth (deflated ")
    assert lines[0].endswith("%)") and len(lines) == 2
    with zipfile.ZipFile(tree / "submission.zip") as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    assert sorted(p.name for p in tree.iterdir()) == ["ckpt", "submission.zip"]  # no temporary file left


def test_dot_slash_removed_and_zip_appended(tree):
    result = run_zip(tree, "-q", "out", "./ckpt/unlearned_checkpoint_0.pth")
    assert result.returncode == 0 and result.stdout == ""
    assert list(entries(tree / "out.zip")) == ["ckpt/unlearned_checkpoint_0.pth"]
    assert run_zip(tree, "-q", "out.tar", "ckpt/unlearned_checkpoint_0.pth").returncode == 0
    assert (tree / "out.tar").is_file()  # an extension is kept as given


def test_recurse_with_and_without_directory_entries(tree):
    assert run_zip(tree, "-qr", "all.zip", "ckpt").returncode == 0
    assert list(entries(tree / "all.zip")) == ["ckpt/", "ckpt/sub/", "ckpt/sub/empty.txt",
                                               "ckpt/unlearned_checkpoint_0.pth", "ckpt/unlearned_checkpoint_1.pth"]
    assert run_zip(tree, "-q", "-r", "-D", "files.zip", "ckpt/").returncode == 0
    assert list(entries(tree / "files.zip")) == ["ckpt/sub/empty.txt", "ckpt/unlearned_checkpoint_0.pth",
                                                 "ckpt/unlearned_checkpoint_1.pth"]
    assert run_zip(tree, "-q", "dir.zip", "ckpt").returncode == 0  # without -r: the folder entry alone
    assert list(entries(tree / "dir.zip")) == ["ckpt/"]


def test_junk_paths(tree):
    result = run_zip(tree, "-rj", "flat.zip", str(tree / "ckpt"))
    assert result.returncode == 0, result.stderr
    assert entries(tree / "flat.zip") == {"empty.txt": b"", "unlearned_checkpoint_0.pth": b"weights 0 " * 1000,
                                          "unlearned_checkpoint_1.pth": b"weights 1 " * 1000}
    assert "  adding: empty.txt (stored 0%)" in result.stdout.splitlines()


def test_junk_paths_refuses_two_files_of_one_name(tree):
    (tree / "other").mkdir()
    shutil.copy(tree / "ckpt" / "unlearned_checkpoint_0.pth", tree / "other" / "unlearned_checkpoint_0.pth")
    result = run_zip(tree, "-j", "flat.zip", "ckpt/unlearned_checkpoint_0.pth", "other/unlearned_checkpoint_0.pth")
    assert result.returncode == 16 and "cannot repeat names" in result.stderr
    assert not (tree / "flat.zip").exists()


def test_store_and_levels(tree):
    assert run_zip(tree, "-0", "stored.zip", "ckpt/unlearned_checkpoint_0.pth").returncode == 0
    with zipfile.ZipFile(tree / "stored.zip") as archive:
        info = archive.getinfo("ckpt/unlearned_checkpoint_0.pth")
        assert info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size == 10000
    result = run_zip(tree, "-9X", "best.zip", "ckpt/unlearned_checkpoint_0.pth")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "  adding: ckpt/unlearned_checkpoint_0.pth (deflated 100%)\n"  # as zip rounds 99.5%
    assert entries(tree / "best.zip") == {"ckpt/unlearned_checkpoint_0.pth": b"weights 0 " * 1000}


def test_update_replaces_same_named_entries_in_place(tree):
    assert run_zip(tree, "-q", "sub.zip", "ckpt/unlearned_checkpoint_0.pth", "ckpt/unlearned_checkpoint_1.pth").returncode == 0
    (tree / "ckpt" / "unlearned_checkpoint_0.pth").write_bytes(b"new weights")
    (tree / "extra.txt").write_bytes(b"extra")
    result = run_zip(tree, "sub.zip", "extra.txt", "ckpt/unlearned_checkpoint_0.pth")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("updating: ckpt/unlearned_checkpoint_0.pth (")
    assert list(entries(tree / "sub.zip").items()) == [
        ("ckpt/unlearned_checkpoint_0.pth", b"new weights"),
        ("ckpt/unlearned_checkpoint_1.pth", b"weights 1 " * 1000),
        ("extra.txt", b"extra"),
    ]


def test_archive_is_not_added_to_itself(tree):
    assert run_zip(tree, "-qr", "self.zip", ".").returncode == 0
    assert "self.zip" not in entries(tree / "self.zip")
    assert run_zip(tree, "-qr", "self.zip", ".").returncode == 0  # again, with the archive present
    assert "self.zip" not in entries(tree / "self.zip")


def test_name_not_matched_is_a_warning(tree):
    result = run_zip(tree, "some.zip", "missing.pth", "ckpt/unlearned_checkpoint_1.pth")
    assert result.returncode == 0
    assert "zip warning: name not matched: missing.pth" in result.stderr
    assert list(entries(tree / "some.zip")) == ["ckpt/unlearned_checkpoint_1.pth"]


def test_nothing_to_do(tree):
    result = run_zip(tree, "submission.zip", "/kaggle-nonexistent/tmp/*.pth")
    assert result.returncode == 12
    assert "zip warning: name not matched: /kaggle-nonexistent/tmp/*.pth" in result.stderr
    assert "zip error: Nothing to do! (submission.zip)" in result.stderr
    assert not (tree / "submission.zip").exists()
    result = run_zip(tree, "submission")
    assert result.returncode == 12 and result.stderr.strip() == "zip error: Nothing to do! (submission.zip)"


@pytest.mark.parametrize("option, named", [("-Q", "'Q'"), ("-rZ", "'Z'"), ("--recurse-paths", "'recurse-paths'")])
def test_unknown_option(tree, option, named):
    result = run_zip(tree, option, "out.zip", "ckpt")
    assert result.returncode == 16
    assert len(result.stderr.splitlines()) == 1 and named in result.stderr
    assert not (tree / "out.zip").exists()


def test_no_archive_name(tree):
    assert run_zip(tree).returncode == 16


@pytest.mark.parametrize("args", [
    ["a.zip", "{abs}/ckpt/unlearned_checkpoint_0.pth", "{abs}/ckpt/unlearned_checkpoint_1.pth"],
    ["-r", "b.zip", "./ckpt"],
    ["-r", "c", "{abs}/ckpt/sub/", "missing"],
    ["-rD", "d.zip", "ckpt"],
    ["-rj", "e.zip", "ckpt"],
    ["f.zip", "ckpt", "ckpt/unlearned_checkpoint_0.pth", "ckpt/unlearned_checkpoint_0.pth"],
])
def test_same_entry_names_as_info_zip(tree, args):
    if not Path(REAL_ZIP).exists():
        pytest.skip(f"{REAL_ZIP} is not installed")
    ours, real = tree / "ours", tree / "real"
    for folder in (ours, real):
        shutil.copytree(tree / "ckpt", folder / "ckpt")
    for folder, is_real in ((ours, False), (real, True)):
        result = run_zip(folder, *[arg.format(abs=folder) for arg in args], real=is_real)
        assert result.returncode == 0, result.stderr
    archive = next(name for name in args if name.endswith(".zip") or name == "c")
    archive += "" if archive.endswith(".zip") else ".zip"
    # zip recurses in the file system's order, zip_tool in sorted order: the same names
    names = sorted(name.replace(str(ours).lstrip("/"), "ROOT") for name in entries(ours / archive))
    real_names = sorted(name.replace(str(real).lstrip("/"), "ROOT") for name in entries(real / archive))
    assert names == real_names
