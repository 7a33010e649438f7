"""Your own images as an :class:`ImageData`: arrays, tensors and torch Datasets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .base import ImageData


def as_image_data(data: Any, labels: Any = None) -> ImageData:
    """Turn user data into :class:`ImageData`.

    Accepts an ImageData, an array/tensor of images ``[N, C, H, W]`` or ``[N, H, W]`` (uint8 0..255,
    or floats in [0, 1] or [-1, 1]), or a torch ``Dataset`` whose items are images or
    ``(image, label)`` pairs. Floats that all lie in [0, 1] are taken to be in [0, 1].
    """
    if isinstance(data, ImageData):
        return data
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.Tensor):
        items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        if items and isinstance(items[0], (tuple, list)):
            labels = torch.as_tensor([int(item[1]) for item in items]) if labels is None else labels
            items = [item[0] for item in items]
        if not items:
            raise DataError("the dataset given to fit() is empty; give at least one batch of images")
        data = torch.stack([torch.as_tensor(np.asarray(item)) for item in items])
    images = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DataError(f"images must be [N, C, H, W] or [N, H, W], got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        images = images.float() / 127.5 - 1.0
    else:
        images = images.float()
        lo, hi = float(images.min()), float(images.max())
        if not np.isfinite(lo) or not np.isfinite(hi) or lo < -1.0 or hi > 1.0:
            raise DataError(f"image values must lie in [0, 1] or [-1, 1], found [{lo:.3g}, {hi:.3g}]; rescale them first")
        if lo >= 0.0:
            images = images * 2.0 - 1.0
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
        if len(labels) != len(images):
            raise DataError(f"got {len(labels)} labels for {len(images)} images; give one label per image")
    return ImageData(images.contiguous(), labels)
