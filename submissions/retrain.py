"""The oracle: throw the original away and retrain from scratch on the retain set with exactly the
recipe that trained the reference models. By construction it is distributed like them, so it
reaches the null ceiling of forget quality. It needs a whole retrain, five times the competition's
budget, so it declares itself an oracle with a budget of its own (ORACLE_BUDGET_FRACTION below):
the harness gives it 3 retrains of time, and its rows say "oracle, own budget" and are never
ranked beside the methods'.

Source: the gold standard of every unlearning paper (exact unlearning by retraining; e.g. the
survey in ../shared/papers, and the competition's own definition of forget quality against
retrained models). Hyperparameters: exactly the active profile's training recipe (`p.epochs`,
`p.batch_size`, Adam at `p.lr`, `p.weight_decay`, `p.schedule`, class weights, best validation
checkpoint from epoch `p.retrain_best_from_epoch`), seeded with the run's own seed.

Tuned: nothing (it is the reference recipe)."""
import torch

from harness import protocol, training

ORACLE_BUDGET_FRACTION = 3.0  # a whole retrain and its evaluations, with room for a busy machine


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    seed = torch.initial_seed()  # the run's own seed, set by the harness
    state, _ = training.train(p, retain_loader.dataset.split, val_loader.dataset.split, seed,
                              best_from_epoch=p.retrain_best_from_epoch, device=next(net.parameters()).device)
    net.load_state_dict(state)
    net.eval()
