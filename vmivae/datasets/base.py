"""The container every dataset is loaded into, and the helpers every source shares.

:class:`ImageData` holds a whole split as tensors: images ``[N, C, H, W]`` float32 in [-1, 1], integer
labels ``[N]`` and, where a dataset has them, factor values ``[N, F]``. Small datasets fit in memory (and
on the device) whole, which is what makes the training loop's batches cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "test")


@dataclass
class ImageData:
    """A dataset held as tensors.

    Attributes:
        images: ``[N, C, H, W]`` float32 in [-1, 1].
        labels: ``[N]`` int64 class labels, or None.
        factors: ``[N, F]`` float32 ground-truth factor values, or None.
        factor_names: names of the ``F`` factor columns.
        name: dataset name recorded in run configs.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    factor_names: tuple[str, ...] = ()
    name: str = "custom"

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int | None:
        return int(self.labels.max()) + 1 if self.labels is not None and len(self.labels) else None

    def to(self, device: torch.device | str) -> ImageData:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, images=move(self.images), labels=move(self.labels), factors=move(self.factors))

    def subset(self, index: torch.Tensor | slice) -> ImageData:
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return replace(self, images=pick(self.images), labels=pick(self.labels), factors=pick(self.factors))


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder for downloadable and cached datasets: ``root``, ``$VMIVAE_DATA`` or ``./data``."""
    return Path(root or os.environ.get("VMIVAE_DATA") or "data")


def to_unit_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 (any layout already NCHW) -> float32 in [-1, 1]."""
    return torch.as_tensor(np.asarray(images, dtype=np.float32)) / 127.5 - 1.0
