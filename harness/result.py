"""A score's result: the one record every producer builds (`harness score`, a Kaggle notebook, a
submission.zip), writes atomically to the results folder and hands to the leaderboard, and its
summary in words. The result JSON carries everything needed to trace and reproduce its numbers."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness import __version__, metric, paths, runner
from harness.data.cache import SECRET_RECORD
from harness.data.layout import read_meta
from harness.protocol import PROTOCOL_VERSION, Protocol

if TYPE_CHECKING:
    from harness.budget import Budget

RESULT_SCHEMA = 2
# F this far above the null ceiling is out of reach of unlearning: the unlearned population is
# closer to the retrained one than two halves of the retrained pool are to each other, which a
# copy of the pool produces and an honest method does not (the retrain oracle reaches ~1x).
SUSPICIOUS_F_FACTOR = 2.0
ISOLATION_LAYERS = ("clean_process", "mount_namespace", "filesystem_hidden", "pid_namespace",
                    "network_namespace", "capabilities_dropped", "cgroup")


def build(protocol: Protocol, pool, submission, runs: list[dict], run_budget: "Budget | None", *,
          source: str, started: float, timings: dict, execution: dict | None = None, **extra) -> dict:
    """The result of K runs (or of checkpoints made elsewhere: `run_budget` None, nothing timed), the
    one builder of every producer (`harness score`, a Kaggle notebook, a submission.zip): `source`
    names it, `started` is its perf_counter at the start (the total), `timings` its own stages'
    seconds, `execution` its workers, `extra` fields of its own (a notebook's rewrites)."""
    t_metric = time.perf_counter()
    k = len(runs)
    retrain_conf = pool.forget_confidences()                                   # [K, N]
    unlearned_conf = np.array([r["forget_confidences"] for r in runs], dtype=np.float64)  # [K, N]
    acc = {key: np.array([r[key] for r in runs], dtype=np.float64) for key in ("retain_acc", "test_acc", "forget_acc")}
    ref = {key: pool.accuracies(key) for key in ("retain_acc", "test_acc", "forget_acc")}
    eps = metric.epsilons(retrain_conf, unlearned_conf)
    f = metric.forget_quality(retrain_conf, unlearned_conf)
    null_f = metric.null_forget_quality(retrain_conf)
    final = metric.final_score(f, acc["retain_acc"].mean(), ref["retain_acc"].mean(),
                               acc["test_acc"].mean(), ref["test_acc"].mean())
    low, high = metric.score_interval(retrain_conf, unlearned_conf, acc["retain_acc"], ref["retain_acc"],
                                      acc["test_acc"], ref["test_acc"])
    created = dt.datetime.now(dt.timezone.utc)
    # Checkpoints made elsewhere (score-zip) carry no time: nothing is claimed about it.
    timed = all(r["seconds"] is not None for r in runs)
    seconds = np.array([r["seconds"] for r in runs], dtype=np.float64) if timed else None
    result = {
        "schema": RESULT_SCHEMA,
        "id": f"{protocol.name}-{submission.name}-{submission.sha256[:8]}-k{k}-{created:%Y%m%dT%H%M%S%fZ}",
        "created": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "protocol_version": PROTOCOL_VERSION,
        "profile": protocol.name,
        "protocol": protocol.to_dict(),
        "reference_hash": protocol.reference_hash(),
        "data": {"source": protocol.data_source, "path": protocol.data_path or None,
                 "digest": protocol.data_digest or None, "data_hash": protocol.data_hash()},
        "scenario": protocol.scenario,
        "k": k,
        "n_forget": int(retrain_conf.shape[1]),
        "submission": _display_path(submission.path),
        "submission_name": submission.name,
        "submission_sha256": submission.sha256,
        "score": final,
        "score_ci95": [low, high],
        "forget_quality": f,
        "null_forget_quality": null_f,
        "relative_forget_quality": f / null_f if null_f > 0 else float("nan"),
        "retain_acc_ratio": acc["retain_acc"].mean() / ref["retain_acc"].mean(),
        "test_acc_ratio": acc["test_acc"].mean() / ref["test_acc"].mean(),
        "retain_acc": acc["retain_acc"].mean(),
        "test_acc": acc["test_acc"].mean(),
        "forget_acc": acc["forget_acc"].mean(),
        "reference": {key: float(v.mean()) for key, v in ref.items()},
        "original": {key: pool.original[key] for key in ("retain_acc", "test_acc", "forget_acc", "val_acc")},
        "epsilons": [float(e) for e in eps],
        # One sha256 per run of its forget confidences (float64 bytes): two scores made the same
        # runs, bit for bit, exactly when these agree (a notebook run against `harness score`).
        "run_digests": [hashlib.sha256(row.tobytes()).hexdigest()[:16] for row in unlearned_conf],
        "points": [float(p) for p in metric.points(eps, k)],
        # With secret seeds the retrained models' seeds stay in the pool: the result publishes a
        # commitment to the secret instead, so a later submission cannot rebuild the pool from it.
        "source": source,
        "seeds": {"original": protocol.original_seed,
                  "retrain": None if protocol.secret_seeds else [r["seed"] for r in pool.retrains],
                  "retrain_secret_commitment": pool.seed_commitment, "unlearn": [r["seed"] for r in runs]},
        # Secret seeds (the default): commitments to the keys the data set and the pool derive from
        # (harness.keys); public seeds: anyone can rebuild this pool and its test split.
        "secrets": {"public_seeds": not protocol.secret_seeds, "pool_commitment": pool.seed_commitment,
                    "data_commitment": read_meta(pool.data_root).get(SECRET_RECORD)},
        # The rule the runs were held to; over_budget_runs took longer than the budget but stayed
        # within its tolerance for timer noise (a run past that fails).
        "budget": ({**run_budget.to_dict(), "retrain_seconds": run_budget.retrain_s,
                    "over_budget_runs": int(sum(r["over_budget"] for r in runs))} if run_budget is not None else
                   {"seconds": None, "fraction": None, "protocol_budget": True, "competition": False,
                    "not_competition": "checkpoints made elsewhere: not timed", "retrain_seconds": pool.retrain_seconds(),
                    "over_budget_runs": 0}),
        "seconds": {"unlearning_mean": float(seconds.mean()) if timed else None,
                    "unlearning_max": float(seconds.max()) if timed else None,
                    "unlearning_total": float(seconds.sum()) if timed else None,
                    "retrain_mean": run_budget.retrain_s if run_budget is not None else pool.retrain_seconds()},
        "isolation": isolation(runs),
        # Where the models were trained and the runs evaluated, and in what arithmetic.
        "device": {"reference": {k: pool.original.get(k) for k in ("device", "name")},
                   "runs": {k: runs[0].get(k) for k in ("device", "name")}, "precision": protocol.precision},
        "suspicious": suspicious(f, null_f),
        "versions": versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        **({"execution": execution} if execution is not None else {}),
        **extra,
    }
    result["seconds"].update(metric=time.perf_counter() - t_metric, **timings, total=time.perf_counter() - started)
    return result


def execution(workers: int) -> dict:
    """How the work was spread: worker processes and the backend that ran them (harness.parallel)."""
    from harness import parallel

    return {"workers": workers, **parallel.describe()}


def isolation(runs: list[dict]) -> dict:
    """What held for every run: a layer counts only if all K runs had it. `sandboxed` is the
    sum of it: a run could see neither the cache nor the results and its processes died with it."""
    layers = {name: all(bool((r.get("isolation") or {}).get(name)) for r in runs) for name in ISOLATION_LAYERS}
    refused = sorted({r["isolation"]["refused"] for r in runs if (r.get("isolation") or {}).get("refused")})
    started_by = sorted({str(r["isolation"].get("started_by")) for r in runs if r.get("isolation")})
    return {"sandboxed": all(runner.sandboxed(r.get("isolation")) for r in runs),
            **layers, "memory_limit_gb": runs[0].get("memory_limit_gb"), "refused": refused, "started_by": started_by}


def suspicious(f: float, null_f: float) -> str | None:
    """Why a forget quality is not believable, or None."""
    if np.isfinite(null_f) and null_f > 0 and f > SUSPICIOUS_F_FACTOR * null_f:
        return (f"F = {f:.3f} is {f / null_f:.1f}x the null ceiling {null_f:.3f}: no unlearning gets there; "
                "the runs look like copies of the retrained models")
    return None


def versions() -> dict:
    import joblib
    import torch

    return {"harness": __version__, "runner": runner.RUNNER_VERSION, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "joblib": joblib.__version__}


def _display_path(path: Path) -> str:
    """The leaderboard's key for a submission: relative to the checkout when inside it, so the
    same file is the same submission from whatever folder it was scored."""
    try:
        return str(path.relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)


def write(result: dict) -> Path:
    from harness import leaderboard

    folder = paths.results_dir()
    path = folder / f"{result['id']}.json"
    paths.atomic_write_json(path, result)
    leaderboard.record(result, folder)
    return path


def summary_text(r: dict) -> str:
    lo, hi = r["score_ci95"]
    ref = r["reference"]
    lines = [
        f"{r['submission']}  (sha256 {r['submission_sha256'][:12]}, profile {r['profile']}, K={r['k']}, "
        f"protocol {r['protocol_version']})",
        f"  score              {r['score']:.4f}   95% CI [{lo:.4f}, {hi:.4f}]",
        f"  forget quality F   {r['forget_quality']:.4f}   (null ceiling {r['null_forget_quality']:.4f}: "
        f"{100 * r['relative_forget_quality']:.0f}% of a perfect unlearner)",
        f"  retain accuracy    {r['retain_acc']:.1f}%   retrained {ref['retain_acc']:.1f}%   ratio {r['retain_acc_ratio']:.3f}",
        f"  test accuracy      {r['test_acc']:.1f}%   retrained {ref['test_acc']:.1f}%   ratio {r['test_acc_ratio']:.3f}",
        f"  forget accuracy    {r['forget_acc']:.1f}%   retrained {ref['forget_acc']:.1f}%   "
        f"original {r['original']['forget_acc']:.1f}%",
        (f"  unlearning         {r['seconds']['unlearning_mean']:.2f} s/run, slowest {r['seconds']['unlearning_max']:.2f} s "
         f"(budget {_budget_words(r['budget'])})   total {r['seconds']['total']:.0f} s"
         if r["seconds"]["unlearning_mean"] is not None else
         f"  unlearning         not timed: the checkpoints were made elsewhere   total {r['seconds']['total']:.0f} s"),
    ]
    if r.get("source") == "kaggle-notebook":
        lines.insert(-1, f"  notebook           {r['notebook']['seconds']:.1f} s in one kernel for {r['k']} iterations, "
                         f"{len(r['notebook_rewrites'])} rewrite(s) of its source")
    if r.get("source") == "submission-zip":
        lines.append("  note: checkpoints made outside the harness: how (time, isolation, seeds) is not known")
    elif not r["isolation"]["sandboxed"]:
        lines.append(f"  WARNING: runs were NOT sandboxed ({'; '.join(r['isolation']['refused']) or 'layers missing'}): "
                     "a run could read the cache")
    if r.get("suspicious"):
        lines.append(f"  WARNING: {r['suspicious']}")
    if (r.get("secrets") or {}).get("public_seeds"):
        lines.append("  note: public seeds: anyone can rebuild this pool and its test split (reproducible, not secret)")
    if r["budget"]["over_budget_runs"]:
        lines.append(f"  note: {r['budget']['over_budget_runs']} run(s) took longer than the budget, within its "
                     "tolerance for timer noise")
    if r["budget"].get("not_competition") and r.get("source") != "submission-zip":
        lines.append(f"  note: not the competition's budget: {r['budget']['not_competition']}; never ranked beside "
                     "results under the protocol's budget")
    return "\n".join(lines)


def _budget_words(b: dict) -> str:
    """'1.30 s + 0.33 s tolerance = 0.2 x one retrain of 6.5 s timed here' and the like."""
    basis = {"pool": "timed here", "calibrated": "calibrated here"}.get(b.get("basis"), "")
    tolerance = f" + {b['tolerance_s']:.2f} s tolerance" if b.get("tolerance_s") is not None else ""
    rule = f"{b['fraction']:g} x one retrain of {b['retrain_seconds']:.2f} s {basis}".rstrip()
    if (b.get("floor_s") or 0) > b["fraction"] * b["retrain_seconds"]:
        return f"{b['seconds']:.2f} s{tolerance}: a floor, above {rule}"
    return f"{b['seconds']:.2f} s{tolerance} = {rule}"
