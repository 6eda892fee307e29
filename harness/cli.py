"""Command line: `python -m harness {score,score-all,reference,check,leaderboard,compare,tune,ladder,kaggle,score-zip,data,report}`.

Every expected failure (bad path, unknown profile, failed run) ends with one line on stderr that
names the problem and the fix, and a non-zero exit code."""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import tempfile
from pathlib import Path

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
LADDER = ("submissions/noop.py", "submissions/finetune.py", "submissions/retrain.py")
CHECK_BUDGET_FRACTION = 5.0  # `check` judges the contract, not the time: a slow method still runs to the end


def _protocol(args, scenario: str | None = None):
    """The protocol the command line names; `scenario` stands in for --scenario (score-all --scenarios)."""
    from harness import protocol

    from harness import data

    p = protocol.get(args.profile, getattr(args, "pool", "rank"))
    p = p.replace(secret_seeds=False) if getattr(args, "public_seeds", False) else p
    p = p.replace(precision=args.precision) if getattr(args, "precision", None) else p  # named by data.resolve
    return data.resolve(p, getattr(args, "data", None), scenario or getattr(args, "scenario", None),
                        getattr(args, "label", None))


def _report(result: dict, as_json: bool) -> int:
    from harness import paths, result as result_mod

    print(result_mod.summary_text(result))
    print(f"  result: {paths.results_dir() / (result['id'] + '.json')}")
    if as_json:
        print(json.dumps(result, allow_nan=True))
    return 0


def cmd_score(args) -> int:
    from harness import protocol, runner

    # A bad path or profile fails here, in a second: harness.data and harness.score import torch.
    runner.Submission.load(args.submission)
    protocol.get(args.profile, getattr(args, "pool", "rank"))
    from harness import score

    return _report(score.score(args.submission, _protocol(args), k=args.k, workers=args.workers,
                               budget_fraction=args.budget_fraction, progress=not args.quiet, oracle=args.oracle),
                   args.json)


def cmd_score_all(args) -> int:
    from harness import score_all

    if args.scenarios is None:
        results, failures = _score_all_one(_protocol(args), args)
        return EXIT_ERROR if failures else 0
    if args.scenario:
        raise ValueError("--scenario and --scenarios both choose what is forgotten: pass one of them")
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if len(names) < 2 or len(set(names)) < len(names):
        raise ValueError(f"--scenarios {args.scenarios}: name two or more different scenarios, e.g. identity,random,class")
    protocols = {name: _protocol(args, name) for name in names}   # all checked before anything is scored
    settings = {}
    for name, protocol in protocols.items():
        print(f"\n## scenario {name} ({protocol.name})", flush=True)
        settings[name] = _score_all_one(protocol, args)
    print(f"\nstanding over {len(names)} scenarios (rank in each by score; a failure ranks last, marked ×):")
    print(score_all.standing_table(score_all.standing(settings), names))
    return EXIT_ERROR if any(failures for _, failures in settings.values()) else 0


def _score_all_one(protocol, args) -> tuple[list[dict], dict[str, str]]:
    """score-all on one protocol: score, rank, ties, --separate; failures said on stderr."""
    from harness import score_all

    results, failures = score_all.score_all(protocol, Path(args.submissions), k=args.k, workers=args.workers,
                                            progress=not args.quiet)
    if results:
        r = results[0]
        ref = r["reference"]
        print(f"\n{len(results)} methods on profile {protocol.name}, K={r['k']}, protocol {r['protocol_version']}; "
              f"retrained models: retain {ref['retain_acc']:.1f}%, test {ref['test_acc']:.1f}%, forget "
              f"{ref['forget_acc']:.1f}%; null ceiling F {r['null_forget_quality']:.4f}; one retrain "
              f"{r['seconds']['retrain_mean']:.1f} s; budget {r['budget']['seconds']:.1f} s per run\n")
        tied = {}
        if sum(1 for x in results if x["budget"].get("competition")) > 1:
            print("comparing the ranked methods, every pair paired (harness compare)...", file=sys.stderr)
            try:
                tied = score_all.compare_ranked(results)
            except (FileNotFoundError, ValueError) as e:  # runs no longer in the cache: the ranking stands
                print(f"note: no ties column: {e}", file=sys.stderr)
        tuned = score_all.tuned_studies(Path(args.submissions)) or None
        print(score_all.ranking(results, tied, tuned))
        if tuned:
            print("\n'tuned': the trials of the method's `harness tune` study and its best dev score, as its file says "
                  "(the best of many trials on the dev pool, so optimistic; the score beside it is the ranking pool's)")
        if tied:
            print("\n'tied with': the ranks a method's score cannot be told apart from (paired bootstrap of every "
                  "pair, Holm-corrected, 5% level)")
        if args.separate is not None:
            cap = args.separate if args.separate > 0 else score_all.SEPARATE_FACTOR * r["k"]
            lines = score_all.separate(protocol, results, cap, workers=args.workers, progress=not args.quiet,
                                       log=lambda line: print(line, file=sys.stderr))
            print(f"\nneighbours, compared at K up to {cap} (those scores are not published):")
            print("\n".join(lines) or "fewer than two ranked methods: nothing to separate")
    for name, why in failures.items():
        print(f"error: {name}: {why}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} method(s) failed; fix them and run the same command again (the others are kept)",
              file=sys.stderr)
    return results, failures


