"""`harness tune`: a method's hyperparameters searched with Optuna on its profile's dev pool.

A method file declares what may change beside its defaults, as literals the harness reads without
importing the file:

    LR = 1e-3
    EPOCHS = 2
    SEARCH_SPACE = {"LR": ("log", 1e-4, 1e-1), "EPOCHS": ("int", 1, 3), "BATCH": [32, 64, 128]}

("float", lo, hi) is uniform, ("log", lo, hi) log-uniform, ("int", lo, hi) an integer in [lo, hi],
and a list is a choice. Each trial writes the file again with its values as the defaults and scores
that copy like any submission (the dev pool, the protocol budget, the sandbox): a trial over the
budget, or one whose run fails, is a failed trial: it scores 0, as a failed submission does, and
TPE is told it broke a constraint, so the search learns to stay out of its region (Optuna's sampler
ignores trials in its FAIL state, and kept drawing over-budget epoch counts). The study lives in
SQLite under results/tune/, so a killed tune resumes and `--trials` can grow it; `--write` puts the
best trial's values into the file's defaults and says so in its docstring: the best trial whose runs
used at most HEADROOM of the budget, since values tuned to its very edge fail on a machine of
another speed profile."""
from __future__ import annotations

import ast
import datetime as dt
import hashlib
import math
import re
import sys
import textwrap
from pathlib import Path

import numpy as np

from harness import metric, paths, runner
from harness.protocol import Protocol, dev

SPACE_NAME = "SEARCH_SPACE"
DEFAULT_K = 8          # runs per trial: a dev score narrow enough to order trials, at a quarter of default's K
TUNE_SEED = 0          # TPE's seed: the same study from nothing suggests the same first trials
STARTUP_TRIALS = 10    # random trials before TPE models the good ones (Optuna's default)
PRUNE_AFTER = 5        # trials complete within the budget before the pruner stops any
PRUNE_KEEP = 75.0      # percent of trials the pruner keeps: it stops the bottom quarter at half their runs
SIGNIFICANT = 3        # a suggested float keeps 3 significant digits: what is scored is what a file can say
KINDS = ("float", "log", "int")
FAILED = "failed"      # user attribute of a trial that failed (budget, error): it scores 0 and is never best
STUDY_VERSION = 2      # in the study's name; 2: failed trials no longer set the pruner's bar
# The best trial, the one --write puts in the file, is the best whose runs took at most this share
# of the budget on average. TPE's best trials sit at the budget's edge, and a machine's speed at a
# method's own operations, against its speed at a retrain, differs between machines (0.82-1.26x
# between this project's two kinds of 2-core machine): files tuned to the edge on one failed the
# budget on the other. The rest of the budget is for that.
HEADROOM = 0.85


# ---- the file ------------------------------------------------------------------------------------

def _assignments(tree: ast.Module) -> dict[str, ast.Assign]:
    """Top-level `NAME = value` statements, by name (the last one wins, as Python's would)."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node
    return found


def _literal(node: ast.AST, what: str):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{what} must be a literal (numbers, strings, lists, tuples): harness tune reads the "
                         f"file without running it") from None


def read_space(path: Path) -> tuple[dict, dict]:
    """(space, defaults) of a method file: SEARCH_SPACE checked, and each name's literal default."""
    source = Path(path).read_text()
    tree = ast.parse(source)
    assigned = _assignments(tree)
    if SPACE_NAME not in assigned:
        raise ValueError(f"{path} declares no {SPACE_NAME}: add e.g. {SPACE_NAME} = {{\"LR\": (\"log\", 1e-4, 1e-1)}} "
                         f"beside the defaults it searches (docs/methods.md, 'Tuning')")
    space = _literal(assigned[SPACE_NAME].value, f"{SPACE_NAME} in {path}")
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{SPACE_NAME} in {path} must be a non-empty dict of NAME: (kind, low, high) or [choices]")
    defaults = {}
    for name, spec in space.items():
        if name not in assigned or name == SPACE_NAME:
            raise ValueError(f"{SPACE_NAME} in {path} names {name!r}, which the file does not assign at its top "
                             f"level: write its default as {name} = <value> above {SPACE_NAME}")
        default = _literal(assigned[name].value, f"{name}'s default in {path}")
        _check_spec(name, spec, default, path)
        defaults[name] = default
    return space, defaults


