"""`harness score-all`: score every method in `submissions/` on one profile and pool, and rank them.

Resumable twice over: finished runs are reused by the runner, and a method whose result for the
same file (sha256), protocol, pool, K, budget and runner already sits in the results folder is not
scored again. A method that fails is reported and skipped; the others still get scored."""
from __future__ import annotations

import json
from pathlib import Path

from harness import paths, runner, score
from harness.protocol import PROTOCOL_VERSION, Protocol

TEMPLATE = "template.py"
SEPARATE_FACTOR = 4  # --separate without a cap grows K up to this many times the score's


def methods(folder: Path) -> list[Path]:
    """Every method file in the folder, by name; the template is the contract, not a method."""
    found = sorted(p for p in Path(folder).glob("*.py") if p.name != TEMPLATE and not p.name.startswith("_"))
    if not found:
        raise FileNotFoundError(f"no method files (*.py) in {folder}: point --submissions at a folder of methods")
    return found


def stored_results(results: Path | None = None) -> list[dict]:
    """Every runner result in the results folder, read once per score-all."""
    found = []
    for f in sorted(Path(results or paths.results_dir()).glob("*.json")):
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError):
            continue   # a stray or damaged file is the leaderboard's business, not a reason to stop
        if isinstance(r, dict) and r.get("source", "runner") == "runner":
            found.append(r)
    return found


def stored(protocol: Protocol, path: Path, k: int, found: list[dict]) -> dict | None:
    """The latest of `found` made by this very file on this protocol, pool and K, under the budget
    the file gets (the protocol's, or the oracle's own it declares), or None."""
    sub = runner.Submission.load(path)
    wanted = json.loads(json.dumps(protocol.to_dict()))   # as stored: tuples become lists
    oracle = sub.oracle_budget_fraction
    best = None
    for r in found:
        budget = r.get("budget") or {}
        same_budget = (budget.get("oracle") is True and budget.get("fraction") == oracle if oracle is not None
                       else budget.get("protocol_budget") is True and not budget.get("oracle"))
        same = (r.get("submission_sha256") == sub.sha256 and r.get("profile") == protocol.name and r.get("k") == k
                and r.get("protocol") == wanted and r.get("protocol_version") == PROTOCOL_VERSION
                and (r.get("versions") or {}).get("runner") == runner.RUNNER_VERSION and same_budget)
        if same and (best is None or r["created"] > best["created"]):
            best = r
    return best


def score_all(protocol: Protocol, folder: Path, k: int | None = None, workers: int | None = None,
              progress: bool = True, log=print) -> tuple[list[dict], dict[str, str]]:
    """Score (or reuse) every method; returns (results, failures by file name)."""
    from harness.runner import RunError, SubmissionError

    k = score.population(protocol, k)
    results, failures = [], {}
    files = methods(folder)
    found = stored_results()
    for n, path in enumerate(files, 1):
        try:
            r = stored(protocol, path, k, found)
            if r is not None:
                log(f"[{n}/{len(files)}] {path.name}: stored result {r['id']} (score {r['score']:.4f})")
            else:
                log(f"[{n}/{len(files)}] {path.name}: scoring")
                r = score.score(str(path), protocol, k=k, workers=workers, progress=progress)
                log(f"[{n}/{len(files)}] {path.name}: score {r['score']:.4f}")
            results.append(r)
        except (RunError, SubmissionError, ValueError) as e:
            failures[path.name] = str(e).splitlines()[0]
            log(f"[{n}/{len(files)}] {path.name}: FAILED: {failures[path.name]}")
    return results, failures


def compare_ranked(results: list[dict], results_dir: Path | None = None) -> dict:
    """Which ranked methods the data cannot separate (harness.compare.ties, every pair paired),
    stored for the leaderboard: result id -> the ids it is tied with. Empty below two methods."""
    from harness import compare, leaderboard

    ranked = [r for r in results if r["budget"].get("competition")]
    if len(ranked) < 2:
        return {}
    t = compare.ties(ranked)
    leaderboard.write_ties(t, Path(results_dir or paths.results_dir()))
    return t["tied_with"]


