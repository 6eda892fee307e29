"""Attacks on the runner, each a submission in tests/submissions/attacks/, run the way a determined
competitor would. Each must be blocked (the run finds nothing and scores like what it really
did) or detected (the run is rejected with the reason), as docs/threat-model.md says.

The attacks print `LEAK: ...` whenever they reach something they should not; the run records keep
their output, so a test reads every record for it."""
from __future__ import annotations

import json
import time

import pytest

from conftest import BAD, FAST, SUBMISSIONS, processes_with, run_processes_left
from harness import paths, protocol, reference_pool, result, runner, score

ATTACKS = BAD / "attacks"
# Searching the file system takes an attack seconds: a budget that lets it finish its search.
P = FAST.replace(unlearn_budget_min_s=30.0)
BLOCKED = ("pool_by_path", "parent_environ", "stack_and_gc", "patches_scorer", "forges_run_record",
           "detached_grandchild", "network", "fork_bomb", "reads_what_it_is_told")


ACCURACIES = ("retain_acc", "test_acc", "forget_acc")


# The same protocol with public seeds: the pool and the data anyone can rebuild (--public-seeds).
PUBLIC = P.replace(secret_seeds=False, name="quick+public")


def _score(name_or_path, protocol_=P, **kw):
    path = name_or_path if str(name_or_path).endswith(".py") else ATTACKS / f"{name_or_path}.py"
    return score.score(str(path), protocol_, k=P.k, workers=kw.pop("workers", 2), progress=False, **kw)


def _records(pool, path, protocol_=P, **kw) -> list[dict]:
    folder = runner.runs_dir(pool.dir, protocol_, runner.Submission.load(path), **kw)
    return [runner.read_run(runner.run_path(folder, i)) for i in range(P.k)]


def _tree_text(root) -> str:
    """Every file's name and text under root (to find anything an attack managed to write)."""
    out = []
    for p in sorted(root.rglob("*")) if root.exists() else []:
        if p.is_file() and p.suffix in (".json", ".pth", ".py", ".txt"):
            out.append(f"{p}\n{p.read_text(errors='replace')}")
    return "\n".join(out)


@pytest.mark.parametrize("name", BLOCKED)
def test_attack_is_blocked_inside_the_sandbox(name, quick_pool, results, cache):
    r = _score(name)
    records = _records(quick_pool, ATTACKS / f"{name}.py")
    assert r["isolation"]["sandboxed"], r["isolation"]
    for rec in records:
        assert "LEAK" not in rec["output"], rec["output"]
        # what it returned is far from every retrained model: it found none to copy
        assert rec["nearest_retrained"]["weights_distance"] > 0.2
        # and it handed back the original it was given, untouched (an attack changes the model only
        # when it finds one to copy): it scores as doing nothing does. (F cannot tell: at K = 2
        # nothing scores, and the null ceiling is undefined.)
        assert {key: rec[key] for key in ACCURACIES} == {key: quick_pool.original[key] for key in ACCURACIES}
    assert run_processes_left() == []
    written = _tree_text(cache) + _tree_text(results)
    assert "FORGED" not in written and "harness-attack-pth" not in written


def test_a_run_gets_one_cpu_whatever_it_starts(quick_pool, results):
    """Two busy processes for 1.5 s, alone on the machine (one worker): the run's cgroup holds
    them to one CPU in all, as the reference models had (the worker's clock is wall time)."""
    _score("uses_every_core", workers=1)
    for rec in _records(quick_pool, ATTACKS / "uses_every_core.py"):
        assert "LEAK" not in rec["output"] and "CPU " in rec["output"], rec["output"]
        assert rec["cpu_seconds"] < rec["wall_seconds"] * 1.1


def test_forks_do_not_multiply_the_memory_limit(quick_pool, results):
    """Three forked children of 500 MiB each, held at once: past the run's 1 GiB in all. The kernel
    kills the largest process of the run's cgroup: the run itself (the score fails for memory) or a
    child (the attack never holds it all). Either way no LEAK."""
    try:
        _score("forks_past_memory")
    except runner.RunError as e:
        assert "ran out of its memory limit (1.0 GiB, its tmpfs folders and every process" in str(e), e
    else:
        for rec in _records(quick_pool, ATTACKS / "forks_past_memory.py"):
            assert "LEAK" not in rec["output"] and rec["oom_killed"], rec
    assert run_processes_left() == []


