"""Training is exact and the reference pool is a resumable cache."""
from __future__ import annotations

import pytest
import torch

from harness import data, protocol, reference_pool, training

QUICK = protocol.QUICK


@pytest.fixture
def one_thread():
    """One torch thread, as the pool's workers train, for this test only: the thread count is
    global to the process, and the tests that follow get the one they had."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_same_seed_gives_bit_identical_weights_and_other_seeds_do_not(quick_pool, one_thread):
    splits = data.load_splits(quick_pool.data_root)
    a, info = training.train(QUICK, splits["retain"], splits["validation"], seed=7, best_from_epoch=1)
    b, _ = training.train(QUICK, splits["retain"], splits["validation"], seed=7, best_from_epoch=1)
    c, _ = training.train(QUICK, splits["retain"], splits["validation"], seed=8, best_from_epoch=1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert 1 <= info["best_epoch"] <= QUICK.epochs and info["images_per_second"] > 0


def test_best_checkpoint_respects_the_first_eligible_epoch(quick_pool):
    splits = data.load_splits(quick_pool.data_root)
    _, info = training.train(QUICK, splits["retain"], splits["validation"], seed=3, best_from_epoch=QUICK.epochs)
    assert info["best_epoch"] == QUICK.epochs


def test_pool_records_and_identity_matters(quick_pool):
    assert quick_pool.k == QUICK.k
    # Secret seeds (the default): each record keeps the pool's commitment, never its seed.
    assert [r["seed"] for r in quick_pool.retrains] == [None] * QUICK.k
    assert {r["seed_commitment"] for r in quick_pool.retrains} == {quick_pool.seed_commitment} != {None}
    conf = quick_pool.forget_confidences()
    assert conf.shape == (QUICK.k, len(data.load_splits(quick_pool.data_root)["forget"]))
    # The original saw the forget identities; the retrained models did not.
    assert quick_pool.original["forget_acc"] > quick_pool.accuracies("forget_acc").mean()
    manifest = reference_pool.paths.read_json(quick_pool.dir / "manifest.json")
    assert manifest["reference_hash"] == QUICK.reference_hash() and manifest["k"] >= QUICK.k


@pytest.mark.slow
def test_growing_k_trains_only_the_missing_models_and_a_corrupt_record_is_redone(tmp_path):
    p = QUICK
    small = reference_pool.ensure(p, 2, cache=tmp_path, workers=2, progress=False)
    stamps = {f.name: f.stat().st_mtime_ns for f in (small.dir / "retrain").glob("*.pt")}
    assert len(stamps) == 2
    grown = reference_pool.ensure(p, 3, cache=tmp_path, workers=2, progress=False)
    assert grown.k == 3
    assert {f.name: f.stat().st_mtime_ns for f in (small.dir / "retrain").glob("000[01].pt")} == stamps
    record = grown.dir / "retrain" / "0001.json"
    before = reference_pool.paths.read_json(record)
    record.write_text("{ truncated")
    again = reference_pool.ensure(p, 3, cache=tmp_path, workers=1, progress=False)
    assert again.retrains[1]["forget_confidences"] == before["forget_confidences"]  # retrained, exactly


def test_hash_ignores_k_and_budget_but_not_training():
    assert QUICK.replace(k=64, unlearn_budget_fraction=0.5).reference_hash() == QUICK.reference_hash()
    assert QUICK.replace(epochs=7).reference_hash() != QUICK.reference_hash()
    assert QUICK.replace(lr=1e-3).data_hash() == QUICK.data_hash()
