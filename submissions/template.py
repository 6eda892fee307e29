"""The submission contract, in code. Copy this file, keep the signature, change the body.

    def unlearning(net, retain_loader, forget_loader, val_loader) -> None

net            a torch.nn.Module already on the evaluation device: a fresh copy of the original
               model (trained on retain ∪ forget), in train mode or eval mode as loaded. Change it
               IN PLACE and return nothing (returning `net` itself is accepted too). Its
               architecture must not change: the same state-dict keys, shapes and dtypes, and all
               weights finite.
retain_loader  torch DataLoader over the retain set (train minus forget), shuffled;
forget_loader  torch DataLoader over the forget set (every training image of 15 identities);
val_loader     torch DataLoader over the validation set.
               Each yields dicts: "image" float32 [B, 3, H, W], "age_group" int64 [B] (the label,
               10 classes), "age" int64 [B], "person_id" int64 [B], "image_id" list[str].
               The profiles' pixel scale: `quick`/`default` feed x/255 in [0, 1]; `competition`
               and `kaggle-mini` feed 0..255 floats, as the Kaggle notebooks did (read_image cast
               to float32). Each loader holds its split in the order of the competition
               notebooks' HiddenDataset (sorted by image path) and shuffles with its own
               generator, seeded with the run's seed + 0, 1, 2 (retain, forget, validation).
               You may build new DataLoaders from `loader.dataset` (it supports indexing and
               len()); the next run gets fresh loaders whatever you do to these.

Runs: the harness calls unlearning() K times (the profile's K; 512 in the competition), each on
a fresh copy of the original model in a fresh Python process inside a sandbox, seeded (torch,
numpy, random) with its own seed just before unlearning() is called. Make your method depend on those seeds, not on fixed ones, or
every run is the same. `harness.protocol.active()` gives the run's protocol (the training recipe
of the reference models), and `harness.training` its training loop.

Time budget: each run must finish within the profile's fraction of one retrain from scratch
(20%, as the competition's 8 hours for 512 runs), measured on the scoring machine and printed
by `harness score`. In training terms that is `p.unlearn_budget_fraction * p.epochs` retain-set
epochs of the reference recipe (competition 0.2 x 30 = 6; default 2.4). The methods in this folder
scale every epoch count published for the competition as `epochs * p.epochs / 30`, and express
learning rates relative to the recipe's `p.lr` (3e-3 on unit pixels, 1e-4 on raw 0..255 pixels). The clock is the harness's own, not your process's: it starts just before your
file is imported and stops when the run ends. A run that goes past the budget plus a few seconds
of setup is killed and the whole score fails.

What a run can see and do (the README's threat model says how each is enforced): it sees the
system's libraries, Python, the harness package, its inputs, and three writable tmpfs folders
(its working directory, /tmp, /dev/shm; 1 GiB each, gone when the run ends). It cannot see the
test set, the reference pool, the cache or the results, other processes or the network, and it
has no privileges. Returning (or re-training from its public seed) a reference model is detected
and rejects the run. Also rejected: changing the architecture, NaN/inf weights, exiting the
process (sys.exit, os._exit), running past the budget, using more than the profile's memory
limit. Printing is fine (captured and truncated); processes you start are killed when the run
ends. Only the weights of `net` are scored, in a fresh model: hooks, a replaced forward() or
anything else that is not a weight does not travel.

Docstring: say where the method comes from, its idea, every hyperparameter (value, published
value, how it is scaled) and, on a line starting "Tuned:", what was tuned on what.

Tune on the dev pool, rank on the ranking pool: `harness score path.py --pool dev` scores against
retrained models and unlearning seeds disjoint from the ones that rank (Kaggle's public and private
leaderboards); choosing hyperparameters on the ranking pool's score is tuning on the test set.

Check a submission with `make check SUBMISSION=path.py`, score it with `make score SUBMISSION=path.py`.
"""
import torch  # noqa: F401 - every submission needs it


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Return nothing; change `net` in place. This template does nothing (it scores like noop)."""
    return None
