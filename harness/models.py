"""The architectures a protocol names: a small CNN for CPU profiles, torchvision's ResNet-18."""
from __future__ import annotations

import torch
from torch import nn

from harness.protocol import Protocol


def small_cnn(n_classes: int, width: int) -> nn.Module:
    """Three conv blocks (width, 2·width, 4·width), each conv-BN-ReLU-maxpool, then a linear head:
    the smallest net that still memorises identities on the synthetic faces."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes)]
    return nn.Sequential(*layers)


def small_cnn_pool_first(n_classes: int, width: int) -> nn.Module:
    """small_cnn with each block's max-pool moved before its batch norm and ReLU (conv-pool-BN-ReLU,
    as cifar10-airbench orders it): the convolutions are unchanged, but BN and ReLU, half of a
    step's time at these sizes, act on a quarter of the pixels. 0.75x the step time, and on the
    synthetic faces higher accuracy and a wider original-vs-retrained forget gap at fewer epochs."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes)]
    return nn.Sequential(*layers)


def resnet18(n_classes: int) -> nn.Module:
    # Imported here: torchvision costs a second at start-up and the CPU profiles never need it.
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=n_classes)


def build(protocol: Protocol, seed: int | None = None) -> nn.Module:
    """A freshly initialised model of the protocol's architecture; `seed` makes the init exact."""
    if seed is not None:
        torch.manual_seed(seed)
    if protocol.arch == "cnn":
        return small_cnn(protocol.n_classes, protocol.width)
    if protocol.arch == "cnn-pool-first":
        return small_cnn_pool_first(protocol.n_classes, protocol.width)
    if protocol.arch == "resnet18":
        return resnet18(protocol.n_classes)
    raise ValueError(f"unknown architecture {protocol.arch!r} in profile {protocol.name!r}: "
                     "use 'cnn', 'cnn-pool-first' or 'resnet18'")


def signature(state_dict: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    """What must not change across unlearning: every key with its shape and dtype."""
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in state_dict.items()}


def check_same_architecture(reference: dict, candidate: dict) -> None:
    """Raise ValueError naming the first difference between two state dicts' signatures."""
    ref, got = signature(reference), signature(candidate)
    missing = sorted(set(ref) - set(got))
    extra = sorted(set(got) - set(ref))
    if missing or extra:
        raise ValueError(f"architecture changed: missing keys {missing[:3]}, unexpected keys {extra[:3]}")
    for key, (shape, dtype) in ref.items():
        if got[key] != (shape, dtype):
            raise ValueError(f"architecture changed: {key} is {got[key][0]} {got[key][1]}, expected {shape} {dtype}")


def plain_state_dict(obj) -> dict:
    """A state dict of fresh, dense, CPU tensors from untrusted input; ValueError naming the first
    entry that is not one (a sparse, meta, quantized or subclassed tensor, a non-string key, a
    non-tensor value). Each tensor is copied into storage of its own, so storages shared between
    entries, or one tensor that is a view into a larger storage, do not travel further."""
    if not isinstance(obj, dict):
        raise ValueError(f"the saved weights are not a state dict but a {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"the state dict has a key that is not a string: {type(key).__name__}")
        if type(value) not in (torch.Tensor, nn.Parameter):
            raise ValueError(f"{key[:200]} is a {type(value).__name__}, not a plain tensor")
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized:
            raise ValueError(f"{key[:200]} is not a dense CPU tensor ({value.layout}, {value.device.type}"
                             f"{', quantized' if value.is_quantized else ''})")
        out[key] = value.detach().clone(memory_format=torch.contiguous_format)
    return out


def check_finite(state_dict: dict) -> None:
    for key, value in state_dict.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"weights are not finite: {key} holds NaN or inf")
