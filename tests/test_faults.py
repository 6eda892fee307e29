"""Faults the cache and the results folder must survive: two builds of one pool at once, kill -9
in the middle of a build, a full disk, a read-only results folder; and fuzzing of what crosses a
trust boundary (result files, the data set's CSVs, checkpoints). Real processes and real files;
the disk faults use a mount namespace (root, as on the development machine and in CI)."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings, strategies as st
from PIL import Image

from harness import data, keys, leaderboard, models, paths, protocol, reference_pool

REPO = Path(__file__).resolve().parents[1]
P = protocol.QUICK
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Logs every model a process trains, in the harness process and in its (spawned) workers alike:
# the evidence that no model is trained twice.
TRAINING_LOG = """
import os
from harness import reference_pool

_train_one = reference_pool._train_one

def _logged(protocol_dict, data_root, root, j, *args):
    with open(os.environ["TEST_TRAINING_LOG"], "a") as f:
        f.write(f"{j} {os.getpid()}\\n")
    return _train_one(protocol_dict, data_root, root, j, *args)

_logged.__qualname__ = _train_one.__qualname__
reference_pool._train_one = _logged
"""


def _env(tmp_path: Path, cache: Path, log: Path, **extra) -> dict:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(TRAINING_LOG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    pythonpath = os.pathsep.join(filter(None, [str(hook), str(REPO), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": pythonpath, "HARNESS_CACHE_DIR": str(cache), "TEST_TRAINING_LOG": str(log),
            **extra}


def _trained(log: Path) -> list[str]:
    """Models trained, by name ("None" = the original), in order."""
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


REFERENCE = [sys.executable, "-m", "harness", "reference", "--profile", "quick", "--quiet"]


def _inodes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_ino for p in root.rglob("*.pt")}


# ---- concurrency, kill -9 ---------------------------------------------------------------------

@pytest.mark.slow
def test_two_reference_builds_at_once_train_each_model_once(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "trained.log"
    env = _env(tmp_path, cache, log, HARNESS_WORKERS="1")
    procs = [subprocess.Popen([*REFERENCE, "--k", "2"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(_trained(log)) == ["0", "1", "None"]  # each model once, by one of the two
    assert outs[0][0] == outs[1][0]  # both report the same models
    pool = reference_pool.load(P, 2, cache)
    assert paths.read_json(pool.dir / "manifest.json")["last_build"]["models_trained"] == 3
    for err in (e for _, e in outs if e):
        assert all(line.startswith("waiting for another harness process") for line in err.splitlines()), err
    # The lock files stay out of the way of anything listing the folders; the two processes made
    # one key between them (its file is created exclusively), which both pools' records commit to.
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [f"data-{P.data_hash()}", f".data-{P.data_hash()}.lock", pool.dir.name, keys.KEY_FILE])
    assert {r["seed_commitment"] for r in [pool.original, *pool.retrains]} == {pool.seed_commitment}
    assert {p.name for p in pool.dir.iterdir()} == {"manifest.json", "original.json", "original.pt", "retrain",
                                                     reference_pool.LOCK_FILE}


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_build_then_resume(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "first.log"
    root = reference_pool.pool_dir(P, cache)
    proc = subprocess.Popen([*REFERENCE, "--k", "3"], env=_env(tmp_path, cache, log, HARNESS_WORKERS="1"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (root / "original.json").exists():  # models train one at a time: kill during the next
        assert proc.poll() is None and time.monotonic() < deadline, "the build ended before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the harness process and its workers
    proc.wait()
    with contextlib.suppress(ProcessLookupError):  # until the whole group is gone
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)
            time.sleep(0.05)

    finished = {j for j in ["None", "0", "1", "2"]
                if (root / ("original.json" if j == "None" else f"retrain/{int(j):04d}.json")).exists()}
    assert "None" in finished and len(finished) < 4, finished
    before = _inodes(root)
    resume = tmp_path / "resume.log"
    done = subprocess.run([*REFERENCE, "--k", "3"], env=_env(tmp_path, cache, resume, HARNESS_WORKERS="2"),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(_trained(resume)) == sorted({"None", "0", "1", "2"} - finished)  # only the missing ones
    assert done.stderr == ""  # nothing was corrupt
    after = _inodes(root)
    finished_files = {"original.pt" if j == "None" else f"retrain/{int(j):04d}.pt" for j in finished}
    assert all(after[f] == before[f] for f in finished_files)
    assert not list(root.rglob("*.tmp")) and not [p for p in cache.iterdir() if ".tmp-" in p.name]
    reference_pool.load(P, 3, cache)  # every file matches its record


# ---- a full disk, a read-only results folder ------------------------------------------------

def _in_namespace(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (mounts made there vanish with it)."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("needs root and mount namespaces (unshare --mount)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(["unshare", "--mount", "sh", "-c", script], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_a_full_disk_leaves_no_partial_file_and_a_clear_error(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    write = textwrap.dedent(f"""
        import json, os
        from harness import paths
        target = "{disk}/results/big.json"
        try:
            paths.atomic_write_bytes(target, b"x" * 3_000_000)
        except OSError as e:
            print(json.dumps({{"errno": e.errno, "filename": e.filename, "left": os.listdir("{disk}/results")}}))
    """)
    done = _in_namespace(f"""
        mount -t tmpfs -o size=1m tmpfs {disk} || exit 99
        {sys.executable} -c '{write}'
        HARNESS_CACHE_DIR={disk}/cache {' '.join(REFERENCE)} --k 2
        echo "rc=$?"
        cd {disk}/cache && find . -mindepth 1
    """)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert json.loads(lines[0]) == {"errno": errno.ENOSPC, "filename": f"{disk}/results/big.json", "left": []}
    # The data set did not fit: one line naming the file and the fix, and nothing half-made left.
    assert lines[1] == "rc=2"
    err = done.stderr.strip().splitlines()
    assert err == [f"error: No space left on device ({disk}/cache/data-{P.data_hash()}): free some space, then run "
                   "the same command again (finished work is kept)"]
    assert sorted(lines[2:]) == sorted([f"./.data-{P.data_hash()}.lock", f"./{keys.KEY_FILE}"])  # the key: 32 bytes


def _result(name: str, score: float) -> dict:
    return {"id": f"quick-{name}", "created": "2026-11-27T10:00:00Z", "profile": "quick",
            "submission": f"submissions/{name}.py", "score": score, "k": 2}


def test_a_read_only_results_folder_names_the_file_and_keeps_the_leaderboard(tmp_path):
    results = tmp_path / "results"
    for r in (_result("finetune", 0.03), _result("noop", 0.0)):
        paths.atomic_write_json(results / f"{r['id']}.json", r)
        leaderboard.record(r, results)
    db = (results / leaderboard.DB_NAME).read_bytes()
    attempt = textwrap.dedent(f"""
        import json
        from harness import leaderboard, paths
        new = {{"id": "quick-oracle", "created": "2026-11-27T11:00:00Z", "profile": "quick",
               "submission": "submissions/oracle.py", "score": 0.1}}
        out = {{}}
        try:
            paths.atomic_write_json("{results}/quick-oracle.json", new)
        except OSError as e:
            out["write"] = [e.errno, e.filename]
        try:
            leaderboard.record(new, "{results}")
        except OSError as e:
            out["record"] = e.errno
        out["rows"] = len(leaderboard.table("{results}", profile="quick"))
        print(json.dumps(out))
    """)
    done = _in_namespace(f"""
        mount --bind {results} {results} && mount -o remount,ro,bind {results} || exit 99
        {sys.executable} -c '{attempt}'
        HARNESS_RESULTS_DIR={results} {sys.executable} -m harness leaderboard --rebuild --profile quick
        echo "rc=$?"
    """)
    assert done.returncode == 0, done.stderr
    out, rc = done.stdout.splitlines()[0], done.stdout.splitlines()[-1]
    assert json.loads(out) == {"write": [errno.EROFS, f"{results}/quick-oracle.json"], "record": errno.EROFS,
                               "rows": 2}
    assert rc == "rc=2"
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: Read-only file system ({results / leaderboard.LOCK_NAME}): make it writable or point "
        "HARNESS_RESULTS_DIR / HARNESS_CACHE_DIR elsewhere, then run the same command again (finished work is kept)")
    assert (results / leaderboard.DB_NAME).read_bytes() == db
    assert sorted(p.name for p in results.iterdir() if not p.name.startswith(".")) == [
        leaderboard.DB_NAME, "quick-finetune.json", "quick-noop.json"]
    assert list(leaderboard.table(results, profile="quick")["submission"]) == [
        "submissions/finetune.py", "submissions/noop.py"]


# ---- fuzzing what crosses a trust boundary ----------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
                    max_leaves=12)
SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
NEAR_RESULT = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=12) | SCALAR,
     "created": st.sampled_from(["2026-11-26T17:35:01Z", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
                                 "2026-11-26", "yesterday", "1900-01-01T00:00:00Z"]) | SCALAR,
     "profile": st.sampled_from(["quick", "default"]) | SCALAR,
     "submission": st.just("submissions/x.py") | SCALAR,
     "score": st.floats() | st.integers() | SCALAR},
    optional={"k": st.integers() | SCALAR, "score_ci95": JSON, "reference": JSON, "seconds": JSON, "budget": JSON,
              "forget_quality": SCALAR, "submission_sha256": SCALAR, "protocol_version": JSON})
RESULT_FILE = (st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode())
               | NEAR_RESULT.map(lambda v: json.dumps(v).encode())
               | st.just(b'{"id": "\\ud800", "created": "2026-11-26T17:35:01Z", "profile": "q", "submission": "s", '
                         b'"score": 1}')
               | st.just(b'{"score": 1' + b'0' * 400 + b', "id": "i", "created": "2026-11-26T17:35:01Z", '
                         b'"profile": "q", "submission": "s"}')
               | st.just(b"[" * 100_000 + b"]" * 100_000))


@FUZZ
@given(files=st.lists(RESULT_FILE, max_size=5))
def test_leaderboard_rebuild_skips_bad_result_files_and_keeps_them(files):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for i, blob in enumerate(files):
            (folder / f"{i}.json").write_bytes(blob)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rows = leaderboard.rebuild(folder)
            df = leaderboard.table(folder)
        warnings = err.getvalue().splitlines()
        assert rows + len(warnings) == len(files)
        assert all(w.startswith("warning: leaderboard: skipping ") for w in warnings)
        assert len(df) <= rows
        assert [(folder / f"{i}.json").read_bytes() for i in range(len(files))] == files  # never deleted


def _tiny_data_set(root: Path) -> None:
    for name in data.SPLITS:
        (root / f"{name}.csv").write_text("image_id,person_id,age,age_group\n0-0,0,30,3\n")
    (root / "images" / "0").mkdir(parents=True)
    Image.new("RGB", (4, 4), (9, 9, 9)).save(root / "images" / "0" / "0.png")


CELL = st.text(max_size=12) | st.integers().map(str) | st.sampled_from(["0-0", "../0-0", "0/..-0", "..-0", "-1"])
CSV_TEXT = (st.text() | st.binary().map(lambda b: b.decode("latin-1"))
            | st.lists(st.lists(CELL, max_size=5), max_size=4).map(
                lambda rows: "image_id,person_id,age,age_group\n" + "".join(
                    f"{','.join(row)}\n" for row in rows)))


@FUZZ
@given(text=CSV_TEXT, raw=st.booleans())
@example(text=f"image_id,person_id,age,age_group\n0-0,0,{10**30},3\n", raw=False)  # beyond int64
@example(text=f'image_id,person_id,age,age_group\n"{"x" * 200_000}",0,1,3\n', raw=False)  # beyond csv's field limit
def test_the_data_loader_meets_any_csv_with_a_clear_error(text, raw):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _tiny_data_set(root)
        blob = text.encode("latin-1", "replace") if raw else text.encode("utf-8", "surrogatepass")
        (root / "retain.csv").write_bytes(blob)
        for load in (lambda: data.read_split(root, "retain"), lambda: data.load_splits(root)):
            try:
                load()
            except (ValueError, FileNotFoundError) as e:
                assert str(root) in str(e) and "\n" not in str(e)  # one line naming the file


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    buf = io.BytesIO()
    torch.save(models.build(P, seed=0).state_dict(), buf)
    return buf.getvalue()


@FUZZ
@given(blob=st.binary(max_size=2000), cut=st.integers(min_value=0), flip=st.integers(min_value=0),
       kind=st.sampled_from(["random", "truncated", "flipped"]), honest=st.booleans())
def test_load_state_meets_any_bytes_with_cache_corrupt(checkpoint, blob, cut, flip, kind, honest):
    if kind == "truncated":
        blob = checkpoint[:cut % len(checkpoint)]
    elif kind == "flipped":
        b = bytearray(checkpoint)
        b[flip % len(b)] ^= 0xFF
        blob = bytes(b)
    sha = hashlib.sha256(blob).hexdigest() if honest else hashlib.sha256(checkpoint).hexdigest()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        path.write_bytes(blob)
        try:
            state = reference_pool.load_state(path, sha)
        except reference_pool.CacheCorrupt as e:
            assert str(path) in str(e)
        else:  # only bytes that match the sha256 may load, and then as a state dict
            assert hashlib.sha256(blob).hexdigest() == sha and isinstance(state, dict)


def test_an_unrecorded_checkpoint_is_never_loaded(checkpoint, tmp_path):
    (tmp_path / "model.pt").write_bytes(checkpoint)
    state = reference_pool.load_state(tmp_path / "model.pt", hashlib.sha256(checkpoint).hexdigest())
    assert state.keys() == models.build(P, seed=0).state_dict().keys()
    with pytest.raises(reference_pool.CacheCorrupt, match="does not match its recorded sha256"):
        reference_pool.load_state(tmp_path / "model.pt", "0" * 64)
