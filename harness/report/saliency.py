"""Saliency maps: where a model looks on a forget image, as the magnitude of the gradient of the
true class's logit with respect to the input pixels (max over colour channels)."""
from __future__ import annotations

import numpy as np
import torch

from harness import data, models
from harness.protocol import Protocol


def input_gradients(protocol: Protocol, state: dict, images_uint8: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """[M, H, W] float32 for images uint8 [M, 3, H, W] and their labels [M], in eval mode on the CPU."""
    model = models.build(protocol)
    model.load_state_dict(state)
    model.eval()
    x = data.to_model_input(images_uint8, protocol.pixel_scale).requires_grad_(True)
    picked = model(x).gather(1, labels.long()[:, None]).sum()
    (grad,) = torch.autograd.grad(picked, x)
    return grad.abs().amax(1).numpy().astype(np.float32)
