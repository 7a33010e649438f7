"""Pixel values and labels of your own images, checked and converted (``vmivae.datasets.user_data`` reads the containers).

Pixels become float32 ``[N, C, H, W]`` in [-1, 1] (uint8 and other integers are 0..255, booleans black
and white, floats in [0, 1] or [-1, 1]); labels become int64 class indices ``[N]``. Anything else is a
:class:`~vmivae.errors.DataError` of one sentence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import DataError


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:160]


def as_numpy(x: Any, where: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided:
            raise DataError(f"cannot read {where} from a sparse tensor ({x.layout}); make it dense first with .to_dense()")
        if x.device.type == "meta":
            raise DataError(f"cannot read {where} from a tensor on the meta device, which has a shape but no values; give a tensor that holds them")
        x = x.detach().cpu()
        try:
            return (x.float() if x.dtype in (torch.bfloat16,) else x).numpy()
        except (TypeError, RuntimeError) as exc:
            raise DataError(f"cannot read {where} from a {x.dtype} tensor ({first_line(exc)}); convert it first, e.g. with .float()") from None
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where} is not an array of numbers ({first_line(exc)})") from None


def to_pixels(images: Any, signed: bool = False) -> torch.Tensor:
    """float32 ``[N, C, H, W]`` in [-1, 1]; ``signed``: floats are in [-1, 1] already (an ImageData)."""
    a = as_numpy(images, "the images")
    kind = a.dtype.kind
    if kind == "c":
        raise DataError(f"the images are complex numbers ({a.dtype}); give real pixel values, e.g. their magnitude")
    if kind not in "biuf":
        raise DataError(f"the images hold {a.dtype} values, not numbers; give pixel values (uint8 0..255, or floats in [0, 1] or [-1, 1])")
    if a.ndim == 2 and a.shape[0] > 0:
        side = int(round(a.shape[1] ** 0.5))
        hint = f", e.g. images.reshape(-1, 1, {side}, {side})" if side * side == a.shape[1] else ""
        raise DataError(f"images must be [N, C, H, W], [N, H, W] or [N, H, W, C], not flat vectors {tuple(a.shape)}; reshape them{hint}")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise DataError(f"images must be [N, C, H, W], [N, H, W] or [N, H, W, C], got shape {tuple(a.shape)}")
    if a.shape[0] == 0:
        raise DataError("the data given hold no images; give at least one batch of images")
    if a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)  # channels last (PIL, NumPy, TensorFlow): channels first
    if 0 in a.shape:
        raise DataError(f"the images are empty (shape {tuple(a.shape)}); give images of at least 8x8 pixels")
    if kind == "b":
        x = a.astype(np.float32) * 2 - 1
    elif kind in "ui":
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise DataError(f"integer pixels must lie in 0..255, found [{lo}, {hi}]; rescale them, or give floats in [0, 1] or [-1, 1]")
        x = a.astype(np.float32) / 127.5 - 1
    else:
        finite = np.isfinite(a)
        if not finite.all():
            first = int(np.argmin(finite.reshape(len(a), -1).all(axis=1)))
            raise DataError(f"the images contain NaN or inf values (the first in image {first}), but pixel values must lie in [0, 1] or "
                            "[-1, 1]; remove those images or replace the values")
        lo, hi = float(a.min()), float(a.max())
        if lo < -1.0 or hi > 1.0:
            raise DataError(f"image values must lie in [0, 1] or [-1, 1], found [{_shown(a.min())}, {_shown(a.max())}]; rescale them first")
        x = a.astype(np.float32, copy=False)
        if lo >= 0.0 and not signed:
            x = x * 2 - 1
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _shown(value: np.generic) -> str:
    """A pixel value short (3 digits) where that keeps its side of -1, 0 and 1, else in full: 1.0001, not 1."""
    short = float(f"{float(value):.3g}")
    if all((short < b) == (value < b) and (short > b) == (value > b) for b in (-1.0, 0.0, 1.0)):
        return f"{float(value):.3g}"
    return str(value)


def plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def to_labels(labels: Any, n: int) -> torch.Tensor | None:
    """int64 ``[n]`` class indices from integers, whole floats or one-hot rows; None stays None."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)):
        raise DataError(f"labels must be class indices 0..K-1, one per image, got the string {labels!r}")
    if not isinstance(labels, (torch.Tensor, np.ndarray)):
        try:
            labels = [as_numpy(label, "a label") if isinstance(label, torch.Tensor) else label for label in labels]
        except TypeError:
            raise DataError(f"labels must be a sequence of class indices, one per image, got a {type(labels).__name__}") from None
    try:
        a = as_numpy(labels, "the labels")
    except DataError:
        raise DataError("the labels have mixed shapes; give one class index (or one one-hot row) per image") from None
    if a.dtype.kind in "USOc":
        sample = plain(a.reshape(-1)[0]) if a.size else None
        raise DataError(f"labels must be class indices 0..K-1, got values such as {sample!r}; map class names to integers first")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2:
        if not (((a == 0) | (a == 1)).all() and (a.sum(axis=1) == 1).all()):
            raise DataError(f"labels of shape {tuple(a.shape)} are not one-hot (exactly one 1 per row); give one class index per image")
        a = a.argmax(axis=1)
    if a.ndim != 1:
        raise DataError(f"labels must be one class index per image, shape [N], got shape {tuple(a.shape)}")
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise DataError("labels must be whole numbers (class indices 0..K-1); found values such as "
                        f"{plain(a[~(np.isfinite(a) & (a == np.round(a)))][0])!r}")
    a = a.astype(np.int64)
    if len(a) and a.min() < 0:
        raise DataError(f"labels must be class indices 0..K-1, found {int(a.min())}")
    if len(a) != n:
        raise DataError(f"got {len(a)} labels for {n} images; give one label per image")
    return torch.from_numpy(a)