def separate(protocol: Protocol, results: list[dict], cap: int, workers: int | None = None, progress: bool = True,
             log=print) -> list[str]:
    """Adjacent ranked methods the data cannot separate, scored again at twice the K, then twice
    that, up to `cap`, on the ranking pool (run i keeps its seed, so the stored runs are reused
    and only the new ones run; these scores are not published: the ranking stays at one K). At
    each K the pairs still open are compared paired, their p-values adjusted together (Holm).
    Returns one line per adjacent pair: the K where it separated, or that it is tied at the cap."""
    from harness import compare, metric
    from harness.runner import RunError, SubmissionError

    ranked = sorted((r for r in results if r["budget"].get("competition")), key=lambda r: -r["score"])
    if len(ranked) < 2:
        return []
    k = ranked[0]["k"]
    if cap <= k:
        raise ValueError(f"--separate {cap}: the cap must be above the score's K={k}, e.g. --separate {4 * k}")
    current = dict(enumerate(ranked))             # rank index -> its score at the K reached
    open_pairs, words = list(range(len(ranked) - 1)), {}  # pair i: ranks i+1 and i+2
    needed = list(current)
    while True:
        # Every method of an open pair, compared on one set of draws (each pair's p-value is the
        # one `harness compare` gives it), the open pairs' p-values adjusted together.
        p_values = compare.pairwise([current[j] for j in needed])["p_value"]
        at = {j: n for n, j in enumerate(needed)}
        adjusted = metric.holm([p_values[at[i], at[i + 1]] for i in open_pairs])
        still = []
        for i, p in zip(open_pairs, adjusted):
            if p < compare.LEVEL:
                words[i] = f"separated at K={k} (Holm-adjusted p = {p:.3f})"
            else:
                words[i] = f"still tied at K={k}, the cap (Holm-adjusted p = {p:.3f})"
                still.append(i)
        open_pairs = still
        if not open_pairs or k >= cap:
            break
        reached, k = k, min(2 * k, cap)
        needed = sorted({j for i in open_pairs for j in (i, i + 1)})
        log(f"separating {len(open_pairs)} tied pair(s) of neighbours: {len(needed)} method(s) at K={k}")
        try:
            for j in needed:
                current[j] = score.score(ranked[j]["submission"], protocol, k=k, workers=workers, progress=progress,
                                         record=False)
        except (RunError, SubmissionError, ValueError) as e:
            for i in open_pairs:
                words[i] = (f"still tied at K={reached}: stopped there, {ranked[j]['submission_name']} failed at "
                            f"K={k}: {str(e).splitlines()[0]}")
            break
    return [f"ranks {i + 1}-{i + 2} ({ranked[i]['submission_name']}, {ranked[i + 1]['submission_name']}): {words[i]}"
            for i in sorted(words)]


