"""The method library (`submissions/`), the dev pool and `harness score-all`, through the CLI."""
from __future__ import annotations

import ast
import json
import re
import shutil

import pytest

from conftest import BAD, SUBMISSIONS
from harness import cli, leaderboard, protocol, reference_pool, score_all
from conftest import run_cli
from test_score import last_json

METHODS = score_all.methods(SUBMISSIONS)


def test_the_library_holds_at_least_twenty_methods_besides_the_template():
    names = {p.name for p in METHODS}
    assert "template.py" not in names
    assert len(names) >= 20, sorted(names)
    assert {"noop.py", "finetune.py", "retrain.py"} <= names


@pytest.mark.parametrize("path", METHODS, ids=lambda p: p.stem)
def test_every_method_documents_its_source_and_what_was_tuned(path):
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert len(doc) > 200, f"{path.name}: the docstring must give the source, the idea and every hyperparameter"
    assert "Tuned:" in doc, f"{path.name}: the docstring must say what was tuned on what ('Tuned: ...')"


@pytest.mark.parametrize("path", METHODS, ids=lambda p: p.stem)
def test_every_method_passes_check(path, quick_pool, capsys):
    # In this process (the CLI's own entry point): the run itself is a sandboxed child either way.
    code = cli.main(["check", str(path), "--quiet"])
    out = capsys.readouterr()
    assert code == 0 and out.out.startswith("ok: "), out.err[-2000:]


