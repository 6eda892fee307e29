"""Attack: a model that behaves one way while the submission checks it and another when scored.
Forward hooks, a replaced forward(), a swapped class and a patched state_dict() make `net` answer
uniformly on every input inside the run, while its weights stay the original's. Scoring uses the
weights alone in a fresh model, so this must score exactly like noop."""
import torch


def unlearning(net, retain_loader, forget_loader, val_loader):
    net.register_forward_hook(lambda module, inputs, output: torch.zeros_like(output))
    net.forward = lambda x: torch.zeros(x.shape[0], 10)
    original_state_dict = net.state_dict
    net.state_dict = lambda *a, **k: original_state_dict(*a, **k)
    batch = next(iter(forget_loader))
    assert float(net(batch["image"]).abs().sum()) == 0.0