def _check_spec(name: str, spec, default, path) -> None:
    where = f"{SPACE_NAME}[{name!r}] in {path}"
    if isinstance(spec, list):
        if len(spec) < 2 or not all(type(v) in (bool, int, float, str) or v is None for v in spec):
            raise ValueError(f"{where}: a choice is a list of two or more numbers, strings, True/False or None")
        if default not in spec:
            raise ValueError(f"{where}: the default {name} = {default!r} is not one of the choices {spec}")
        return
    if not (isinstance(spec, tuple) and len(spec) == 3 and spec[0] in KINDS):
        raise ValueError(f"{where} must be (kind, low, high) with kind one of {', '.join(KINDS)}, or a list of choices "
                         f"(got {spec!r})")
    kind, lo, hi = spec
    numbers = (int,) if kind == "int" else (int, float)
    if not (type(lo) in numbers and type(hi) in numbers and lo < hi and (kind != "log" or lo > 0)):
        raise ValueError(f"{where}: need low < high, {'integers' if kind == 'int' else 'numbers'}"
                         f"{', low > 0' if kind == 'log' else ''} (got {lo!r}, {hi!r})")
    if type(default) not in numbers or not lo <= default <= hi:
        raise ValueError(f"{where}: the default {name} = {default!r} is outside [{lo}, {hi}]: widen the range "
                         f"or change the default")


def code_hash(source: str, names) -> str:
    """The file's code, without its docstring, comments, layout and the searched defaults: what a
    study's trials share. `--write` leaves it as it was, so a written file extends its own study."""
    tree = ast.parse(source)
    body = tree.body[1:] if tree.body and isinstance(tree.body[0], ast.Expr) and \
        isinstance(tree.body[0].value, ast.Constant) and isinstance(tree.body[0].value.value, str) else tree.body
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and getattr(node.targets[0], "id", None) in names:
            node.value = ast.Constant(None)
    return hashlib.sha256(ast.dump(ast.Module(body=body, type_ignores=[])).encode()).hexdigest()[:8]


def with_values(source: str, values: dict) -> str:
    """The file with each named top-level default replaced by its new value; every other byte kept
    (a default that keeps its value keeps its spelling too: trial 0 is the file itself)."""
    assigned = _assignments(ast.parse(source))
    values = {n: v for n, v in values.items()
              if not (type(v) is type(old := ast.literal_eval(assigned[n].value)) and v == old)}
    lines = source.splitlines(keepends=True)
    # Last statement first: an edit never moves the positions of the ones still to do.
    for name in sorted(values, key=lambda n: (assigned[n].value.lineno, assigned[n].value.col_offset), reverse=True):
        v = assigned[name].value
        start = sum(len(x) for x in lines[:v.lineno - 1]) + len(lines[v.lineno - 1].encode()[:v.col_offset].decode())
        end = sum(len(x) for x in lines[:v.end_lineno - 1]) + \
            len(lines[v.end_lineno - 1].encode()[:v.end_col_offset].decode())
        source = source[:start] + repr(values[name]) + source[end:]
        lines = source.splitlines(keepends=True)
    return source


def with_tuned_line(source: str, text: str, width: int = 100) -> str:
    """The file with its docstring's "Tuned:" paragraph (to the next blank line) replaced by `text`,
    or `text` added as the docstring's last paragraph; the code is not touched."""
    tree = ast.parse(source)
    first = tree.body[0] if tree.body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)):
        raise ValueError("the file has no module docstring to record the tuning in: add one (submissions/template.py "
                         "says what it holds)")
    lines = source.splitlines(keepends=True)
    doc = "".join(lines[first.lineno - 1:first.end_lineno])
    closed = doc.rstrip()
    quote, after, inner = closed[-3:], doc[len(closed):], closed[:-3]
    text_lines = inner.rstrip("\n").split("\n")
    para = textwrap.fill(text, width=width, break_on_hyphens=False).split("\n")
    at = next((i for i, line in enumerate(text_lines) if line.lstrip().startswith("Tuned:")), None)
    if at is None:
        text_lines += ["", *para]
    else:
        end = at + 1
        while end < len(text_lines) and text_lines[end].strip():
            end += 1
        text_lines[at:end] = para
    doc = "\n".join(text_lines) + ("\n" if inner.endswith("\n") else "") + quote + after
    return "".join(lines[:first.lineno - 1]) + doc + "".join(lines[first.end_lineno:])


TUNED = "Tuned: `harness tune`, study"   # how write_best's paragraph starts, and what recorded() reads
_RECORDED = re.compile(re.escape(TUNED) + r" (\S+): (\d+) trials .*? dev score ([0-9.]+)")


def recorded(source: str) -> dict | None:
    """What a method file's docstring says `tune --write` found ({study, trials, dev_score}), or None
    for a file that was not tuned by `harness tune`: the README's table reads the shipped file."""
    doc = ast.get_docstring(ast.parse(source)) or ""
    found = _RECORDED.search(" ".join(doc.split()))
    return found and {"study": found[1], "trials": int(found[2]), "dev_score": float(found[3])}


