"""Everything a report shows, gathered from what a score stored: the result, the reference pool's
records and weights, the data, and the runs' records (with the outputs the runner keeps, see
evaluate.evaluate_state). No model is trained here; the pool's outputs are recomputed from
its weights only where a pool made before they were kept lacks them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import data, evaluate, paths, protocol as protocol_mod, reference_pool, runner
from harness.evaluate import decode_array


@dataclass
class Bundle:
    result: dict
    protocol: protocol_mod.Protocol
    pool: reference_pool.Pool
    splits: dict                 # name -> data.Split
    runs: list[dict]             # the K run records
    runs_dir: Path
    forget_logits: dict          # "original" [1, N, C], "retrained" [K, N, C], "unlearned" [K, N, C]
    test_logits: dict            # the same on the first TEST_SAMPLE test images: [., T, C]
    tta: dict                    # model population -> view -> mean forget accuracy (percent)
    conf: dict                   # "retrained" [K, N], "unlearned" [K, N]


_POOL_OUTPUTS: dict = {}  # (weights sha256) -> outputs: a leaderboard page reports many results on one pool


def _outputs(protocol, pool, splits, j) -> dict:
    """A pool model's outputs: from its record, or from its weights (a pool made before they were kept)."""
    rec = pool.original if j is None else pool.retrains[j]
    if "outputs" in rec:
        return rec["outputs"]
    if rec["weights_sha256"] not in _POOL_OUTPUTS:
        path = pool.original_weights if j is None else pool.retrain_weights(j)
        state = reference_pool.load_state(path, rec["weights_sha256"])
        _POOL_OUTPUTS[rec["weights_sha256"]] = evaluate.evaluate_state(protocol, state, splits)["outputs"]
    return _POOL_OUTPUTS[rec["weights_sha256"]]


def load(result: dict) -> Bundle:
    if result.get("source", "runner") != "runner":
        raise ValueError(f"result {result['id']} was scored from checkpoints ({result['source']}): a report needs the "
                         "runs' outputs, which only `harness score` keeps; score the submission with it")
    protocol = protocol_mod.from_dict(result["protocol"])
    k = result["k"]
    cache = paths.cache_dir()
    data_root = data.ensure_data(protocol, cache)
    pool = reference_pool.load(protocol, k, cache)
    splits = data.load_splits(data_root)
    folder, runs = runner.result_runs(result, protocol, pool.dir)
    if any(r is None or "outputs" not in r for r in runs):
        raise FileNotFoundError(f"the runs of {result['id']} are not in {folder} (or were made by an older runner "
                                f"that kept no outputs): score it again with `python -m harness score "
                                f"{result['submission']} --profile {result['profile']} --k {k}`, then report")
    pool_out = {"original": [_outputs(protocol, pool, splits, None)],
                "retrained": [_outputs(protocol, pool, splits, j) for j in range(k)]}
    run_out = [r["outputs"] for r in runs]
    forget = {name: np.stack([decode_array(o["forget_logits"]) for o in outs]) for name, outs in
              {**pool_out, "unlearned": run_out}.items()}
    test = {name: np.stack([decode_array(o["test_logits"]) for o in outs]) for name, outs in
            {**pool_out, "unlearned": run_out}.items()}
    tta = {name: {view: float(np.mean([o["tta_forget_acc"][view] for o in outs]))
                  for view in evaluate.TTA_VIEWS} for name, outs in {**pool_out, "unlearned": run_out}.items()}
    conf = {"retrained": pool.forget_confidences(),
            "unlearned": np.array([r["forget_confidences"] for r in runs], dtype=np.float64)}
    return Bundle(result, protocol, pool, splits, runs, folder, forget, test, tta, conf)