def cmd_reference(args) -> int:
    from harness import reference_pool

    protocol = _protocol(args)
    pool = reference_pool.ensure(protocol, args.k, workers=args.workers, progress=not args.quiet)
    o = pool.original
    mean = {key: pool.accuracies(key).mean() for key in ("retain_acc", "test_acc", "forget_acc")}
    print(f"reference pool {pool.dir}  (K={pool.k})")
    made = (f"given: {o['given']}" if o.get("given") else f"{o['seconds']:.1f} s, {o['images_per_second']:.0f} img/s")
    print(f"  original   retain {o['retain_acc']:.1f}%  test {o['test_acc']:.1f}%  forget {o['forget_acc']:.1f}%  ({made})")
    print(f"  retrained  retain {mean['retain_acc']:.1f}%  test {mean['test_acc']:.1f}%  forget {mean['forget_acc']:.1f}%  "
          f"(mean {pool.retrain_seconds():.1f} s per model)")
    return 0


def cmd_check(args) -> int:
    """Run the submission once on the `quick` profile in an isolated worker, report the contract.
    The run gets CHECK_BUDGET_FRACTION retrains of time, so that a slow method still has its
    contract checked; its time is then set against the protocol's budget."""
    from harness import budget, parallel, protocol as protocol_mod, reference_pool, result as result_mod, runner

    submission = runner.Submission.load(args.submission)
    protocol = protocol_mod.get("quick")
    pool = reference_pool.ensure(protocol, 2, progress=not args.quiet)
    generous = budget.make(protocol, pool, fraction=CHECK_BUDGET_FRACTION)
    rule = budget.make(protocol, pool)
    with tempfile.TemporaryDirectory(prefix="harness-check-") as out:
        job = runner.run_job(protocol, pool, submission, 0, generous, Path(out), runner.sandbox_mode())
        rec = next(parallel.run([job], 1, progress=False, desc="check", unit="run"))
    iso = result_mod.isolation([rec])
    within = "within" if rec["seconds"] <= rule.limit_s else "OVER"
    print(f"ok: {args.submission} meets the contract (sha256 {submission.sha256[:12]})")
    print(f"  unlearning() ran in {rec['seconds']:.2f} s on profile quick: {rec['seconds'] / rule.retrain_s:.2f} x one "
          f"retrain ({within} the protocol's {rule.fraction:g} x + {protocol.unlearn_budget_tolerance:.0%} tolerance "
          f"= {rule.limit_s:.2f} s)")
    print("  architecture unchanged (state-dict keys, shapes, dtypes); all weights finite; not a copy of the pool")
    print(f"  sandbox: {'yes' if iso['sandboxed'] else 'NO (' + '; '.join(iso['refused']) + ')'}; "
          + ", ".join(f"{k} {'yes' if iso[k] else 'no'}" for k in result_mod.ISOLATION_LAYERS))
    print(f"  forget accuracy {pool.original['forget_acc']:.1f}% (original) -> {rec['forget_acc']:.1f}%; "
          f"retain {pool.original['retain_acc']:.1f}% -> {rec['retain_acc']:.1f}%")
    return 0


def cmd_kaggle_export(args) -> int:
    from harness import protocol
    from harness.kaggle import export

    out = export.export(args.submission, args.out, protocol.get(args.profile))
    print(f"wrote {out}: {args.submission} as a competition notebook (upload it to Kaggle, or run it here with "
          f"`python -m harness kaggle run {out}`)")
    return 0