# ---- a trial --------------------------------------------------------------------------------------

def _round(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT}g}")


def suggest(trial, space: dict, defaults: dict) -> dict:
    """A trial's values; floats rounded to SIGNIFICANT digits, except a default (trial 0 is the file
    as it is)."""
    values = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            values[name] = spec[trial.suggest_categorical(name, list(range(len(spec))))] if _by_index(spec) \
                else trial.suggest_categorical(name, spec)
        elif spec[0] == "int":
            values[name] = trial.suggest_int(name, spec[1], spec[2])
        else:
            x = trial.suggest_float(name, spec[1], spec[2], log=spec[0] == "log")
            values[name] = defaults[name] if x == defaults[name] else _round(x)   # 4 stays 4, not 4.0
    return values


def interim_score(retrain_conf: np.ndarray, pool, records: dict) -> float:
    """The score of the runs finished so far (>= 2) against the whole pool: what the pruner sees."""
    runs = [records[i] for i in sorted(records)]
    conf = np.array([r["forget_confidences"] for r in runs], dtype=np.float64)          # [j, N]
    return metric.competition_score(retrain_conf, conf, [r["retain_acc"] for r in runs], pool.accuracies("retain_acc"),
                                    [r["test_acc"] for r in runs], pool.accuracies("test_acc"))


def study_paths(submission: Path, protocol: Protocol, k: int) -> tuple[str, Path]:
    """(study name, SQLite file): one study per method code, dev pool and K."""
    source = submission.read_text()
    space, _ = read_space(submission)
    name = f"{submission.stem}-{code_hash(source, set(space))}-{dev(protocol).name}-k{k}-v{STUDY_VERSION}"
    return name, paths.results_dir() / "tune" / f"{name}.db"


def counted(trial) -> bool:
    """A trial that counts towards --trials: finished (scored, failed or pruned). A trial cut short
    by kill -9 or Ctrl-C is in Optuna's FAIL state and does not count (another is run)."""
    import optuna

    return trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


# ---- the study ------------------------------------------------------------------------------------

def tune(submission_path: str, protocol: Protocol, trials: int, k: int | None = None, workers: int | None = None,
         progress: bool = True) -> dict:
    """Run the study to `trials` counted trials (resuming it), then summarise it."""
    import optuna

    from harness import reference_pool, score

    submission = runner.Submission.load(submission_path)
    if submission.oracle_budget_fraction is not None:
        raise ValueError(f"{submission_path} is an oracle ({runner.ORACLE_NAME}): tuning searches under the protocol "
                         f"budget, which an oracle does not keep")
    if trials < 1:
        raise ValueError(f"--trials must be at least 1 (got {trials})")
    k = score.population(protocol, DEFAULT_K if k is None else k)
    space, defaults = read_space(submission.path)
    source = submission.path.read_text()
    name, db = study_paths(submission.path, protocol, k)
    folder = db.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    pool_protocol = dev(protocol)
    workers = workers or reference_pool.default_workers(pool_protocol)
    pool = reference_pool.ensure(pool_protocol, k, workers=workers, progress=progress)
    retrain_conf = pool.forget_confidences()                                                # [K, N]
    half = max(2, k // 2)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is said in one line, below

    def objective(trial) -> float:
        values = suggest(trial, space, defaults)
        trial.set_user_attr("values", values)
        path = folder / f"trial-{trial.number:04d}.py"
        paths.atomic_write_bytes(path, with_values(source, values).encode())

        looked = False

        def on_run(records: dict) -> None:
            # One look, at runs 0 .. half-1: the pruner compares every trial at the same step, on
            # the same runs, and never compounds a noisy look at each step (at K=8 a median test
            # after every run stopped 32 of a study's 40 trials). Those runs, not the first half to
            # finish: which runs finish first, or were stored by an earlier study, must not change
            # what is pruned.
            nonlocal looked
            if not looked and all(i in records for i in range(half)):
                looked = True
                trial.report(interim_score(retrain_conf, pool, {i: records[i] for i in range(half)}), step=half)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"after {half} of {k} runs")

        try:
            result = score.score(str(path), pool_protocol, k=k, workers=workers, progress=False, record=False,
                                 on_run=on_run)
        except runner.RunError as e:   # over the budget, or a run failed: the trial fails, the study goes on
            reason = str(e).splitlines()[0]
            trial.set_user_attr(FAILED, reason)
            trial.set_constraint(FAILED, 1.0)   # infeasible: TPE counts it among the bad trials
            print(f"trial {trial.number} failed ({', '.join(f'{n}={v!r}' for n, v in values.items())}): {reason}",
                  file=sys.stderr)
            return 0.0
        trial.set_user_attr("score_ci95", result["score_ci95"])
        mean = result["seconds"]["unlearning_mean"]
        trial.set_user_attr("retrain_fraction", mean / result["seconds"]["retrain_mean"])
        trial.set_user_attr("budget_share", mean / result["budget"]["seconds"])
        trial.set_user_attr("submission_sha256", result["submission_sha256"])
        return result["score"]

    with paths.locked(folder / ".lock", f"tuning {name}"):
        storage = f"sqlite:///{db}"
        study = optuna.create_study(
            study_name=name, storage=storage, load_if_exists=True, direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=TUNE_SEED, n_startup_trials=STARTUP_TRIALS),
            pruner=pruner())
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            # Under the lock, a running trial is one whose process died (kill -9): it does not count.
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if not study.trials:
            study.enqueue_trial(_as_params(defaults, space))   # trial 0: the file as it is
        done = sum(counted(t) for t in study.get_trials(deepcopy=False))
        todo = max(0, trials - done)
        if todo:
            if progress:
                print(f"tuning {submission.name} on {pool_protocol.name}, K={k}: {todo} trial(s) to go "
                      f"({done} done; study {name}, {db})", file=sys.stderr)
            # An interrupted trial stops the study: run tune again to resume.
            study.optimize(objective, n_trials=todo, show_progress_bar=progress)
    summary = summarise(study, name, db, k, pool_protocol, space)
    summary["plot"] = str(plot(study, folder.with_suffix(".png")))
    return summary