def test_patched_scorer_changes_nothing_on_disk_or_in_the_numbers(quick_pool, results):
    import harness
    import numpy
    import torch

    watched = [p for mod in (harness, torch, numpy) for p in __import__("pathlib").Path(mod.__file__).parent.glob("*.py")]
    before = {p: p.stat().st_mtime_ns for p in watched}
    patched = _score("patches_scorer")
    noop = _score(SUBMISSIONS / "noop.py")
    assert {p: p.stat().st_mtime_ns for p in watched} == before
    for d in __import__("site").getsitepackages():
        assert not list(__import__("pathlib").Path(d).glob("*harness-attack-pth*")), d
    assert patched["epsilons"] == noop["epsilons"] and patched["retain_acc"] == noop["retain_acc"]


def test_a_model_that_behaves_differently_is_scored_by_its_weights(quick_pool, results):
    tricked = _score("behaves_differently")
    noop = _score(SUBMISSIONS / "noop.py")
    assert tricked["epsilons"] == noop["epsilons"]
    assert tricked["forget_acc"] == noop["forget_acc"] == quick_pool.original["forget_acc"]


def test_detached_grandchild_dies_with_the_run(quick_pool, results):
    marker = "harness-detached-grandchild-5b2a"
    _score("detached_grandchild")
    deadline = time.time() + 5
    while processes_with(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []
    assert not __import__("pathlib").Path("/tmp/keeps_writing.txt").exists(), "the run wrote to the host's /tmp"


def test_rebuilding_a_retrained_model_from_public_seeds_is_rejected(quick_pool, results):
    """Under public seeds (--public-seeds) the recipe and seed rebuild pool model 0 bit for bit:
    the copy check rejects it (a custom budget lets the rebuild finish)."""
    with pytest.raises(runner.RunError, match=r"returned a copy of the reference pool: its weights are retrained model 0"):
        _score("rebuilds_pool_from_seeds", protocol_=PUBLIC, budget_fraction=3.0, workers=1)
    assert not results.exists() or not list(results.glob("*.json"))


def test_the_copy_checks_fast_forms_equal_the_plain_ones():
    """copies balances on scale vectors and takes singular values from a Gram matrix: the same as
    rescaling the matrix itself round by round and an SVD, to rounding, wide and tall, bias or not."""
    import numpy as np

    from harness import copies

    def plain_balanced(m, blocks):
        m = m.copy()
        body = m[:, :-1].reshape(m.shape[0], blocks, -1)
        for _ in range(copies.SINKHORN_ROUNDS):
            m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
            body /= np.maximum(np.sqrt((body ** 2).sum(axis=(0, 2), keepdims=True)), 1e-12)
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    rng = np.random.default_rng(3)
    for rows, blocks, k in ((64, 32, 9), (10, 48, 1), (7, 3, 4)):
        m = rng.normal(size=(rows, blocks * k + 1)) * rng.uniform(0.01, 100, (rows, 1))
        m[:, -1] *= rows % 2  # a layer without a bias too
        np.testing.assert_allclose(copies._balanced(m, blocks), plain_balanced(m, blocks), rtol=0, atol=1e-12)
        b = copies._balanced(m, blocks)
        sv = np.linalg.svd(b, compute_uv=False)
        assert copies.singular_values(b).shape == sv.shape
        assert np.linalg.norm(copies.singular_values(b) - sv) <= 1e-12 * np.linalg.norm(sv)


def test_a_rescaled_copy_with_a_noisy_head_is_still_a_copy(quick_pool, results):
    """The disguise the old check missed: every convolution scaled by 3 with its batch norm's
    statistics by 3 and 9, and noise on the head. On raw weights the copy is far from its model and
    its forget confidences are past a quarter of the closest pair; folded and balanced, its weights
    are the model's, and the run is rejected."""
    import numpy as np
    import torch

    from harness import copies, evaluate, reference_pool

    pool = reference_pool.ensure(PUBLIC, 2, progress=False)
    model0 = reference_pool.load_state(pool.retrain_weights(0), pool.retrains[0]["weights_sha256"])
    structure = copies.layers(list(model0))
    disguised = {k: v.clone() for k, v in model0.items()}
    for weight, _, bn in structure:
        if bn:
            disguised[weight] *= 3.0
            disguised[f"{bn}.running_mean"] *= 3.0
            disguised[f"{bn}.running_var"] *= 9.0
    head = structure[-1][0]
    noise = torch.randn(disguised[head].shape, generator=torch.Generator().manual_seed(0))
    disguised[head] += 1.0 * disguised[head].std() * noise  # 0.5 stayed within a quarter on some machines

    def raw(state):  # the old weights view: learned tensors as they are
        return np.concatenate([v.double().ravel().numpy() for k, v in sorted(state.items())
                               if v.is_floating_point() and not k.endswith(("running_mean", "running_var"))])

    assert np.linalg.norm(raw(disguised) - raw(model0)) / np.linalg.norm(raw(model0)) > copies.NEAR_WEIGHTS
    splits = reference_pool.worker_splits(pool.data_root)
    conf = np.array(evaluate.evaluate_state(PUBLIC, disguised, splits)["forget_confidences"])
    old_closest = copies.closest_pair(pool.forget_confidences())
    assert copies.rms_distances(conf[None], pool.forget_confidences()[:1])[0, 0] > copies.NEAR_FUNCTION * old_closest
    near = copies.nearest(copies.view(disguised, structure), np.zeros(1), copies.stack([copies.view(model0, structure)]),
                          np.ones((1, 1)))
    assert near["weights_distance"] < 1e-4 and near["spectrum_distance"] < 1e-4  # the eps of batch norm
    assert "up to rescaling" in copies.copy_reason(near, 1.0)

    # Through the runner: the attack rebuilds model 0 in a run and disguises it the same way.
    with pytest.raises(runner.RunError, match=r"returned a copy of the reference pool: its weights are retrained model 0's, "
                                              r"up to rescaling"):
        _score("rebuilds_and_disguises", protocol_=PUBLIC, budget_fraction=3.0, workers=1)


def test_the_test_split_cannot_be_regenerated_in_a_run(quick_pool, results):
    """Secret seeds (the default): the faces a run renders from the public profile are not the
    ones it was given. Public seeds: the same attack regenerates the real test split (so the test
    can fail)."""
    _score("regenerates_test_split")
    for rec in _records(quick_pool, ATTACKS / "regenerates_test_split.py"):
        assert "LEAK" not in rec["output"] and " 0 of 50 given retain images" in rec["output"], rec["output"]
    public = reference_pool.ensure(PUBLIC, 2, progress=False)
    _score("regenerates_test_split", protocol_=PUBLIC)
    for rec in _records(public, ATTACKS / "regenerates_test_split.py", protocol_=PUBLIC):
        assert "LEAK: the test split, regenerated" in rec["output"], rec["output"]


def test_without_the_sandbox_a_copied_pool_model_is_still_rejected(quick_pool, results, monkeypatch):
    """HARNESS_SANDBOX=off stands for a platform that refuses namespaces: the attack then finds the
    pool by searching /tmp and reads a retrained model, and the copy check rejects the run."""
    monkeypatch.setenv(runner.SANDBOX_ENV, "off")
    with pytest.raises(runner.RunError, match=r"returned a copy of the reference pool: its weights are retrained"):
        _score("pool_by_path", workers=1)
    assert not results.exists() or not list(results.glob("*.json"))


def test_unsandboxed_results_say_so(quick_pool, results, monkeypatch):
    monkeypatch.setenv(runner.SANDBOX_ENV, "off")
    r = _score(SUBMISSIONS / "noop.py")
    assert r["isolation"]["sandboxed"] is False and r["isolation"]["refused"] == ["HARNESS_SANDBOX=off"]
    assert "NOT sandboxed" in result.summary_text(r)
    stored = json.loads((results / f"{r['id']}.json").read_text())
    assert stored["isolation"]["sandboxed"] is False
    # runs made without the sandbox are never reused by a sandboxed score
    sub = runner.Submission.load(SUBMISSIONS / "noop.py")
    assert runner.runs_dir(quick_pool.dir, P, sub, sandbox="off") != runner.runs_dir(quick_pool.dir, P, sub)


def test_unknown_sandbox_mode_is_one_clear_error(quick_pool, results, monkeypatch):
    monkeypatch.setenv(runner.SANDBOX_ENV, "maybe")
    with pytest.raises(ValueError, match=r"HARNESS_SANDBOX='maybe' is not a sandbox mode"):
        _score(SUBMISSIONS / "noop.py")
    assert paths.results_dir() == results


def test_a_score_far_above_the_null_ceiling_is_flagged(quick_pool):
    """Should copies of the pool ever slip past the sandbox and the copy check, the score itself
    says so: the unlearned population would be the retrained one, F ~ 1."""

    from harness import budget

    sub = runner.Submission.load(SUBMISSIONS / "noop.py")
    iso = {layer: True for layer in result.ISOLATION_LAYERS}
    copies_of_pool = [{**r, "seed": 2000 + i, "over_budget": False, "isolation": iso, "memory_limit_gb": 4.0}
                      for i, r in enumerate(quick_pool.retrains)]
    r = result.build(protocol.QUICK, quick_pool, sub, copies_of_pool, budget.make(protocol.QUICK, quick_pool),
                     source="runner", started=0.0, timings={})
    assert r["forget_quality"] > 2 * r["null_forget_quality"]
    assert r["suspicious"] and "null ceiling" in r["suspicious"]
    assert "WARNING: F =" in result.summary_text({**r, "seconds": {**r["seconds"], "total": 1.0}})
    assert result.suspicious(r["null_forget_quality"], r["null_forget_quality"]) is None


def test_with_secret_seeds_the_pool_cannot_be_rebuilt(quick_pool, results):
    """The default: the same rebuild trains an honest model of its own, far from every retrained
    one, and the result publishes commitments instead of the retrained seeds."""
    r = _score("rebuilds_pool_from_seeds", budget_fraction=3.0, workers=1)
    assert r["seeds"]["retrain"] is None and r["seeds"]["retrain_secret_commitment"] == quick_pool.seed_commitment
    assert r["secrets"] == {"public_seeds": False, "pool_commitment": quick_pool.seed_commitment,
                            "data_commitment": r["secrets"]["data_commitment"]} and r["secrets"]["data_commitment"]
    assert all(rec["seed"] is None for rec in quick_pool.retrains)
    for rec in _records(quick_pool, ATTACKS / "rebuilds_pool_from_seeds.py", budget_fraction=3.0):
        assert rec["nearest_retrained"]["weights_distance"] > 0.2


def _refusing_platform(*args, env):
    """`python -m harness ...` where the platform refuses namespaces: inside a user namespace whose
    limit of further user namespaces is 0, with every capability dropped (util-linux tools)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    inner = " ".join(["setpriv --bounding-set -all --inh-caps -all --no-new-privs", sys.executable, "-m", "harness",
                      *args])
    return subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c",
                           f"echo 0 > /proc/sys/user/max_user_namespaces && {inner}"],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, **env}, timeout=300)


def test_where_the_platform_refuses_namespaces(own_cache, tmp_path):
    """auto: the score still comes, marked unsandboxed with the platform's reason; require: no
    score, one clear error."""
    env = {"HARNESS_RESULTS_DIR": str(tmp_path / "results")}
    args = ["score", str(SUBMISSIONS / "noop.py"), "--profile", "quick", "--k", "2", "--quiet", "--json"]
    auto = _refusing_platform(*args, env=env)
    assert auto.returncode == 0, auto.stderr[-3000:]
    r = json.loads(auto.stdout.strip().splitlines()[-1])
    assert r["isolation"]["sandboxed"] is False and r["isolation"]["clean_process"]
    assert any("the platform refused namespaces" in why for why in r["isolation"]["refused"]), r["isolation"]
    assert "WARNING: runs were NOT sandboxed" in auto.stdout
    required = _refusing_platform(*args, env={**env, runner.SANDBOX_ENV: "require"})
    assert required.returncode == 2
    first = required.stderr.strip().splitlines()[0]
    assert "HARNESS_SANDBOX=require, but the platform refused namespaces" in first, required.stderr
