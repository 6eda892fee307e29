"""The oracle: throw the original away and retrain from scratch on the retain set with exactly the
recipe that trained the reference models. By construction it is distributed like them, so it
reaches the null ceiling of forget quality; it needs a whole retrain, far over the time budget
(score it with --budget-fraction 3, as `harness ladder` and `harness score-all` do).

Source: the gold standard of every unlearning paper (exact unlearning by retraining; e.g. the
survey in ../shared/papers, and the competition's own definition of forget quality against
retrained models). Hyperparameters: exactly the active profile's training recipe (`p.epochs`,
`p.batch_size`, Adam at `p.lr`, `p.weight_decay`, `p.schedule`, class weights, best validation
checkpoint from epoch `p.retrain_best_from_epoch`), seeded with the run's own seed.

Tuned: nothing (it is the reference recipe)."""
import torch

from harness import protocol, training


def unlearning(net, retain_loader, forget_loader, val_loader):
    p = protocol.active()
    seed = torch.initial_seed()  # the run's own seed, set by the harness
    state, _ = training.train(p, retain_loader.dataset.split, val_loader.dataset.split, seed,
                              best_from_epoch=p.retrain_best_from_epoch, device=next(net.parameters()).device)
    net.load_state_dict(state)
    net.eval()