def pruner():
    """A percentile pruner: a trial whose interim score is below the (100 - PRUNE_KEEP)th percentile
    of the interim scores, at the same step, of the earlier trials that completed within the budget
    is stopped; it keeps the top PRUNE_KEEP percent. Optuna's PercentilePruner would also count the
    trials that failed after reporting: a run past the budget often forgets well, so those set a bar
    that stopped most of the trials that fit (reset_distil: none of 40 completed)."""
    import optuna

    class FeasiblePercentile(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            step = trial.last_step
            if step is None:
                return False
            bar = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False, states=(
                optuna.trial.TrialState.COMPLETE,)) if FAILED not in t.user_attrs and step in t.intermediate_values]
            return len(bar) >= PRUNE_AFTER and trial.intermediate_values[step] < np.percentile(bar, 100 - PRUNE_KEEP)

    return FeasiblePercentile()


def _as_params(values: dict, space: dict) -> dict:
    """Optuna's params for these values (a choice of True/False/None is stored as its index)."""
    return {n: space[n].index(v) if isinstance(space[n], list) and _by_index(space[n]) else v
            for n, v in values.items()}


def _by_index(choices: list) -> bool:
    """Optuna stores a choice among True/False/None by its index (1 == True would mix them up)."""
    return any(isinstance(c, bool) or c is None for c in choices)


def budget_share(trial, pool_protocol: Protocol) -> float:
    """A complete trial's runs' mean seconds as a share of its budget. Trials stored before that was
    recorded have their share of a retrain, divided by the protocol's fraction (no floor binds on
    the profiles those studies ran on)."""
    share = trial.user_attrs.get("budget_share")
    return share if share is not None else trial.user_attrs["retrain_fraction"] / pool_protocol.unlearn_budget_fraction


def summarise(study, name: str, db: Path, k: int, pool_protocol: Protocol, space: dict) -> dict:
    import optuna

    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == states.COMPLETE and FAILED not in t.user_attrs]
    kept = [t for t in complete if budget_share(t, pool_protocol) <= HEADROOM]
    if not kept:
        raise RuntimeError(f"study {name} has no complete trial within {HEADROOM:.0%} of the budget yet ("
                           f"{len(trials)} tried, {len(complete)} complete): read them with `optuna-dashboard "
                           f"sqlite:///{db}`, fix the file or its {SPACE_NAME}, or run tune again with more --trials")
    best = max(kept, key=lambda t: (t.value, -t.number))
    return {
        "study": name, "storage": f"sqlite:///{db}", "profile": pool_protocol.name, "k": k,
        "best_trial": best.number, "best_params": best.user_attrs["values"], "best_value": best.value,
        "best_ci95": best.user_attrs.get("score_ci95"),
        "best_retrain_fraction": best.user_attrs.get("retrain_fraction"),
        "best_budget_share": budget_share(best, pool_protocol), "headroom": HEADROOM,
        "n_over_headroom": len(complete) - len(kept),
        "n_trials": sum(counted(t) for t in trials), "n_complete": len(complete),
        "n_pruned": sum(t.state == states.PRUNED for t in trials),
        "n_failed": sum(t.state == states.COMPLETE and FAILED in t.user_attrs for t in trials),
        "top": [{"trial": t.number, "score": t.value, "ci95": t.user_attrs.get("score_ci95"),
                 "retrain_fraction": t.user_attrs.get("retrain_fraction"),
                 "budget_share": budget_share(t, pool_protocol), "params": t.user_attrs["values"]}
                for t in sorted(complete, key=lambda t: (-t.value, t.number))[:5]],
    }


