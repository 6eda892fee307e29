"""What the model sees: the loaders handed to training and to submissions (dicts with the
competition loaders' keys), the pixel scale, and the class weights of the loss."""
from __future__ import annotations

import torch

from harness.data.layout import Split


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """1 / (number of training images of the class); 0 for a class with no images."""
    counts = torch.bincount(labels.long().flatten(), minlength=n_classes)[:n_classes].float()
    return torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts)).float()


def to_model_input(images_uint8: torch.Tensor, pixel_scale: str) -> torch.Tensor:
    """"unit": x / 255; "raw": 0..255 as float (the Kaggle notebooks' read_image().float())."""
    if pixel_scale == "unit":
        return images_uint8.float() / 255.0
    if pixel_scale == "raw":
        return images_uint8.float()
    raise ValueError(f"unknown pixel_scale {pixel_scale!r}: use 'unit' or 'raw'")


class FaceAgeDataset(torch.utils.data.Dataset):
    """Items are dicts with the competition loaders' keys: image, age_group, age, person_id, image_id."""

    def __init__(self, split: Split, pixel_scale: str):
        to_model_input(split.images[:0], pixel_scale)  # validate the scale now, not on first access
        self.split = split
        self.pixel_scale = pixel_scale

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        s = self.split
        return {"image": to_model_input(s.images[i], self.pixel_scale), "age_group": s.age_group[i],
                "age": s.age[i], "person_id": s.person_id[i], "image_id": s.image_id[i]}


def make_loader(split: Split, pixel_scale: str, batch_size: int, shuffle: bool,
                seed: int | None = None) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed) if shuffle and seed is not None else None
    return torch.utils.data.DataLoader(FaceAgeDataset(split, pixel_scale), batch_size=batch_size,
                                       shuffle=shuffle, generator=generator, num_workers=0)
