"""Attack: rebuild retrained model 0 of the pool without reading it, from the public recipe and
its public seed (the profile's retrain_seed0 + 0, read from the repository: a run is told no seeds),
and return it. The loaders hold the data in the Kaggle notebooks' order; the attacker puts it back
in the CSV order (person, then image number) that the pool was trained on. With public seeds this
reproduces the pool's model bit for bit, and the copy check must reject it. With secret seeds (the
default) the seed is unknown and what comes back is only an honest retrain."""
import torch

from harness import data, protocol, training


def csv_order(split):
    key = [tuple(int(x) for x in i.rsplit("-", 1)) for i in split.image_id]
    idx = torch.tensor(sorted(range(len(key)), key=key.__getitem__))
    return data.Split(images=split.images[idx], age_group=split.age_group[idx], age=split.age[idx],
                      person_id=split.person_id[idx], image_id=[split.image_id[i] for i in idx.tolist()])


def public_profile(told):
    """The profile the run belongs to, as the repository publishes it (seeds included)."""
    return protocol.PROFILES[told.name.split("+")[0].removesuffix(protocol.DEV_SUFFIX)]


def rebuild(net, retain_loader, val_loader):
    told = protocol.active()
    seed = public_profile(told).retrain_seed0
    state, _ = training.train(told, csv_order(retain_loader.dataset.split), csv_order(val_loader.dataset.split),
                              seed, best_from_epoch=told.retrain_best_from_epoch, device=next(net.parameters()).device)
    return state


def unlearning(net, retain_loader, forget_loader, val_loader):
    net.load_state_dict(rebuild(net, retain_loader, val_loader))