def table(summary: dict) -> str:
    head = (f"study {summary['study']} ({summary['storage']}): {summary['n_trials']} trials, "
            f"{summary['n_complete']} complete, {summary['n_pruned']} pruned, {summary['n_failed']} failed; "
            f"dev pool {summary['profile']}, K={summary['k']}; best within {summary['headroom']:.0%} of the budget: "
            f"trial {summary['best_trial']}")
    rows = [f"{'trial':>5}  {'dev score':>9}  {'95% CI':>17}  {'time':>6}  {'budget':>6}  values"]
    for t in summary["top"]:
        ci = t["ci95"] or [math.nan, math.nan]
        rows.append(f"{t['trial']:>5}  {t['score']:9.4f}  [{ci[0]:.4f}, {ci[1]:.4f}]  {t['retrain_fraction']:6.2f}  "
                    f"{t['budget_share']:5.0%}{'*' if t['budget_share'] > summary['headroom'] else ' '}  "
                    + ", ".join(f"{n}={repr(v)}" for n, v in t["params"].items()))
    return "\n".join([head, *rows, "time: a run's mean seconds as a fraction of one retrain; budget: as a share of "
                      f"the budget (* past the {summary['headroom']:.0%} a written trial may use)"])


def plot(study, out: Path) -> Path:
    """The optimisation history (every trial's dev score, pruned and failed ones marked, the best so
    far) and the parameters' importances, in one figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    done = [t for t in trials if t.state == states.COMPLETE and FAILED not in t.user_attrs]
    ax.scatter([t.number for t in done], [t.value for t in done], s=18, label="complete")
    pruned = [t for t in trials if t.state == states.PRUNED and t.intermediate_values]
    ax.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
               s=18, marker="x", label="pruned (last interim score)")
    failed = [t.number for t in trials if FAILED in t.user_attrs]
    if failed:
        ax.scatter(failed, [0.0] * len(failed), s=18, marker="v", label="failed (budget or error), at 0")
    best, line = -math.inf, []
    for t in sorted(done, key=lambda t: t.number):
        best = max(best, t.value)
        line.append((t.number, best))
    if line:
        ax.step(*zip(*line), where="post", color="k", lw=1, label="best so far")
    ax.set(xlabel="trial", ylabel="dev score", title="optimisation history")
    ax.legend(fontsize=8)
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=TUNE_SEED)
        importance = optuna.importance.get_param_importances(study, evaluator=evaluator) if len(done) >= 2 else {}
    except (ValueError, RuntimeError):   # too few distinct trials to fit the importance model
        importance = {}
    names = list(importance)[::-1]
    bx.barh(names, [importance[n] for n in names])
    bx.set(xlabel="importance (fANOVA, share of the score's variance)",
           title="parameter importances" if names else "parameter importances: too few complete trials")
    fig.suptitle(study.study_name, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out


def write_best(submission_path: str, summary: dict) -> Path:
    """Put the best trial's values into the file's defaults and the study into its docstring's
    "Tuned:" paragraph. Only those two change; the result must still load as a submission."""
    path = Path(submission_path)
    source = path.read_text()
    date = dt.date.today().isoformat()
    values = ", ".join(f"{n} = {repr(v)}" for n, v in summary["best_params"].items())
    ci = summary["best_ci95"]
    text = (f"{TUNED} {summary['study']}: {summary['n_trials']} trials "
            f"({summary['n_complete']} complete, {summary['n_pruned']} pruned, {summary['n_failed']} failed; TPE, "
            f"pruner at half the runs) on the {summary['profile']} pool at K={summary['k']}, {date}. Best within "
            f"{summary['headroom']:.0%} of the budget, trial {summary['best_trial']}: dev score "
            f"{summary['best_value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
            + f" with {values}: the file runs these, where the text above gives other values.")
    new = with_tuned_line(with_values(source, summary["best_params"]), text)
    ast.parse(new)
    paths.atomic_write_bytes(path, new.encode())
    runner.Submission.load(path)
    return path