def test_score_all_scores_every_method_on_quick_then_resumes_without_rescoring(quick_pool, results):
    """Every method is ranked, or fails because a run, or the mean of its runs, went past the
    competition's budget (and the line says by how much); the oracle's row is unranked, under its
    own budget. A second score-all reuses every stored result."""
    out = run_cli("score-all", "--profile", "quick", "--k", "2", "--quiet")
    table = [line for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
    failed = {line.split(": ")[1]: line for line in out.stderr.splitlines() if line.startswith("error: ")}
    assert out.returncode == (2 if failed else 0), out.stderr[-3000:]
    shown = {line.split(" | ")[1] for line in table}
    assert shown | {name.removesuffix(".py") for name in failed} == {p.stem for p in METHODS}
    assert not shown & {name.removesuffix(".py") for name in failed}
    for line in failed.values():
        assert re.search(r"exceeded its time budget: (it took \d\.\d\d s, \d\.\dx|still running)|"
                         r"exceeded their time budget on average: they took \d\.\d\d s, \d\.\dx", line), line
    oracle = next(line for line in table if " retrain " in line)
    assert oracle.startswith("| - | retrain |") and "oracle, own budget (3 x one retrain)" in oracle
    assert all("within" in line for line in table), out.stdout   # no stored run past its limit
    # Every pair of ranked methods was compared, paired: at K=2 nothing scores points (F = 0, so
    # every score is 0), so the data separates no two of them and each is tied with every other.
    head = next(line for line in out.stdout.splitlines() if line.startswith("| rank"))
    assert head.endswith("| tied with |")
    # The methods `harness tune` re-tuned show their study's trials and dev score, read from their files.
    studies = score_all.tuned_studies(SUBMISSIONS)
    assert head.startswith("| rank | method | tuned: trials | dev score | score |" if studies else "| rank | method | score |")
    for line in table if studies else []:
        name, trials, dev = line.split(" | ")[1:4]
        assert (trials, dev) == ((str(studies[name]["trials"]), f"{studies[name]['dev_score']:.4f}") if name in studies
                                 else ("-", "-")), line
    ranked = [line for line in table if not line.startswith("| - |")]
    for line in ranked:
        rank = int(line.split(" | ")[0].removeprefix("| "))
        assert line.split(" | ")[-1].removesuffix(" |") == leaderboard.rank_list(
            n for n in range(1, len(ranked) + 1) if n != rank), line
    ties = json.loads((results / "comparisons" / "quick-k2.json").read_text())
    assert len(ties["ids"]) == len(ranked) and ties["level"] == 0.05
    board = run_cli("leaderboard", "--profile", "quick")
    assert "tied with" in board.stdout and "Holm" in board.stdout, board.stdout
    written = sorted(results.glob("*.json"))
    assert len(written) == len(table)
    for f in written:
        r = json.loads(f.read_text())
        assert r["profile"] == "quick" and r["k"] == 2
        assert r["budget"]["competition"] == (r["submission_name"] != "retrain")
        assert r["budget"]["oracle"] == (r["submission_name"] == "retrain")

    again = run_cli("score-all", "--profile", "quick", "--k", "2", "--quiet")
    assert again.stdout.count("stored result") == len(table)
    rescored = [line for line in again.stdout.splitlines() if ": scoring" in line]
    assert len(rescored) == len(failed)                                  # only the failed ones ran again
    assert set(written) <= set(results.glob("*.json"))


def test_score_all_reports_a_failing_method_and_keeps_the_others(quick_pool, results, tmp_path):
    folder = tmp_path / "methods"
    folder.mkdir()
    shutil.copy(SUBMISSIONS / "noop.py", folder / "noop.py")
    shutil.copy(SUBMISSIONS / "template.py", folder / "template.py")   # the contract, never scored
    for bad in ("raises.py", "forges_status.py", "huge_weights.py"):  # a failing method, and two that attack the scorer
        shutil.copy(BAD / bad, folder / bad)
    out = run_cli("score-all", "--submissions", str(folder), "--profile", "quick", "--k", "2", "--quiet")
    assert out.returncode == 2
    assert "error: raises.py: run " in out.stderr and "ZeroDivisionError" in out.stderr, out.stderr
    assert "error: forges_status.py: run " in out.stderr and "error: huge_weights.py: run " in out.stderr, out.stderr
    assert "3 method(s) failed" in out.stderr and "Traceback" not in out.stderr.split("3 method(s) failed")[0]
    assert "| 1 | noop |" in out.stdout and "template" not in out.stdout
    assert [json.loads(f.read_text())["submission_name"] for f in results.glob("*.json")] == ["noop"]

    empty = run_cli("score-all", "--submissions", str(tmp_path), "--profile", "quick", "--k", "2")
    assert empty.returncode == 2 and "no method files" in empty.stderr.strip().splitlines()[-1]


def test_score_all_separate_grows_k_for_tied_neighbours_and_publishes_only_the_ranking(own_cache, results, tmp_path):
    """At K=2 no method scores points, so every neighbour is tied; --separate 8 scores the tied
    ones again at K=4 and K=8 (runs kept, scores unpublished) and says where each pair stopped."""
    folder = tmp_path / "methods"
    folder.mkdir()
    for name in ("noop.py", "finetune.py", "gradient_ascent.py"):
        shutil.copy(SUBMISSIONS / name, folder / name)
    out = run_cli("score-all", "--submissions", str(folder), "--profile", "quick", "--k", "2", "--separate", "8",
                  "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    section = out.stdout.split("neighbours, compared at K up to 8 (those scores are not published):")[1]
    lines = [line for line in section.splitlines() if line.startswith("ranks ")]
    assert [line.split(" (")[0] for line in lines] == ["ranks 1-2", "ranks 2-3"], out.stdout
    for line in lines:
        assert re.search(r": (separated at K=[48] \(Holm-adjusted p = 0\.0\d\d\)|still tied at K=8, the cap)", line), line
    assert "separating 2 tied pair(s) of neighbours: 3 method(s) at K=4" in out.stderr, out.stderr
    assert sorted(json.loads(f.read_text())["k"] for f in results.glob("*.json")) == [2, 2, 2]
    assert len(list((own_cache.dir / "runs").glob("noop-*/run_0003.json"))) == 1   # K=4 ran (and kept) its runs
    bad = run_cli("score-all", "--submissions", str(folder), "--profile", "quick", "--k", "2", "--separate", "2")
    assert bad.returncode == 2 and "the cap must be above the score's K=2" in bad.stderr


def _result(name: str, score: float, competition: bool = True) -> dict:
    return {"submission_name": name, "score": score, "budget": {"competition": competition}}


def test_standing_is_the_mean_rank_over_settings_with_failures_last():
    settings = {
        "identity": ([_result("a", 0.3), _result("b", 0.2), _result("c", 0.1), _result("oracle", 0.9, False)], {}),
        "random": ([_result("a", 0.1), _result("b", 0.1)], {"c.py": "over the budget"}),
        "class": ([_result("a", 0.05), _result("b", 0.2), _result("c", 0.3)], {}),
    }
    rows = score_all.standing(settings)
    assert [row["method"] for row in rows] == ["a", "b", "c"]   # the oracle is never ranked
    by = {row["method"]: row for row in rows}
    assert by["a"]["ranks"] == {"identity": 1, "random": 1.5, "class": 3}   # equal scores share their ranks
    assert by["c"]["ranks"]["random"] == 3 and by["c"]["failed"] == ["random"]   # after both that ranked
    assert by["a"]["mean_rank"] == pytest.approx(5.5 / 3) and by["c"]["mean_rank"] == pytest.approx(7 / 3)
    assert by["b"]["sd"] == pytest.approx(0.2887, abs=1e-4)   # ranks 2, 1.5, 2: sample sd
    table = score_all.standing_table(rows, list(settings))
    assert "| 3 | c | 2.33 | 1.15 | 3 | 3 × | 1 |" in table


def test_score_all_over_scenarios_ranks_in_each_then_stands_by_mean_rank(quick_pool, results, tmp_path):
    folder = tmp_path / "methods"
    folder.mkdir()
    for name in ("noop.py", "finetune.py"):
        shutil.copy(SUBMISSIONS / name, folder / name)
    shutil.copy(BAD / "sleeps.py", folder / "sleeps.py")   # fails the budget in every scenario
    out = run_cli("score-all", "--submissions", str(folder), "--profile", "quick", "--k", "4",
                  "--scenarios", "identity,random,class", "--quiet")
    assert out.returncode == 2 and out.stderr.count("error: sleeps.py: run") == 3, out.stderr[-3000:]
    for name in ("identity (quick)", "random (quick+random-0.02)", "class (quick+class-0)"):
        assert f"## scenario {name}" in out.stdout
    table = out.stdout.split("standing over 3 scenarios")[1]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row[1] for row in rows][-1] == "sleeps" and rows[-1][4:] == ["3 ×", "3 ×", "3 × |"]
    assert {row[1] for row in rows} == {"noop", "finetune", "sleeps"}
    stored = [json.loads(f.read_text()) for f in results.glob("*.json")]
    assert sorted(r["scenario"] for r in stored) == ["class", "class", "identity", "identity", "random", "random"]
    # Each scenario's ranking is the plain score-all's: finetune above noop in the identity one.
    identity = {r["submission_name"]: r["score"] for r in stored if r["scenario"] == "identity"}
    rank = {row[1]: row[4] for row in rows}
    assert rank["finetune"] == ("1" if identity["finetune"] > identity["noop"] else "2")
    bad = run_cli("score-all", "--profile", "quick", "--scenarios", "identity,identity")
    assert bad.returncode == 2 and "two or more different scenarios" in bad.stderr
    bad = run_cli("score-all", "--profile", "quick", "--scenarios", "identity,random", "--scenario", "class")
    assert bad.returncode == 2 and "pass one of them" in bad.stderr


def test_dev_pool_has_the_same_original_and_disjoint_seeds(quick_pool, results):
    dev = protocol.get("quick", "dev")
    assert protocol.get("quick-dev") == dev and dev.name == "quick-dev"
    out = run_cli("score", str(SUBMISSIONS / "finetune.py"), "--profile", "quick", "--pool", "dev", "--k", "2",
                  "--quiet", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    r = last_json(out.stdout)
    assert r["profile"] == "quick-dev"
    # Secret seeds: the result names none, and the dev pool's derive from another key than the
    # ranking pool's (whoever holds the cache can list both: disjoint).
    assert r["seeds"]["retrain"] is None
    dev_pool = reference_pool.load(dev, 2)
    assert dev_pool.dir != quick_pool.dir and dev_pool.seed_commitment != quick_pool.seed_commitment
    dev_retrain = {reference_pool.seed_of(dev, j) for j in range(64)}
    rank_retrain = {reference_pool.seed_of(protocol.QUICK, j) for j in range(64)}
    rank_unlearn = {protocol.QUICK.unlearn_seed0 + i for i in range(512)}
    assert not dev_retrain & (rank_retrain | rank_unlearn)
    assert r["seeds"]["unlearn"] and not set(r["seeds"]["unlearn"]) & (rank_retrain | rank_unlearn)
    # The same original model: the dev pool unlearns exactly what the ranking pool does.
    assert dev_pool.original["weights_sha256"] == quick_pool.original["weights_sha256"]

    board = run_cli("leaderboard", "--profile", "quick", "--pool", "dev")
    assert board.returncode == 0 and "finetune" in board.stdout, board.stderr
    ranking = run_cli("leaderboard", "--profile", "quick")
    assert ranking.stdout.startswith("No results for profile 'quick'")  # dev results never rank
