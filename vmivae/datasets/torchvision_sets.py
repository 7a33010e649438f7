"""``mnist``, ``fashion-mnist``, ``cifar10``: torchvision's datasets, downloaded once into the data root.

Offline, a missing dataset is one sentence naming the files to put where (the download is tried once).
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import ImageData, to_unit_range

TORCHVISION = {  # name -> (torchvision class, folder under root, files it needs)
    "mnist": ("MNIST", "MNIST/raw", "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", "the same four idx files as MNIST (Fashion-MNIST's)"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "data_batch_1..5, test_batch, batches.meta (from cifar-10-python.tar.gz)"),
}


def load_torchvision(name: str, split: str, root: Path) -> ImageData:
    import torchvision

    cls_name, folder, files = TORCHVISION[name]
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
