"""`harness tune` (harness.tune): the search space read from a method file without running it, trial
files that differ from it only in their defaults, a study on the dev pool that resumes after kill -9
and counts only finished trials, an over-budget trial failed and the study gone on, and `--write`
changing only the defaults and the docstring of a file that still passes `harness check`."""
from __future__ import annotations

import difflib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import protocol, tune

from conftest import BAD, REPO, SUBMISSIONS, run_cli

METHOD = '''"""A method.

Tuned: by hand, long ago
on two lines."""
import torch

LR = 1e-3  # a comment that stays
EPOCHS = 2
NAME = "sgd"
SEARCH_SPACE = {
    "LR": ("log", 1e-4, 1e-1),
    "EPOCHS": ("int", 1, 3),
    "NAME": ["sgd", "adam"],
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    return None
'''


def _write(tmp_path, text: str, name: str = "m.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_space_and_its_defaults_are_read_without_running_the_file(tmp_path):
    space, defaults = tune.read_space(_write(tmp_path, METHOD + "\nraise SystemExit('never run')\n"))
    assert space == {"LR": ("log", 1e-4, 1e-1), "EPOCHS": ("int", 1, 3), "NAME": ["sgd", "adam"]}
    assert defaults == {"LR": 1e-3, "EPOCHS": 2, "NAME": "sgd"}


@pytest.mark.parametrize("change, message", [
    (("SEARCH_SPACE = {", "SPACE = {"), "declares no SEARCH_SPACE"),
    (('"NAME": ["sgd", "adam"]', '"BATCH": [32, 64]'), "names 'BATCH', which the file does not assign"),
    (("EPOCHS = 2", "EPOCHS = 5"), "outside [1, 3]"),
    (('"LR": ("log", 1e-4, 1e-1)', '"LR": ("log", 0, 1e-1)'), "low > 0"),
    (('"EPOCHS": ("int", 1, 3)', '"EPOCHS": ("normal", 1, 3)'), "kind one of float, log, int"),
    (("LR = 1e-3", "LR = 2 * 5e-4"), "must be a literal"),
    (('NAME = "sgd"', 'NAME = "sgd2"'), "not one of the choices"),
])
def test_a_bad_space_is_one_line_naming_the_fix(tmp_path, change, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")) as e:
        tune.read_space(_write(tmp_path, METHOD.replace(*change)))
    assert "\n" not in str(e.value)


def test_new_values_change_only_the_defaults(tmp_path):
    out = tune.with_values(METHOD, {"LR": 0.00506, "EPOCHS": 3, "NAME": "adam"})
    changed = [(a, b) for a, b in zip(METHOD.splitlines(), out.splitlines()) if a != b]
    assert changed == [("LR = 1e-3  # a comment that stays", "LR = 0.00506  # a comment that stays"),
                       ("EPOCHS = 2", "EPOCHS = 3"), ('NAME = "sgd"', "NAME = 'adam'")]
    assert tune.read_space(_write(tmp_path, out))[1] == {"LR": 0.00506, "EPOCHS": 3, "NAME": "adam"}
    # The study is the code's: new defaults, a new docstring or comments keep it; new code does not.
    names = {"LR", "EPOCHS", "NAME"}
    assert tune.code_hash(out, names) == tune.code_hash(METHOD, names)
    assert tune.code_hash(tune.with_tuned_line(METHOD, "Tuned: now.").replace("# a comment", "#"), names) == \
        tune.code_hash(METHOD, names)
    assert tune.code_hash(METHOD.replace("return None", "return net"), names) != tune.code_hash(METHOD, names)


def test_the_tuned_paragraph_is_replaced_or_added(tmp_path):
    out = tune.with_tuned_line(METHOD, "Tuned: by harness tune.")
    assert out.startswith('"""A method.\n\nTuned: by harness tune."""\nimport torch\n')
    assert out.split("import torch", 1)[1] == METHOD.split("import torch", 1)[1]
    closing_alone = METHOD.replace("Tuned: by hand, long ago\non two lines.\"\"\"", 'Idea.\n"""')
    out = tune.with_tuned_line(closing_alone, "Tuned: " + "x " * 80)
    assert out.startswith('"""A method.\n\nIdea.\n\nTuned: x x')
    doc = out.split('"""')[1]
    assert doc.endswith("x\n") and max(len(line) for line in doc.splitlines()) <= 100
    on_last_line = SUBMISSIONS.joinpath("finetune.py").read_text()   # "...published values).\"\"\""
    out = tune.with_tuned_line(on_last_line, "Tuned: here.")
    assert 'Tuned: here."""\nimport torch' in out and "Tuned: nothing" not in out


def _trial_states(db: Path) -> list[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return [s for (s,) in con.execute("select state from trials order by number")]
    except sqlite3.Error:   # not made yet, or being written
        return []


def test_tune_resumes_after_kill_9_then_writes_only_defaults_and_docstring(quick_pool, results, tmp_path):
    # The acceptance: tune finetune with 8 trials at K=4 on quick, interrupted and resumed.
    method = tmp_path / "finetune.py"
    shutil.copy(SUBMISSIONS / "finetune.py", method)
    args = ["tune", str(method), "--trials", "8", "--k", "4", "--profile", "quick"]
    name, db = tune.study_paths(method, protocol.QUICK, 4)
    assert name.startswith("finetune-") and name.endswith("-quick-dev-k4-v2") and db.parent == results / "tune"
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args, "--quiet"], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        states = _trial_states(db)
        if sum(s in ("COMPLETE", "PRUNED") for s in states) >= 2 and states[-1] == "RUNNING":
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _trial_states(db)
    assert 2 <= sum(s in ("COMPLETE", "PRUNED") for s in before) < 8, before

    r = run_cli(*args, "--json", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    after = _trial_states(db)
    assert summary["n_trials"] == 8 == summary["n_complete"] + summary["n_pruned"] + summary["n_failed"]
    # What finished before the kill stands; the trial the kill cut short failed and is not counted.
    assert after[:len(before) - 1] == before[:-1] and before[-1] == "RUNNING" and after[len(before) - 1] == "FAIL"
    assert len(after) == 9 and after.count("FAIL") == 1
    assert set(summary["best_params"]) == {"LR", "MOMENTUM", "WEIGHT_DECAY"} and summary["best_value"] > 0
    assert Path(summary["plot"]).stat().st_size > 10_000
    assert "dev score" in r.stdout and "LR=" in r.stdout
    # Trial 0 is the file as it is: the published values.
    assert (db.with_suffix("") / "trial-0000.py").read_text() == method.read_text()

    again = run_cli(*args, "--write", "--quiet")   # the study has its 8: nothing more runs
    assert again.returncode == 0, again.stderr[-3000:]
    assert _trial_states(db) == after
    old, new = (SUBMISSIONS / "finetune.py").read_text(), method.read_text()
    # The code after the docstring differs only in the defaults; the docstring only in "Tuned:".
    assert new.split('"""', 2)[2] == tune.with_values(old, summary["best_params"]).split('"""', 2)[2] != \
        old.split('"""', 2)[2]

    def without_tuned(text: str) -> list[str]:
        lines = text.split('"""', 2)[1].splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("Tuned:"))
        end = next((i for i in range(at, len(lines)) if not lines[i].strip()), len(lines))
        return lines[:at] + lines[end:]

    assert without_tuned(new) == without_tuned(old)
    assert f"study {name}: 8 trials" in method.read_text()
    # What score-all's table reads back from the written file.
    assert tune.recorded(method.read_text()) == {"study": name, "trials": 8,
                                                 "dev_score": float(f"{summary['best_value']:.4f}")}
    assert tune.read_space(method)[1] == summary["best_params"]
    check = run_cli("check", str(method))
    assert check.returncode == 0, check.stderr[-3000:]


def test_a_study_made_again_from_stored_runs_is_the_same_study(quick_pool, results, tmp_path):
    """Every trial is looked at on the same runs whether they were made now or stored by an earlier
    study: the same study from nothing, over the same runs, reports and prunes the same."""
    import optuna

    method = tmp_path / "finetune.py"
    shutil.copy(SUBMISSIONS / "finetune.py", method)
    args = ("tune", str(method), "--trials", "7", "--k", "4", "--profile", "quick", "--json", "--quiet")

    def study() -> list:
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr[-3000:]
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        trials = optuna.load_study(study_name=summary["study"], storage=summary["storage"]).trials
        return [(t.state.name, t.value, t.intermediate_values, t.params) for t in trials]

    first = study()
    assert sum(1 for _, _, looked, _ in first if looked) >= 5   # the pruner looked at every trial with 2 runs
    for path in (results / "tune").iterdir():   # the study goes; the runs it made stay in the cache
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert study() == first


def test_an_over_budget_trial_fails_and_the_study_goes_on(quick_pool, results, tmp_path):
    method = tmp_path / "tunable_sleep.py"
    shutil.copy(BAD / "tunable_sleep.py", method)
    r = run_cli("tune", str(method), "--trials", "3", "--k", "2", "--profile", "quick", "--json", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["n_trials"] == 3 and summary["n_failed"] >= 1 and summary["best_params"] == {"SLEEP_S": 0.0}
    assert "failed (SLEEP_S=60.0): run" in r.stderr and "exceeded its time budget" in r.stderr
    assert "Traceback" not in r.stderr
    # A failed trial scores 0 and tells TPE it broke a constraint (Optuna's sampler skips FAIL trials).
    import optuna

    study = optuna.load_study(study_name=summary["study"], storage=summary["storage"])
    failed = [t for t in study.trials if tune.FAILED in t.user_attrs]
    assert failed and all(t.state.name == "COMPLETE" and t.value == 0.0 and t.constraints == {tune.FAILED: 1.0}
                          for t in failed)


def test_tune_refuses_what_it_cannot_search(tmp_path, results):
    r = run_cli("tune", str(SUBMISSIONS / "noop.py"), "--profile", "quick")
    assert r.returncode == 2 and "declares no SEARCH_SPACE" in r.stderr
    r = run_cli("tune", str(SUBMISSIONS / "finetune.py"), "--profile", "quick", "--pool", "dev")
    assert r.returncode == 2 and "always searches the profile's dev pool" in r.stderr
    r = run_cli("tune", str(SUBMISSIONS / "retrain.py"), "--profile", "quick")
    assert r.returncode == 2 and "is an oracle" in r.stderr
    assert not results.exists()


def test_every_method_declares_a_space_its_defaults_fit():
    # noop has nothing to tune, retrain is an oracle, template is the contract.
    methods = sorted(p for p in SUBMISSIONS.glob("*.py") if p.stem not in ("noop", "retrain", "template"))
    assert len(methods) == 21
    for path in methods:
        space, defaults = tune.read_space(path)   # raises on a default outside its range
        assert 1 <= len(space) <= 5, path.name
        source = path.read_text()
        assert tune.with_values(source, defaults) == source, path.name   # trial 0 is the file itself
        # A file `tune --write` wrote is read back by score-all's table; one it did not write reads as untuned.
        study = tune.recorded(source)
        assert ("Tuned: `harness tune`" in source) == (study is not None), path.name
        if study:
            assert study["study"].startswith(path.stem + "-") and study["trials"] >= 40 and 0 < study["dev_score"] < 1
    assert tune.recorded("def f(): pass\n") is None


@pytest.mark.parametrize("interim, stopped", [(2.5, True), (3.0, False), (8.5, False)])
def test_the_pruner_stops_the_bottom_quarter_at_half_the_runs(interim, stopped):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", pruner=tune.pruner())
    for v in range(1, 9):   # eight earlier trials, 1..8 at step 4: their 25th percentile is 2.75
        t = study.ask()
        t.report(float(v), step=4)
        study.tell(t, float(v))
    for _ in range(8):      # trials that failed after reporting (over the budget) set no bar, however high
        t = study.ask()
        t.set_user_attr(tune.FAILED, "over the budget")
        t.report(100.0, step=4)
        study.tell(t, 0.0)
    t = study.ask()
    t.report(interim, step=4)
    assert t.should_prune() == stopped


def test_the_best_written_is_the_best_within_the_headroom(tmp_path):
    """TPE's best trials sit at the budget's edge, which another machine's speed can tip over: the
    trial `--write` takes is the best whose runs used at most HEADROOM of the budget, and a study
    with none such says so rather than writing an edge."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")

    def add(score, share):
        t = study.ask()
        t.set_user_attr("values", {"LR": score})
        t.set_user_attr("retrain_fraction", share * protocol.DEFAULT.unlearn_budget_fraction)
        t.set_user_attr("budget_share", share)
        study.tell(t, score)

    add(0.30, 0.99)               # the study's best, at the edge
    add(0.20, tune.HEADROOM)      # the best within the headroom
    add(0.10, 0.50)
    summary = tune.summarise(study, "s", tmp_path / "s.db", 8, protocol.DEFAULT, {})
    assert summary["best_value"] == 0.20 and summary["best_params"] == {"LR": 0.20}
    assert summary["n_over_headroom"] == 1 and summary["top"][0]["score"] == 0.30
    assert "99%*" in tune.table(summary) and "trial 1" in tune.table(summary)
    study = optuna.create_study(direction="maximize")   # only an edge
    add(0.30, 0.99)
    with pytest.raises(RuntimeError, match="no complete trial within 85% of the budget"):
        tune.summarise(study, "s", tmp_path / "s.db", 8, protocol.DEFAULT, {})
