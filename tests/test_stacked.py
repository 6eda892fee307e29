"""Stacked training (harness.stacked) is the single-model recipe, G models at a time."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from harness import data, evaluate, models, protocol, reference_pool, stacked

pytestmark = pytest.mark.slow  # every test here trains stacked models

QUICK = protocol.QUICK
CPU = torch.device("cpu")


@pytest.mark.parametrize("p", [QUICK, protocol.KAGGLE_MINI.replace(image_size=32)], ids=["cnn", "resnet18"])
def test_one_step_of_a_stack_equals_each_model_alone(p):
    # float64: Adam's first step is lr * g / (|g| + 1e-8), so float32 rounding of a gradient near
    # zero (~1e-6 of the largest) flips that element by 2·lr; in float64 the two paths agree to 1e-10.
    torch.manual_seed(0)
    seeds, batch = [1, 2, 3], 8
    nets = [models.build(p, s).double() for s in seeds]
    alone = [copy.deepcopy(net) for net in nets]
    x = torch.rand(len(seeds), batch, 3, p.image_size, p.image_size, dtype=torch.float64)
    y = torch.randint(0, p.n_classes, (len(seeds), batch))
    loss_fn = nn.CrossEntropyLoss(weight=torch.rand(p.n_classes, dtype=torch.float64) + 0.5)

    stack = stacked.Stack(nets, CPU).train()
    opt = torch.optim.Adam(stack.params.values(), lr=p.lr, weight_decay=p.weight_decay)
    stacked.step(stack, opt, loss_fn, x, y, p, CPU)

    for g, net in enumerate(alone):
        net.train()
        opt1 = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        opt1.zero_grad()
        loss_fn(net(x[g]), y[g]).backward()
        opt1.step()
        want, got = net.state_dict(), stack.state_dict(g)
        assert list(got) == list(want)  # every key, BN buffers included, in a plain model's order
        for k in want:
            assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
            assert torch.allclose(got[k], want[k], rtol=0, atol=1e-10), k
    # The check can fail: each model's batch-norm statistics moved, and differently (shared
    # statistics, or one model's update landing in another's row, would not match above).
    bn = [k for k in want if k.endswith("running_mean")][0]
    means = [stack.state_dict(g)[bn] for g in range(len(seeds))]
    assert all(m.abs().sum() > 0 for m in means) and not torch.allclose(means[0], means[1])
    assert all(int(stack.state_dict(g)[bn.replace("running_mean", "num_batches_tracked")]) == 1
               for g in range(len(seeds)))


def test_a_stacked_pool_has_the_accuracies_of_a_pool_trained_alone(cache):
    """The public quick pool's K=8 retrained models were trained alone; train the same 8 seeds as
    one stack. The runs part ways at float rounding, so each seed's pair are two draws of the same
    recipe: per-model accuracies spread ~4 points across seeds on this data set (94 test, 68 forget
    images), the paired differences have a standard deviation of ~3.5, so the mean difference of 8
    has a standard error of ~1.25: 4 points is ~3 standard errors, and under one seed-to-seed
    standard deviation. A broken stack (shared BN statistics, mixed-up data) misses by far more.
    (The public seeds' data set: the bounds were worked out on it; another draw spreads otherwise.)"""
    public = QUICK.replace(secret_seeds=False)
    quick_pool = reference_pool.ensure(public, progress=False)
    splits = data.load_splits(quick_pool.data_root)
    seeds = [r["seed"] for r in quick_pool.retrains]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the pool's workers
    try:
        trained = stacked.train_stack(public, splits["retain"], splits["validation"], seeds,
                                      QUICK.retrain_best_from_epoch)
    finally:
        torch.set_num_threads(threads)
    assert [info["seed"] for _, info in trained] == seeds and all(info["stack"] == 8 for _, info in trained)
    assert all(QUICK.retrain_best_from_epoch <= info["best_epoch"] <= QUICK.epochs for _, info in trained)
    got = [evaluate.evaluate_state(public, state, splits) for state, _ in trained]
    for key in ("retain_acc", "test_acc", "forget_acc"):
        diff = np.array([g[key] for g in got]) - quick_pool.accuracies(key)
        assert abs(diff.mean()) <= 4.0, (key, diff)
        assert np.abs(diff).max() <= 12.0, (key, diff)


def test_ensure_with_stacks_writes_checked_records_and_resumes_per_model(tmp_path, monkeypatch):
    monkeypatch.setenv(reference_pool.STACK_ENV, "2")
    # The bookkeeping is under test, not the models (public seeds: the records say which).
    p = QUICK.replace(epochs=3, retrain_best_from_epoch=1, secret_seeds=False)
    assert reference_pool.stack_size(p) == 2
    pool = reference_pool.ensure(p, 4, cache=tmp_path, workers=2, progress=False)
    assert [r["stack"] for r in pool.retrains] == [2] * 4 and "stack" not in pool.original
    # The time budget is measured in models trained alone: a stack's share of its wall time is not
    # one, so with every retrained model stacked the original (trained alone) stands in.
    assert pool.retrain_seconds() == pool.original["seconds"]
    loaded = reference_pool.load(p, 4, cache=tmp_path)  # every sha256 checked
    plain = models.build(p).state_dict()
    for j, rec in enumerate(loaded.retrains):
        state = reference_pool.load_state(loaded.retrain_weights(j), rec["weights_sha256"])
        assert list(state) == list(plain)
        models.check_same_architecture(plain, state)

    def stamps():
        return {f.name: f.stat().st_mtime_ns for f in sorted((pool.dir / "retrain").glob("*.pt"))}

    # Two missing models: trained again as one stack of 2, the others untouched.
    before = stamps()
    for j in (1, 3):
        (pool.dir / "retrain" / f"{j:04d}.json").unlink()
    again = reference_pool.ensure(p, 4, cache=tmp_path, workers=2, progress=False)
    after = stamps()
    assert [n for n in before if before[n] != after[n]] == ["0001.pt", "0003.pt"]
    assert again.retrains[1]["stack"] == again.retrains[3]["stack"] == 2
    # One missing model: it trains alone (no stack of one), the rest untouched.
    (pool.dir / "retrain" / "0002.json").unlink()
    again = reference_pool.ensure(p, 4, cache=tmp_path, workers=2, progress=False)
    assert [n for n, t in stamps().items() if after[n] != t] == ["0002.pt"]
    assert "stack" not in again.retrains[2] and again.retrains[2]["seed"] == p.retrain_seed0 + 2
    assert again.retrain_seconds() == again.retrains[2]["seconds"]


def test_a_bad_stack_size_is_one_clear_line(monkeypatch):
    for bad in ("many", "0", "-2"):
        monkeypatch.setenv(reference_pool.STACK_ENV, bad)
        with pytest.raises(ValueError, match=f"HARNESS_STACK='{bad}' is not a stack size: use a whole number"):
            reference_pool.stack_size(QUICK)
