"""The competition's budget (harness.budget): a fifth of one retrain timed on the scoring machine,
calibrated where the pool was trained elsewhere, an oracle declared rather than recognised by name,
and a disguised retrain that no longer fits."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import BAD, FAST, SUBMISSIONS
from harness import budget, keys, protocol, reference_pool, result, runner, score

ATTACKS = Path(__file__).resolve().parent / "submissions" / "attacks"
QUICK = protocol.QUICK


def test_the_budget_is_a_fifth_of_one_retrain_timed_here(quick_pool):
    b = budget.make(QUICK, quick_pool)
    assert b.basis == "pool" and b.calibration is None
    assert b.retrain_s == quick_pool.retrain_seconds()
    assert b.seconds == pytest.approx(0.2 * b.retrain_s) and b.floor_s == 0
    assert b.tolerance_s == pytest.approx(max(QUICK.unlearn_budget_tolerance * b.seconds,
                                              QUICK.unlearn_budget_tolerance_min_s))
    assert b.competition and b.why_not_competition() is None
    # A floor above the fraction (test protocols only) makes it another rule, and says so.
    floored = budget.make(FAST, quick_pool)
    assert floored.seconds == 3.0 and not floored.competition
    assert floored.why_not_competition().startswith("a floor of 3 s, above 0.2 x one retrain")


def test_a_pool_trained_elsewhere_is_calibrated_on_this_machine(quick_pool, tmp_path):
    """A copied pool whose records say its retrains took 100x longer on another machine (and its
    epochs too, as a slow machine's would): trusted, its times would give runs a budget of 20
    retrains of this machine. The budget times a slice of the recipe here instead."""
    cache = tmp_path / "cache"
    for name in (quick_pool.data_root.name, quick_pool.dir.name):
        shutil.copytree(quick_pool.dir.parent / name, cache / name, ignore=shutil.ignore_patterns("runs"))
    shutil.copy2(quick_pool.dir.parent / keys.KEY_FILE, cache / keys.KEY_FILE)  # the key travels with its cache
    for path in [cache / quick_pool.dir.name / "original.json", *(cache / quick_pool.dir.name / "retrain").glob("*.json")]:
        rec = json.loads(path.read_text())
        rec.update(machine="another-machine", seconds=100 * rec["seconds"],
                   epoch_seconds=[100 * s for s in rec["epoch_seconds"]])
        path.write_text(json.dumps(rec))
    copied = reference_pool.load(QUICK, QUICK.k, cache)
    assert copied.retrain_seconds() == pytest.approx(100 * quick_pool.retrain_seconds())

    b = budget.make(QUICK, copied, workers=2)
    assert b.basis == "calibrated"
    assert b.calibration["pool_machines"] == ["another-machine"] and b.calibration["slice_pool_s"] > 0
    # Within a factor of 2 of this machine's own retrain, not 100x it.
    assert 0.5 < b.retrain_s / quick_pool.retrain_seconds() < 2.0, b
    assert b.seconds == pytest.approx(0.2 * b.retrain_s)


def test_the_oracle_is_declared_in_its_file_or_on_the_command_line(quick_pool, results, tmp_path):
    assert runner.Submission.load(SUBMISSIONS / "retrain.py").oracle_budget_fraction == 3.0
    assert runner.Submission.load(SUBMISSIONS / "finetune.py").oracle_budget_fraction is None
    # The oracle's code under another name is no oracle: it gets the protocol's budget.
    renamed = tmp_path / "improved_method.py"
    renamed.write_text((SUBMISSIONS / "retrain.py").read_text().replace("ORACLE_BUDGET_FRACTION = 3.0", ""))
    assert runner.Submission.load(renamed).oracle_budget_fraction is None
    bad = tmp_path / "bad_oracle.py"
    bad.write_text("ORACLE_BUDGET_FRACTION = 1 + 2\ndef unlearning(net, r, f, v):\n    pass\n")
    with pytest.raises(runner.SubmissionError, match="declares ORACLE_BUDGET_FRACTION as something other than a"):
        runner.Submission.load(bad)

    r = score.score(str(SUBMISSIONS / "noop.py"), QUICK, k=2, workers=2, progress=False, oracle=2.0)
    assert r["budget"]["oracle"] and not r["budget"]["competition"]
    assert r["budget"]["not_competition"] == "oracle, own budget (2 x one retrain)"
    assert "not the competition's budget: oracle, own budget" in result.summary_text(r)
    with pytest.raises(ValueError, match="--budget-fraction and --oracle both set a budget"):
        score.score(str(SUBMISSIONS / "noop.py"), QUICK, k=2, budget_fraction=2.0, oracle=2.0, progress=False)


def test_a_disguised_retrain_does_not_fit_the_budget(quick_pool, results):
    """The reference recipe with the run's own seed, every core asked for, under an innocent name:
    a whole retrain, five budgets' worth. It fails for time, and nothing is published."""
    with pytest.raises(runner.RunError, match=r"exceeded its time budget: (still running|it took)"):
        score.score(str(ATTACKS / "disguised_retrain.py"), QUICK, k=2, workers=2, progress=False)
    assert not results.exists() or not list(results.glob("*.json"))


def test_the_tolerance_is_for_noise_so_the_mean_of_the_runs_must_fit_the_budget():
    b = budget.Budget(seconds=2.0, tolerance_s=1.0, setup_s=20.0, fraction=0.2, retrain_s=10.0, basis="pool",
                      floor_s=0.0, protocol_budget=True, oracle=False, fixed_s=0.1)
    assert b.limit_s == 3.0 and b.mean_limit_s == 2.1
    assert b.mean_overrun([1.5, 2.6, 2.2]) is None            # one run over: noise
    line = b.mean_overrun([2.4, 2.6, 2.5])                      # every run over: the method's own time
    assert line == ("its runs exceeded their time budget on average: they took 2.50 s, 1.2x the budget of 2.00 s "
                    "(+ 0.10 s that does not shrink with a budget), over by 0.40 s; one run may go past the budget by "
                    "the tolerance for timer noise (1.00 s), the mean of 3 runs may not")


def test_a_method_over_its_budget_in_every_run_fails_though_each_run_is_within_the_tolerance(quick_pool, results):
    """1.2x the budget in every run: each run is within its tolerance and stored, the score fails on
    their mean, and nothing is published."""
    sub = BAD / "a_little_over_every_time.py"
    b = budget.make(FAST, quick_pool)
    assert b.mean_limit_s < 1.2 * b.seconds < b.limit_s
    with pytest.raises(runner.RunError, match=r"^its runs exceeded their time budget on average: they took 3\.\d\d s, "
                                              r"1\.2x the budget of 3\.00 s"):
        score.score(str(sub), FAST, k=2, workers=2, progress=False)
    folder = runner.runs_dir(quick_pool.dir, FAST, runner.Submission.load(sub))
    assert all(runner.read_run(runner.run_path(folder, i))["over_budget"] for i in range(2))
    assert not results.exists() or not list(results.glob("*.json"))


def test_one_run_over_its_budget_within_the_tolerance_is_noted_and_the_score_stands(quick_pool, results):
    """The same 1.2x budgets in one run of two: noise as far as the rule can tell. The score is
    published, and its summary says so, and that a floor made this budget."""
    r = score.score(str(BAD / "over_in_one_run.py"), FAST, k=2, workers=2, progress=False)
    assert r["budget"]["over_budget_runs"] == 1 and r["budget"]["limit_s"] == 4.5
    assert r["seconds"]["unlearning_max"] >= 3.6 and r["seconds"]["unlearning_mean"] <= r["budget"]["mean_limit_s"]
    text = result.summary_text(r)
    assert "1 run(s) took longer than the budget, within its tolerance" in text
    assert "not the competition's budget: a floor of 3 s" in text
