"""The trusted runner against submissions that misbehave: each bad one is rejected with a clear
reason naming the run, the survivors count normally, and nothing is left behind."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import BAD, FAST, SUBMISSIONS, processes_with, run_processes_left
from harness import evaluate, leaderboard, result, runner, score, supervise

REJECTED = [
    ("import_error", r"importing the submission failed: ModuleNotFoundError"),
    ("no_function", r"defines no `unlearning` function"),
    ("not_a_function", r"`unlearning` is a int, not a function"),
    ("wrong_signature", r"cannot be called as unlearning\(net, retain_loader, forget_loader, val_loader\)"),
    ("raises", r"unlearning\(\) raised: ZeroDivisionError: deliberate failure"),
    ("calls_sys_exit", r"called sys.exit\(3\)"),
    ("returns_other_model", r"returned a \w+ that is not the net it was given"),
    ("changes_architecture", r"architecture changed: missing keys \[\], unexpected keys \['extra_head"),
    ("nan_weights", r"weights are not finite"),
    ("busy_loop", r"exceeded its time budget"),
    ("sleeps", r"exceeded its time budget"),
    ("memory_hog", r"ran out of its memory limit \(1.0 GiB"),
    ("fills_tmpfs", r"ran out of its memory limit \(1.0 GiB, its tmpfs folders"),
    ("calls_os_exit", r"ended without finishing \(exit code 0\)"),
    ("kills_itself", r"ended without finishing \(killed by signal SIGKILL\)"),
    ("forges_status", r"ended without finishing \(exit code 0\)"),
    ("huge_weights", r"cannot be evaluated: the model's outputs on the \w+ set are not finite"),
    ("forges_payload", r"is not a dense CPU tensor \(torch.sparse_coo"),
]


def _score(path, protocol=FAST, **kw):
    return score.score(str(path), protocol, k=protocol.k, workers=kw.pop("workers", 2), progress=False, **kw)


# The hangs wait out their kill at twice the budget: a floor of 1 s, not FAST's 3, tests the same rule.
HANGS = {"busy_loop", "sleeps"}


@pytest.mark.parametrize("name, reason", REJECTED, ids=[r[0] for r in REJECTED])
def test_bad_submission_is_rejected_and_leaves_nothing(name, reason, quick_pool, results):
    started = time.perf_counter()
    with pytest.raises(runner.RunError) as err:
        # One worker: run 0 fails with nothing else in flight, so the worker stays for the next
        # test (a failure while another run is in flight kills the workers: test_score).
        _score(BAD / f"{name}.py", FAST.replace(unlearn_budget_min_s=1.0) if name in HANGS else FAST, workers=1)
    first_line = str(err.value).splitlines()[0]
    assert re.match(r"run \d+ \(seed \d+\) ", first_line), first_line
    assert re.search(reason, first_line), first_line
    assert not results.exists() or not list(results.glob("*.json")), "a failed score published a result"
    assert not (results / leaderboard.DB_NAME).exists()
    assert run_processes_left() == []
    assert runner.sweep_boxes() == 0, "a failed score left a run's folder behind"
    # Hangs are killed at twice the budget, not later.
    assert time.perf_counter() - started < 60


def test_syntax_error_is_rejected_before_any_run(quick_pool, results):
    with pytest.raises(runner.SubmissionError, match=r"is not valid Python: line 1"):
        _score(BAD / "syntax_error.py")


def test_survivors_count_normally(quick_pool, results):
    for name in ("prints_megabytes", "writes_files", "mutates_loaders", "looks_for_test_set"):
        r = _score(BAD / f"{name}.py", workers=1)  # one worker: run 1 follows run 0 in the same process
        assert len(r["run_digests"]) == FAST.k and r["isolation"]["sandboxed"], name  # every run counted
        assert (results / f"{r['id']}.json").exists()
        assert run_processes_left() == []


def test_output_is_captured_and_truncated(quick_pool, results):
    r = _score(BAD / "prints_megabytes.py")
    folder = runner.runs_dir(quick_pool.dir, FAST, runner.Submission.load(BAD / "prints_megabytes.py"))
    rec = runner.read_run(runner.run_path(folder, 0))
    assert rec["output_bytes"] > 4 * 2**20
    assert "LAST LINE OF OUTPUT" in rec["output"] and len(rec["output"]) <= 2000
    assert len(r["run_digests"]) == FAST.k  # the chatty run still counts


def test_files_written_by_a_run_stay_in_its_sandbox(quick_pool, results, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.chdir(tmp_path)
    _score(BAD / "writes_files.py")
    assert not (tmp_path / "scratch_output.bin").exists()
    folder = runner.runs_dir(quick_pool.dir, FAST, runner.Submission.load(BAD / "writes_files.py"))
    cwd = re.search(r"CWD (\S+)", runner.read_run(runner.run_path(folder, 0))["output"]).group(1)
    assert cwd == "/scratch", "the run did not start in the sandbox's own scratch folder"
    assert runner.sweep_boxes() == 0, "a run's folder was left behind"
    assert not [b for b in Path(tempfile.gettempdir()).glob(runner.BOX_PREFIX + "*") if "scratch_output.bin" in
                {p.name for p in b.rglob("*")}], "a run wrote into the worker's side"


def test_children_that_would_outlive_the_run_are_killed(quick_pool, results):
    marker = "harness-orphan-marker-7f3c"
    _score(BAD / "spawns_child.py")
    deadline = time.time() + 5
    while processes_with(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []


def test_failed_score_leaves_earlier_results_alone(quick_pool, results):
    good = _score(SUBMISSIONS / "noop.py")
    before = sorted(p.name for p in results.glob("*.json"))
    rows = len(leaderboard.table(results, profile=FAST.name))
    with pytest.raises(runner.RunError):
        _score(BAD / "raises.py")
    assert sorted(p.name for p in results.glob("*.json")) == before
    assert len(leaderboard.table(results, profile=FAST.name)) == rows
    assert good["id"] in before[0]


def test_run_records_are_isolation_reports(quick_pool, results):
    r = _score(SUBMISSIONS / "noop.py")
    folder = runner.runs_dir(quick_pool.dir, FAST, runner.Submission.load(SUBMISSIONS / "noop.py"))
    rec = runner.read_run(runner.run_path(folder, 1))
    assert rec["memory_limit_gb"] == FAST.memory_limit_gb
    assert rec["seed"] == FAST.unlearn_seed0 + 1
    # this machine (and CI) runs as root: every layer must take effect here
    for layer in result.ISOLATION_LAYERS:
        assert rec["isolation"][layer], (layer, rec["isolation"])
        assert r["isolation"][layer] is True
    assert rec["isolation"]["cgroup"] == {"version": "v1", "memory_bytes": 2**30, "cpus": 1.0, "pids_max": 512}
    assert 0 < rec["cpu_seconds"] and 0 < rec["memory_peak_bytes"] < 2**30 and rec["oom_killed"] is False
    assert r["isolation"]["sandboxed"] and rec["isolation"]["network_namespace"]
    # noop's run may end within a reader thread's switch of its start: 0 s, never less.
    assert 0 <= rec["seconds"] < rec["wall_seconds"] and rec["setup_seconds"] > 0


def test_time_is_measured_by_the_trusted_side(quick_pool, results):
    """The run stops every clock it can reach and sleeps 4 s: the worker's clock, started before any
    submission code ran, still sees it. Within the tolerance (3 s + 50%) each run is stored, noted
    as over its budget, and the score fails on their mean; past it (2.5 s + 50%) the run fails,
    and says by how much."""
    sub = BAD / "lies_about_time.py"
    with pytest.raises(runner.RunError, match=r"^its runs exceeded their time budget on average: they took 4\.\d\d s, "
                                              r"1\.\dx the budget of 3\.00 s"):
        score.score(str(sub), FAST, k=2, workers=2, progress=False)
    folder = runner.runs_dir(quick_pool.dir, FAST, runner.Submission.load(sub))
    for i in range(2):
        rec = runner.read_run(runner.run_path(folder, i))
        assert rec["over_budget"] and rec["seconds"] >= 4.0 and rec["limit_s"] == 4.5
    with pytest.raises(runner.RunError, match=r"exceeded its time budget: it took 4\.\d\d s, 1\.\dx its budget of "
                                              r"2\.50 s \(\+ 1\.25 s tolerance for timer noise\), over by 1\.\d\d s"):
        score.score(str(sub), FAST.replace(unlearn_budget_min_s=2.5), k=2, workers=2, progress=False)


def test_runs_under_another_budget_are_never_reused_as_protocol_runs(quick_pool, results):
    sub = runner.Submission.load(SUBMISSIONS / "noop.py")
    custom = _score(SUBMISSIONS / "noop.py", budget_fraction=3.0)
    assert custom["budget"]["protocol_budget"] is False
    custom_dir = runner.runs_dir(quick_pool.dir, FAST, sub, budget_fraction=3.0)
    protocol_dir = runner.runs_dir(quick_pool.dir, FAST, sub)
    assert custom_dir != protocol_dir and len(list(custom_dir.glob("run_*.json"))) == FAST.k
    for p in protocol_dir.glob("run_*.json"):
        p.unlink()
    again = _score(SUBMISSIONS / "noop.py")
    assert again["budget"]["protocol_budget"] is True
    assert len(list(protocol_dir.glob("run_*.json"))) == FAST.k, "the protocol score reused custom-budget runs"


@pytest.mark.parametrize("mode", ["auto", "userns"])
def test_the_run_has_no_privileges_and_sees_only_itself(mode, quick_pool, results, monkeypatch):
    """As root (this machine and CI) and in a user namespace (what a normal user gets): no
    capability, no way back to one, only the run's own processes, nothing it can unmount."""
    monkeypatch.setenv(runner.SANDBOX_ENV, mode)
    sub = BAD / "reports_privileges.py"
    folder = runner.runs_dir(quick_pool.dir, FAST, runner.Submission.load(sub))
    shutil.rmtree(folder, ignore_errors=True)  # both modes share one runs folder: run afresh
    r = _score(sub)
    assert r["isolation"]["sandboxed"]
    for i in range(FAST.k):
        rec = runner.read_run(runner.run_path(folder, i))
        assert rec["isolation"]["how"] == ("user namespace" if mode == "userns" else "root")
        out = rec["output"]
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert f"STATUS {cap}:\t0000000000000000" in out, out
        assert "STATUS NoNewPrivs:\t1" in out
        assert "PIDS [1, 2]" in out, "the run sees processes outside its sandbox"
        assert re.findall(r"UMOUNT \S+ (-?\d+)", out) == ["-1"] * 3 and "REMOUNT -1" in out
        assert "SEES" not in out and out.count("HIDDEN") == 5, out