def cmd_kaggle_run(args) -> int:
    from harness.kaggle import run

    return _report(run.run(args.notebook, _protocol(args), k=args.k, workers=args.workers, progress=not args.quiet,
                           output_notebook=args.output_notebook, zip_out=args.zip_out), args.json)


def cmd_score_zip(args) -> int:
    from harness.kaggle import checkpoints

    return _report(checkpoints.score_zip(args.zip, _protocol(args), k=args.k, workers=args.workers,
                                         progress=not args.quiet), args.json)


def cmd_leaderboard(args) -> int:
    from harness import leaderboard, paths

    profile = _protocol(args).name
    folder = paths.results_dir()
    if args.rebuild:
        n = leaderboard.rebuild(folder)
        print(f"rebuilt {folder / leaderboard.DB_NAME} from {n} result file(s)")
    df = leaderboard.table(folder, profile=profile, history=args.history)
    print(leaderboard.render(df))
    png = None
    if len(df):
        try:
            png = leaderboard.plot(df, folder / f"leaderboard-{profile}.png")
            print(f"plot: {png}")
        except OSError as e:  # a read-only results folder: the table still stands
            print(f"no plot: {e.strerror or e} ({e.filename or folder})", file=sys.stderr)
    if args.html:
        from harness.report import page

        out = folder / f"leaderboard-{profile}.html"
        paths.atomic_write_bytes(out, page.leaderboard(df, folder, png.read_bytes() if png else None).encode())
        print(f"html: {out}")
    return 0


def _result_of(target: Path, args) -> dict:
    """A result JSON (a stored one, or what `score --json` printed, saved), or a submission .py's
    latest stored score on --profile at --k (scored first if there is none)."""
    from harness import score, score_all

    if target.suffix == ".json":
        try:
            text = target.read_text()
        except FileNotFoundError:
            raise FileNotFoundError(f"result {target} does not exist: pass a result JSON from results/ or a "
                                    "submission .py") from None
        try:
            return json.loads(text)
        except ValueError:  # `score --json > file` without --quiet: the object is the last line
            lines = text.strip().splitlines()
            try:
                return json.loads(lines[-1] if lines else "")
            except ValueError:
                raise ValueError(f"{target} holds no result JSON: pass a file from results/ or what "
                                 "`harness score --json` printed") from None
    protocol = _protocol(args)
    k = score.population(protocol, args.k)
    result = score_all.stored(protocol, target, k, score_all.stored_results())
    if result is None:
        print(f"no stored score of {target} on profile {protocol.name} at K={k}: scoring it first", file=sys.stderr)
        result = score.score(str(target), protocol, k=k, workers=args.workers, progress=not args.quiet)
    return result


def cmd_report(args) -> int:
    from harness import paths
    from harness.report import collect, page

    result = _result_of(Path(args.target), args)
    out = Path(args.out) if args.out else paths.results_dir() / "reports" / result["id"]
    html = page.write(collect.load(result), out)
    print(f"report: {html}")
    return 0


def cmd_compare(args) -> int:
    from harness import compare

    a, b = _result_of(Path(args.a), args), _result_of(Path(args.b), args)
    c = compare.compare(a, b, **({} if args.n_boot is None else {"n_boot": args.n_boot}))
    print(json.dumps(c) if args.json else compare.text(c))
    return 0


def cmd_tune(args) -> int:
    from harness import protocol, runner

    runner.Submission.load(args.submission)
    if args.pool != "rank" or args.profile.endswith(protocol.DEV_SUFFIX):
        raise ValueError("tune always searches the profile's dev pool: name the profile (e.g. --profile quick), "
                         "without --pool dev")
    from harness import tune

    summary = tune.tune(args.submission, _protocol(args), args.trials, k=args.k, workers=args.workers,
                        progress=not args.quiet)
    print(tune.table(summary))
    print(f"  plot: {summary['plot']}")
    if args.write:
        print(f"  wrote trial {summary['best_trial']}'s values into {tune.write_best(args.submission, summary)}")
    if args.json:
        print(json.dumps(summary))
    return 0