def ranking(results: list[dict], tied: dict | None = None, tuned: dict | None = None) -> str:
    """The ranking as a Markdown table: the results under the competition's budget, best score
    first, then (unranked) the others: an oracle's own budget, a custom one. With `tied`
    (compare_ranked), a last column gives the ranks each ranked method is tied with; with `tuned`
    (method name -> tune.recorded), two columns give its study's trials and best dev score."""
    from harness import leaderboard

    head = ("| rank | method |" + (" tuned: trials | dev score |" if tuned is not None else "")
            + " score | 95% interval | F / null ceiling | retain acc | test acc | forget acc "
            "| s per run | × one retrain | slowest run / limit |" + (" tied with |" if tied else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    ranked = sorted((r for r in results if r["budget"].get("competition")), key=lambda r: -r["score"])
    others = sorted((r for r in results if not r["budget"].get("competition")), key=lambda r: -r["score"])
    rank_of = {r["id"]: n for n, r in enumerate(ranked, 1)}
    for rank, r in [*enumerate(ranked, 1), *(("-", r) for r in others)]:
        lo, hi = r["score_ci95"]
        s, b = r["seconds"], r["budget"]
        within = ("within" if b["over_budget_runs"] == 0 else
                  f"{b['over_budget_runs']} over the budget, within its tolerance")
        note = f"; {b['not_competition']}" if b.get("not_competition") else ""
        study = (tuned or {}).get(r["submission_name"])
        lines.append(
            f"| {rank} | {r['submission_name']} |"
            + ("" if tuned is None else f" {study['trials']} | {study['dev_score']:.4f} |" if study else " - | - |")
            + f" {r['score']:.4f} | [{lo:.4f}, {hi:.4f}] "
            f"| {100 * r['relative_forget_quality']:.0f}% | {r['retain_acc']:.1f}% | {r['test_acc']:.1f}% "
            f"| {r['forget_acc']:.1f}% | {s['unlearning_mean']:.2f} | {s['unlearning_mean'] / s['retrain_mean']:.2f} "
            f"| {s['unlearning_max']:.2f} / {b['limit_s']:.2f} s ({within}{note}) |"
            + (f" {leaderboard.rank_list(rank_of[i] for i in tied.get(r['id'], [])) or 'none'} |"
               if tied and r["id"] in tied else " |" if tied else ""))
    return "\n".join(lines)


def tuned_studies(folder: Path) -> dict:
    """Method name -> what its file says `harness tune` found (tune.recorded), for the methods that say."""
    from harness import tune

    found = {p.stem: tune.recorded(p.read_text()) for p in methods(folder)}
    return {name: study for name, study in found.items() if study}


def standing(settings: dict[str, tuple[list[dict], dict[str, str]]]) -> list[dict]:
    """Each method's rank in every setting (a scenario, a profile) and its mean rank with its spread,
    as DeepUnlearn aggregates over data sets. `settings`: name -> (results, failures by file name)
    of one score-all. In a setting, the methods under the competition's budget rank by score (equal
    scores share their mean rank); a method that failed there (over the budget, an error) ranks
    last, after all of them. Oracles and custom budgets are never ranked, so they are left out.
    Best mean rank first; rows: method, ranks {setting: rank}, failed [settings], mean_rank, sd."""
    import pandas as pd

    ranks, failed = {}, {}
    for name, (results, failures) in settings.items():
        ranked = [r for r in results if r["budget"].get("competition")]
        order = pd.Series({r["submission_name"]: -r["score"] for r in ranked}, dtype=float).rank(method="average")
        last = len(ranked) + 1.0
        for method, rank in order.items():
            ranks.setdefault(method, {})[name] = float(rank)
        for file in failures:
            method = Path(file).stem
            ranks.setdefault(method, {})[name] = last
            failed.setdefault(method, []).append(name)
    rows = []
    for method, by in ranks.items():
        # A method with no rank in some setting (scored there under another budget) is left out:
        # its mean would be over fewer settings than the others'.
        if set(by) != set(settings):
            continue
        values = pd.Series([by[s] for s in settings], dtype=float)
        rows.append({"method": method, "ranks": {s: by[s] for s in settings}, "failed": failed.get(method, []),
                     "mean_rank": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0})
    return sorted(rows, key=lambda row: (row["mean_rank"], row["method"]))


def standing_table(rows: list[dict], settings: list[str]) -> str:
    """standing() as a Markdown table; a rank a failure earned is marked with '×'."""
    lines = ["| standing | method | mean rank | sd | " + " | ".join(settings) + " |",
             "|" + "---|" * (4 + len(settings))]
    for n, row in enumerate(rows, 1):
        cells = [f"{row['ranks'][s]:g}" + (" ×" if s in row["failed"] else "") for s in settings]
        lines.append(f"| {n} | {row['method']} | {row['mean_rank']:.2f} | {row['sd']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
