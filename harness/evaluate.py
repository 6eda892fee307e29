"""Evaluation in trusted code, of any model: the checks a state dict from untrusted bytes must pass,
the accuracies, forget confidences and outputs of one model (the same code for the reference
models and the unlearned ones, so the two populations are measured alike), the encodings records
keep them in, and the copy check against the reference pool (harness.copies)."""
from __future__ import annotations

import base64
import io
import time

import numpy as np

from harness import metric
from harness.protocol import Protocol


class Rejected(ValueError):
    """Weights that cannot be scored, or that are a copy of the reference pool: the reason."""


def load_weights(blob: bytes, original: dict) -> dict:
    """A state dict from untrusted bytes (weights_only: no code runs), with the original's
    architecture and finite weights; ValueError naming the first problem."""
    import torch

    from harness import models

    weights = models.plain_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))
    models.check_same_architecture(original, weights)
    models.check_finite(weights)
    return weights


def evaluate_state(protocol: Protocol, state: dict, splits: dict, device=None) -> dict:
    """Accuracies (percent), forget-set confidences and the outputs the report's metrics need, of
    one model; the same code scores the reference models and the unlearned ones, so the two
    populations are measured alike."""
    import torch

    from harness import models, training

    device = device or training.resolve_device(protocol)
    model = models.build(protocol).to(device).to(memory_format=torch.channels_last)
    model.load_state_dict(state)
    out, kept = {}, {}
    for name in ("retain", "test", "forget", "validation"):
        split = splits[name]
        x = training.model_input(split, protocol, device)
        lg = training.logits(model, x, protocol.eval_batch_size, protocol)
        if not torch.isfinite(lg).all():  # finite weights can still overflow float32 (huge ones)
            raise ValueError(f"the model's outputs on the {name} set are not finite (NaN or inf): weights too large?")
        out[f"{'val' if name == 'validation' else name}_acc"] = (
            100.0 * (lg.argmax(1) == split.age_group).double().mean().item())
        if name == "forget":
            conf = metric.confidences(lg.double().numpy()[None], split.age_group.numpy())[0]
            out["forget_confidences"] = conf.tolist()
            kept["forget_logits"] = encode_array(lg.numpy())
            kept["tta_forget_acc"] = {view: 100.0 * (training.logits(model, _view(x, view), protocol.eval_batch_size, protocol)
                                                     .argmax(1) == split.age_group).double().mean().item()
                                      for view in TTA_VIEWS}
        if name == "test":
            kept["test_logits"] = encode_array(lg[:TEST_SAMPLE].numpy())
    out["outputs"] = kept
    return {**out, **training.device_info(device)}


# What the report keeps of every model (harness.report): logits on the forget set and on the first
# TEST_SAMPLE test images, as float16 (the report's views need no more), and forget accuracy under
# test-time augmentation (PROTOCOL §8: flips and a 90% centre crop).
TEST_SAMPLE = 500
TTA_VIEWS = ("hflip", "vflip", "crop")
CROP_FRACTION = 0.9


def _view(x, view: str):
    import torch
    import torch.nn.functional as F

    if view == "hflip":
        return x.flip(3)
    if view == "vflip":
        return x.flip(2)
    size = x.shape[-1]
    c = max(1, round(size * CROP_FRACTION))
    lo = (size - c) // 2
    crop = x[..., lo:lo + c, lo:lo + c]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False).contiguous(
        memory_format=torch.channels_last)


def encode_array(a: np.ndarray) -> dict:
    """A float array as float16 bytes in base64 (JSON records stay small)."""
    a16 = np.ascontiguousarray(a, dtype=np.float16)
    return {"dtype": "float16", "shape": list(a16.shape), "b64": base64.b64encode(a16.tobytes()).decode()}


def decode_array(blob: dict) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(blob["b64"]), dtype=np.dtype(blob["dtype"]))
    return a.reshape(blob["shape"]).astype(np.float32)


def function_vector(outputs: dict):
    """A model's function for the copy check (harness.copies): its kept logits on the forget set and
    on the test sample, as a record stores them (float16, so the pool's and a run's match in kind)."""
    from harness import copies

    return copies.function_vector(decode_array(outputs["forget_logits"]), decode_array(outputs["test_logits"]))




def check(protocol: Protocol, state: dict, weights: dict) -> tuple[dict, dict]:
    """Score checked weights: accuracies, forget confidences, and the copy check against the pool
    views in a worker's run `state` (harness.runner). (metrics, nearest); Rejected with the reason."""
    from harness import copies

    t_eval = time.perf_counter()
    try:
        metrics = evaluate_state(protocol, weights, state["splits"])
    except Exception as e:  # noqa: BLE001 - whatever checked weights still do to the evaluation rejects them
        lines = [ln for ln in (str(e) or type(e).__name__).strip().splitlines() if ln.strip()]
        raise Rejected(f"its weights cannot be evaluated: {lines[-1][:400] if lines else type(e).__name__}") from None
    metrics["eval_seconds"] = time.perf_counter() - t_eval
    near = copies.nearest(copies.view(weights, state["structure"]), function_vector(metrics["outputs"]),
                          state["pool_views"], state["pool_funcs"])
    copied = copies.copy_reason(near, state["closest_pair"])
    if copied:
        raise Rejected(f"it returned a copy of the reference pool: {copied}. A submission must unlearn the original "
                       "it is given, not hand back a retrained model")
    return metrics, near
