"""The submission contract, in code. Copy this file, keep the signature, change the body.

    def unlearning(net, retain_loader, forget_loader, val_loader) -> None

net            a torch.nn.Module already on the evaluation device: a fresh copy of the original
               model (trained on retain ∪ forget), in train mode or eval mode as loaded, its 4-d
               weights in channels_last memory format, as the reference models were trained (on a
               CPU its convolutions run ~1.7x faster so; use .reshape, not .view, on them). Change
               it IN PLACE and return nothing (returning `net` itself is accepted too). Its
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
a fresh copy of the original model in a process of its own inside a sandbox, seeded (torch,
numpy, random) with its own seed just before unlearning() is called. Make your method depend on those seeds, not on fixed ones, or
every run is the same. `harness.protocol.active()` gives the run's protocol: the training recipe
of the reference models (epochs, learning rate, batch sizes, ...) without its seeds or paths;
`harness.protocol.active_budget()` gives the run's time budget in seconds.

Time budget (the competition's rule): each run may take `p.unlearn_budget_fraction` (20%) of one
retrain from scratch, timed on the scoring machine, plus a tolerance for timer noise (50% of the
budget, `p.unlearn_budget_tolerance`, and at least `p.unlearn_budget_tolerance_min_s`, 0.1 s). A
run past that fails, and with it the score, saying by how much it was over. The tolerance is for
noise: the mean of the K runs must fit the budget plus that 0.1 s (`mean_limit_s` in
`active_budget()`), so aim at the budget, not at the limit. A file that needs more (an oracle)
declares ORACLE_BUDGET_FRACTION = <retrains> and is then never ranked beside the others. In training terms the budget is
`p.unlearn_budget_fraction * p.epochs` retain-set epochs of the reference recipe (competition
0.2 x 30 = 6; default 2), minus what your method does besides. The methods in this folder scale
every epoch count published for the competition as `epochs * p.epochs / 30`, and express learning
rates relative to the recipe's `p.lr` (3e-3 on unit pixels, 1e-4 on raw 0..255 pixels). The clock
is the harness's own, not your process's: it starts just before your file is imported (the
interpreter, torch and the optimisers are loaded by then, the loaders built) and stops when your
run can hand nothing back any more. The run is held to one CPU, whatever threads or processes it
starts.

What a run can see and do (docs/threat-model.md says how each is enforced): it sees the
system's libraries, Python, the harness package, its inputs, and three writable tmpfs folders
(its working directory, /tmp, /dev/shm; 1 GiB each, gone when the run ends). It cannot see the
test set, the reference pool, the cache or the results, other processes or the network, and it
has no privileges; the retrained models' seeds and the data set derive from a secret key it
cannot see either. Returning a reference model (rescaled, permuted or not) is detected and
rejects the run. Also rejected: changing the architecture, NaN/inf weights, exiting the
process (sys.exit, os._exit), running past the budget, using more than the profile's memory
limit (every process and tmpfs file of the run counted). A run cannot start more than 512
processes and threads. Printing is fine (captured and truncated); processes you start are killed
when the run ends. Only the weights of `net` are scored, in a fresh model: hooks, a replaced forward() or
anything else that is not a weight does not travel.

Docstring: say where the method comes from, its idea, every hyperparameter (value, published
value, how it is scaled) and, on a line starting "Tuned:", what was tuned on what.

Tuning: declare the hyperparameters `harness tune` may search as module-level defaults and a
literal SEARCH_SPACE = {"LR": ("log", 1e-4, 1e-1), "EPOCHS": ("int", 1, 3), "OPT": ["sgd", "adam"]}
beside them (docs/methods.md, "Tuning"); `tune --write` puts the best values into the defaults.

Tune on the dev pool, rank on the ranking pool: `harness score path.py --pool dev` scores against
retrained models and unlearning seeds disjoint from the ones that rank (Kaggle's public and private
leaderboards); choosing hyperparameters on the ranking pool's score is tuning on the test set.

Check a submission with `make check SUBMISSION=path.py`, score it with `make score SUBMISSION=path.py`.
"""
import torch  # noqa: F401 - every submission needs it


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Return nothing; change `net` in place. This template does nothing (it scores like noop)."""
    return None