def test_scratch_is_a_size_limited_tmpfs(quick_pool, results):
    # The cgroup counts tmpfs: room for the whole 1 GiB of scratch, and time to write it on a slow
    # machine (CI took 4.8 s), since this test is about the size limit, not the clock.
    roomy = FAST.replace(memory_limit_gb=3.0, unlearn_budget_min_s=20.0)
    r = score.score(str(BAD / "fills_scratch.py"), roomy, k=2, workers=2, progress=False)
    folder = runner.runs_dir(quick_pool.dir, roomy, runner.Submission.load(BAD / "fills_scratch.py"))
    out = runner.read_run(runner.run_path(folder, 0))["output"]
    assert f"STOPPED ENOSPC {supervise.SCRATCH_MB} MiB" in out, out
    assert r["k"] == 2


def _blob(obj) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_weights_from_a_run_are_plain_dense_cpu_tensors_or_one_clear_error():
    """What crosses the pipe is loaded with weights_only, then must be a dict of str -> plain dense
    CPU tensors with the original's architecture; everything else is one ValueError, never another
    exception."""
    import torch

    from harness import models

    original = models.build(FAST).state_dict()
    first = next(iter(original))

    class Sub(torch.Tensor):
        pass

    cases = {
        "not a state dict but a list": [1, 2],
        "a key that is not a string": {**original, 7: torch.zeros(1)},
        "is a int, not a plain tensor": {**original, first: 3},
        "not a dense CPU tensor (torch.strided, meta": {**original, first: torch.empty_like(original[first], device="meta")},
        "architecture changed": {k: v for k, v in original.items() if k != first},
    }
    for reason, obj in cases.items():
        with pytest.raises(ValueError, match=re.escape(reason)):
            evaluate.load_weights(_blob(obj), original)
    with pytest.raises(Exception) as err:  # a subclass does not even load under weights_only
        evaluate.load_weights(_blob({**original, first: original[first].as_subclass(Sub)}), original)
    assert not isinstance(err.value, (RecursionError, MemoryError))
    # Two entries sharing one storage (a batch norm's variance saved as its mean) load, each into
    # storage of its own.
    mean = next(k for k in original if k.endswith("running_mean"))
    var = mean.replace("running_mean", "running_var")
    shared = {**original, var: original[mean]}
    loaded = torch.load(__import__("io").BytesIO(_blob(shared)), weights_only=True)
    assert loaded[var].untyped_storage().data_ptr() == loaded[mean].untyped_storage().data_ptr()
    weights = evaluate.load_weights(_blob(shared), original)
    assert weights[var].untyped_storage().data_ptr() != weights[mean].untyped_storage().data_ptr()
    assert torch.equal(weights[var], original[mean])
