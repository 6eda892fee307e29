"""Attack: rebuild retrained model 0 (as rebuilds_pool_from_seeds does; a run sees only its own file,
so the rebuild is written out again here), then disguise it so that a copy check on raw weights and
on forget-set confidences lets it through: every convolution scaled by 3 with its batch norm's
running mean by 3 and running variance by 9 (the same function, weights far from the pool's), then a
little noise on the head (the forget confidences move). Under public seeds it is the pool's model 0
in disguise; under secret seeds (the default) an honest retrain in disguise."""
import torch
from torch import nn

from harness import data, protocol, training

HEAD_NOISE = 0.5  # of the head's weight std: past 0.25x the closest pair in forget confidences (K=2)


def csv_order(split):
    key = [tuple(int(x) for x in i.rsplit("-", 1)) for i in split.image_id]
    idx = torch.tensor(sorted(range(len(key)), key=key.__getitem__))
    return data.Split(images=split.images[idx], age_group=split.age_group[idx], age=split.age[idx],
                      person_id=split.person_id[idx], image_id=[split.image_id[i] for i in idx.tolist()])


def unlearning(net, retain_loader, forget_loader, val_loader):
    told = protocol.active()
    seed = protocol.PROFILES[told.name.split("+")[0].removesuffix(protocol.DEV_SUFFIX)].retrain_seed0
    state, _ = training.train(told, csv_order(retain_loader.dataset.split), csv_order(val_loader.dataset.split),
                              seed, best_from_epoch=told.retrain_best_from_epoch, device=next(net.parameters()).device)
    net.load_state_dict(state)
    with torch.no_grad():
        conv = None
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                conv = module
            elif isinstance(module, nn.BatchNorm2d) and conv is not None:
                conv.weight.mul_(3.0)
                module.running_mean.mul_(3.0)
                module.running_var.mul_(9.0)
                conv = None
        head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
        head.weight.add_(HEAD_NOISE * head.weight.std() * torch.randn_like(head.weight))