def cmd_ladder(args) -> int:
    """The sanity ladder: retrain oracle > finetune > noop on the competition score."""
    from harness import result as result_mod, score

    protocol = _protocol(args)
    rows = []
    for path in LADDER:  # the oracle (retrain.py) declares its own budget in its file
        r = score.score(path, protocol, k=args.k, workers=args.workers, progress=not args.quiet)
        rows.append(r)
        print(result_mod.summary_text(r), flush=True)
    print(f"\nsanity ladder on profile {protocol.name}, K={rows[0]['k']}:")
    for r in sorted(rows, key=lambda r: -r["score"]):
        lo, hi = r["score_ci95"]
        print(f"  {r['submission_name']:<10} score {r['score']:.4f}  [{lo:.4f}, {hi:.4f}]  F {r['forget_quality']:.4f}"
              f"  RA {r['retain_acc']:.1f}%  TA {r['test_acc']:.1f}%  forget acc {r['forget_acc']:.1f}%")
    noop, finetune, retrain = (r["score"] for r in rows)
    holds = retrain > finetune > noop
    print(f"ladder {'holds' if holds else 'VIOLATED'}: retrain {retrain:.4f} > finetune {finetune:.4f} > noop {noop:.4f}")
    return 0 if holds else 1


def cmd_data(args) -> int:
    from harness import data, paths
    from harness.data import fetch, manifest

    if args.data_command == "fetch":
        out = fetch.kaggle(Path(args.out))
        print(f"wrote the competition's files to {out}; score on them with --data {out}")
        return 0
    if args.data_command == "manifest":
        written, skipped = manifest.convert(args.layout, Path(args.folder), Path(args.out))
        print(f"wrote {args.out}: {written} images" + (f"; skipped {len(skipped)} file(s) whose names do not fit, "
                                                       f"e.g. {skipped[0]}" if skipped else ""))
        print(f"score on it with --data {args.out}" + ("" if manifest.identities(Path(args.out)) else
                                                        " --scenario random (it has no identities)"))
        return 0
    protocol = _protocol(args)
    root = data.ensure_data(protocol, paths.cache_dir())
    meta = json.loads((root / "meta.json").read_text())
    print(f"data set {root}")
    print(f"  profile {protocol.name}: source {meta['source']['kind'] if 'source' in meta else 'synthetic'}, "
          f"scenario {protocol.scenario}, {meta['n_images']} images of {protocol.image_size}x{protocol.image_size}, "
          f"{meta['n_identities'] if meta['n_identities'] is not None else 'no'} identities, {protocol.n_classes} classes")
    print("  " + ", ".join(f"{name} {n}" for name, n in meta["counts"].items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from harness import budget, protocol

    profiles = ", ".join(protocol.PROFILES)
    p = argparse.ArgumentParser(prog="unlearning-harness", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, profile=True, default_profile="default"):
        if profile:
            sp.add_argument("--profile", default=default_profile, help=f"protocol profile ({profiles}; "
                                                                       f"default {default_profile})")
        sp.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
        sp.add_argument("--backend", choices=("local", "ray"), default=None,
                        help="where jobs run: local worker processes (default) or Ray tasks (HARNESS_BACKEND)")
        if profile:
            sp.add_argument("--pool", choices=protocol.POOLS, default="rank",
                            help="rank (default): the pool that ranks; dev: retrained models and unlearning seeds "
                                 "disjoint from it, the one to tune hyperparameters on")
            sp.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                            help="fp32 (default) or bf16 autocast in training and evaluation (for a GPU; a "
                                 "separate pool, recorded in the result)")
            sp.add_argument("--public-seeds", action="store_true",
                            help="the protocol's public seeds instead of the cache's secret key: a pool and test "
                                 "split anyone can rebuild bit for bit (a separate pool; results say so)")
        if profile:
            data_options(sp)
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    def data_options(sp):
        sp.add_argument("--data", default=None, metavar="SOURCE",
                        help="the images: a Kaggle-layout folder, a CSV manifest, a CelebA or CIFAR-10 folder, "
                             "'digits' or 'synthetic' (default: the profile's)")
        sp.add_argument("--scenario", default=None, metavar="S",
                        help="what is forgotten: identity[:PEOPLE], random[:FRACTION] or class[:INDEX] (default: the profile's)")
        sp.add_argument("--label", default=None, metavar="ATTRS",
                        help="CelebA only: the attribute(s) that make the label (default Young; e.g. Male,Young)")

    s = sub.add_parser("score", help="score a submission: K unlearning runs, then the competition metric")
    s.add_argument("submission", help="a .py file defining unlearning(net, retain_loader, forget_loader, val_loader)")
    s.add_argument("--k", type=int, default=None, help="runs and retrained models (default: the profile's K)")
    s.add_argument("--budget-fraction", type=float, default=None,
                   help="a custom time budget (fraction of one retrain): the result is marked custom and never ranked "
                        "beside the protocol budget's")
    s.add_argument("--oracle", type=float, nargs="?", const=budget.DEFAULT_ORACLE_FRACTION, default=None,
                   metavar="FRACTION",
                   help="score it as an oracle with its own budget (default 3 retrains; a file can declare "
                        "ORACLE_BUDGET_FRACTION instead): its row says 'oracle, own budget' and is never ranked")
    s.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    common(s)
    s.set_defaults(func=cmd_score)

    sa = sub.add_parser("score-all", help="score every method in submissions/ (resumable) and print the ranking")
    sa.add_argument("--submissions", default="submissions", help="folder of method files (default submissions/; "
                                                                 "template.py is left out)")
    sa.add_argument("--k", type=int, default=None, help="runs and retrained models (default: the profile's K)")
    sa.add_argument("--separate", type=int, nargs="?", const=0, default=None, metavar="MAX_K",
                    help="score neighbours the data cannot separate again at 2K, 4K, ... up to MAX_K (default 4K), "
                         "and say where each pair separated")
    sa.add_argument("--scenarios", default=None, metavar="S1,S2,...",
                    help="score-all under each scenario (e.g. identity,random,class), then each method's mean rank "
                         "over them with its spread")
    common(sa)
    sa.set_defaults(func=cmd_score_all)

    r = sub.add_parser("reference", help="build (or grow) the reference pool ahead of time")
    r.add_argument("--k", type=int, default=None, help="retrained models (default: the profile's K)")
    common(r)
    r.set_defaults(func=cmd_reference)

    c = sub.add_parser("check", help="check a submission against the contract with one run on `quick`")
    c.add_argument("submission")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_check)

    lb = sub.add_parser("leaderboard", help="print the local leaderboard and plot it")
    lb.add_argument("--profile", default="default", help=f"protocol profile ({profiles})")
    lb.add_argument("--pool", choices=protocol.POOLS, default="rank", help="rank (default) or dev")
    data_options(lb)
    lb.add_argument("--history", action="store_true", help="every result, not only each submission's latest")
    lb.add_argument("--html", action="store_true", help="also write the ranking with the metric columns as HTML")
    lb.add_argument("--rebuild", action="store_true", help="rebuild the database from the result JSON files")
    lb.set_defaults(func=cmd_leaderboard)

    kg = sub.add_parser("kaggle", help="competition notebooks offline: export a submission, run a notebook")
    ksub = kg.add_subparsers(dest="kaggle_command", required=True)
    ke = ksub.add_parser("export", help="write a submission as a competition notebook (runs on Kaggle as an entry)")
    ke.add_argument("submission", help="a .py file defining unlearning(net, retain_loader, forget_loader, val_loader)")
    ke.add_argument("--out", required=True, help="the notebook to write (.ipynb)")
    ke.add_argument("--profile", default="kaggle-mini", help="profile whose seeds the notebook uses (default kaggle-mini)")
    ke.set_defaults(func=cmd_kaggle_export)
    kr = ksub.add_parser("run", help="run a competition notebook offline (K iterations) and score its submission.zip")
    kr.add_argument("notebook", help="an .ipynb written for the competition")
    kr.add_argument("--k", type=int, default=None, help="iterations instead of 512 (default: the profile's K)")
    kr.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    kr.add_argument("--output-notebook", default=None, help="also write the executed notebook, outputs included")
    kr.add_argument("--zip-out", default=None, help="also keep the notebook's submission.zip at this path")
    common(kr, default_profile="kaggle-mini")
    kr.set_defaults(func=cmd_kaggle_run)

    sz = sub.add_parser("score-zip", help="score a submission.zip of unlearned checkpoints made anywhere")
    sz.add_argument("zip", help="a submission.zip holding unlearned_checkpoint_<i>.pth, i = 0..K-1")
    sz.add_argument("--k", type=int, default=None, help="checkpoints expected (default: the profile's K)")
    sz.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    common(sz, default_profile="kaggle-mini")
    sz.set_defaults(func=cmd_score_zip)

    dt = sub.add_parser("data", help="real data: make a data set and show it, write a manifest, fetch Kaggle's files")
    dsub = dt.add_subparsers(dest="data_command", required=True)
    dsh = dsub.add_parser("show", help="make the profile's data set (with --data/--scenario) and print its splits")
    dsh.add_argument("--profile", default="default", help=f"protocol profile ({profiles})")
    dsh.add_argument("--pool", choices=protocol.POOLS, default="rank", help=argparse.SUPPRESS)
    data_options(dsh)
    dsh.set_defaults(func=cmd_data)
    dm = dsub.add_parser("manifest", help="write a CSV manifest from a folder of a common data set's file names")
    dm.add_argument("layout", choices=("utkface", "agedb", "cacd"))
    dm.add_argument("folder", help="the folder of images (searched recursively)")
    dm.add_argument("--out", required=True, help="the manifest to write (.csv); image paths are relative to it")
    dm.set_defaults(func=cmd_data)
    df = dsub.add_parser("fetch", help="download the competition's files with the kaggle package")
    df.add_argument("source", choices=("kaggle",))
    df.add_argument("--out", default="data/kaggle", help="folder to download into (default data/kaggle)")
    df.set_defaults(func=cmd_data)

    rp = sub.add_parser("report", help="an HTML report of a score: figures, the papers' metrics, provenance")
    rp.add_argument("target", help="a result JSON, or a submission .py (its latest stored score; scored first if none)")
    rp.add_argument("--k", type=int, default=None, help="with a submission: the K of the score to report")
    rp.add_argument("--out", default=None, help="folder for index.html and metrics.json (default results/reports/<id>)")
    common(rp)
    rp.set_defaults(func=cmd_report)

    cp = sub.add_parser("compare", help="two scores' difference, its 95%% interval and p-value (paired bootstrap)")
    cp.add_argument("a", help="a result JSON (stored, or saved from `score --json`), or a submission .py (its "
                              "latest stored score; scored first if none)")
    cp.add_argument("b", help="the same for the method to compare with: one profile and K, so the runs pair up")
    cp.add_argument("--k", type=int, default=None, help="with submissions: the K of the scores")
    cp.add_argument("--n-boot", type=int, default=None,
                    help="bootstrap draws, each scoring both methods (default metric.PAIRED_N_BOOT)")
    cp.add_argument("--json", action="store_true", help="print one JSON object: difference (A - B), ci95, p_value")
    common(cp)
    cp.set_defaults(func=cmd_compare)

    tn = sub.add_parser("tune", help="search a method's SEARCH_SPACE with Optuna on the profile's dev pool (resumable)")
    tn.add_argument("submission", help="a method file declaring SEARCH_SPACE beside its defaults")
    tn.add_argument("--trials", type=int, default=40,
                    help="trials the study should hold, pruned and failed ones included (default 40): run again "
                         "to resume, or with more to extend it")
    tn.add_argument("--k", type=int, default=None, help="runs per trial, and retrained models (default 8)")
    tn.add_argument("--write", action="store_true",
                    help="put the best trial's values into the file's defaults and the study into its docstring")
    tn.add_argument("--json", action="store_true",
                    help="print one JSON object: best_params, best_value, n_trials and the study's details")
    common(tn)
    tn.set_defaults(func=cmd_tune)

    ld = sub.add_parser("ladder", help="score noop, finetune and the retrain oracle; check their order")
    ld.add_argument("--k", type=int, default=None)
    common(ld)
    ld.set_defaults(func=cmd_ladder)
    return p


def main(argv: list[str] | None = None) -> int:
    from harness.runner import RunError, SubmissionError

    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "backend", None):
            os.environ["HARNESS_BACKEND"] = args.backend
        if hasattr(args, "backend"):
            from harness import parallel
            parallel.backend()  # a bad HARNESS_BACKEND, or ray missing, fails here, before any work
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunError as e:
        first, _, rest = str(e).partition("\n")
        print(f"error: {first}", file=sys.stderr)
        if rest:
            print("  " + rest.replace("\n", "\n  "), file=sys.stderr)
        print("no score was published; fix the submission and run the same command again", file=sys.stderr)
        return EXIT_ERROR
    except (SubmissionError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # a full disk, a read-only folder: name the file and the fix, no traceback
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        fix = ("free some space" if e.errno == errno.ENOSPC else
               "make it writable or point HARNESS_RESULTS_DIR / HARNESS_CACHE_DIR elsewhere"
               if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "check the path")
        print(f"error: {e.strerror or e}{where}: {fix}, then run the same command again "
              "(finished work is kept)", file=sys.stderr)
        return EXIT_ERROR
