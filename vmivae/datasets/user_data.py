"""Your own images as an :class:`ImageData`: arrays, tensors, lists, torch Datasets and DataLoaders.

Accepted as images (every form becomes float32 ``[N, C, H, W]`` in [-1, 1]):

* a tensor or array ``[N, C, H, W]``, ``[N, H, W]`` (one channel) or ``[N, H, W, C]`` (channels last,
  C = 1 or 3); uint8 and other integers are pixels 0..255, booleans are black and white, floats lie
  in [0, 1] or [-1, 1] (floats that all lie in [0, 1] are taken to be in [0, 1]);
* a list (or other iterable) of images of one size, or of ``(image, label)`` pairs; a tuple
  ``(images, labels)``; items may be tensors, arrays, PIL images or dicts with an ``image`` and a
  ``label`` key (as Hugging Face datasets give them);
* a map-style torch ``Dataset``, an ``IterableDataset`` or a ``DataLoader`` of any of those (read
  through once, in the order they give; a shuffling loader gives a different order every time);
* an :class:`ImageData` (checked like the rest).

Labels are class indices 0..K-1: integers, whole floats, or one-hot rows (exactly one 1 per row).
Anything else is refused with one sentence (:class:`~vmivae.errors.DataError`): no images, images of
mixed sizes, NaN or inf pixels, values out of range, non-numeric pixels, labels that are strings,
negative or not one per image.
"""

from __future__ import annotations

import dataclasses
import os
from itertools import count
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..errors import DataError, VMIVAEError
from .base import ImageData

MAX_ITEMS = 1 << 24  # an iterable longer than this is taken to be endless
IMAGE_KEYS = ("image", "img", "images", "pixel_values", "pixels", "x", "input")
LABEL_KEYS = ("label", "labels", "target", "targets", "y", "class")


def as_image_data(data: Any, labels: Any = None) -> ImageData:
    """Turn user data into :class:`ImageData` (see the module docstring for what is accepted)."""
    if isinstance(data, ImageData):
        images = _pixels(data.images, signed=True)
        return dataclasses.replace(data, images=images, labels=_labels(data.labels if labels is None else labels, len(images)))
    images, found = _collect(data)
    images = _pixels(images)
    return ImageData(images, _labels(found if labels is None else labels, len(images)))


# ---------------------------------------------------------------------------- reading the containers


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:160]


def _collect(data: Any) -> tuple[Any, Any]:
    """``(images, labels or None)`` from any accepted container; images still in their own form."""
    if data is None:
        raise DataError("no images were given; pass a tensor or array [N, C, H, W], a list of images, a Dataset or a DataLoader")
    if isinstance(data, (str, bytes, os.PathLike)):
        raise DataError(f"fit() takes images, not a path ({data!r}); load them first, e.g. as an array [N, C, H, W]")
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return data, None
    if isinstance(data, dict):
        return _from_dict(data, "the dict given")
    if isinstance(data, DataLoader):
        if data.batch_size is None:  # items one by one, not batches
            return _stack_items(_iterate(data, "DataLoader"))
        return _stack_batches(_iterate(data, "DataLoader"))
    if isinstance(data, IterableDataset):
        return _stack_items(_iterate(data, "dataset"))
    if isinstance(data, Dataset):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise DataError("the Dataset given has no len(); give a map-style Dataset, an IterableDataset or a DataLoader") from None
        return _stack_items(_indexed(data, n))
    if isinstance(data, tuple) and len(data) == 2 and _is_images_and_labels(*data):
        return data
    if hasattr(data, "__iter__") or hasattr(data, "__getitem__"):
        return _stack_items(_iterate(data, type(data).__name__))
    raise DataError(f"cannot read images from a {type(data).__name__}; give a tensor or array [N, C, H, W], a list of images, "
                    "a Dataset or a DataLoader")


def _is_images_and_labels(images: Any, labels: Any) -> bool:
    """Whether a 2-tuple is ``(images [N, ...], labels [N] or [N, K])`` rather than two images."""
    try:
        return np.ndim(labels) in (1, 2) and (np.ndim(images) >= 3 or np.ndim(images) == 2 and np.ndim(labels) == 1)
    except (TypeError, ValueError, RuntimeError):
        return False


def _iterate(source: Any, what: str):
    try:
        iterator = iter(source)
    except Exception as exc:
        raise DataError(f"cannot iterate over the {what} given ({type(exc).__name__}: {_first_line(exc)})") from None
    for i in count():
        try:
            item = next(iterator)
        except StopIteration:
            return
        except VMIVAEError:
            raise
        except Exception as exc:
            raise DataError(f"reading item {i} of the {what} failed ({type(exc).__name__}: {_first_line(exc)})") from None
        if i >= MAX_ITEMS:
            raise DataError(f"the {what} gives more than {MAX_ITEMS} items; is it endless? give a finite dataset")
        yield item


def _indexed(dataset: Any, n: int):
    for i in range(n):
        try:
            yield dataset[i]
        except VMIVAEError:
            raise
        except Exception as exc:
            raise DataError(f"reading item {i} of the dataset failed ({type(exc).__name__}: {_first_line(exc)})") from None


def _from_dict(item: dict, where: str) -> tuple[Any, Any]:
    image_key = next((k for k in IMAGE_KEYS if k in item), None)
    if image_key is None:
        raise DataError(f"{where} has no image under any of the keys {', '.join(IMAGE_KEYS)}; it has {', '.join(map(str, item))}")
    return item[image_key], next((item[k] for k in LABEL_KEYS if k in item), None)


def _split(item: Any, where: str) -> tuple[Any, Any]:
    """An item's ``(image, label or None)``: tuples are ``(image, label, ...)``, dicts have keys, else an image."""
    if isinstance(item, dict):
        return _from_dict(item, where)
    if isinstance(item, tuple):
        if not item:
            raise DataError(f"{where} is an empty tuple; give an image or an (image, label) pair")
        return item[0], (item[1] if len(item) > 1 else None)
    return item, None


def _numpy(x: Any, where: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype in (torch.bfloat16,) else x).numpy()
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where} is not an array of numbers ({_first_line(exc)})") from None


def _labels_of(found: list[Any]) -> Any:
    given = [label is not None for label in found]
    if any(given) and not all(given):
        i = given.index(not given[0])
        raise DataError(f"item {i} has {'no label' if given[0] else 'a label'} but item 0 {'has one' if given[0] else 'has none'}; "
                        "give a label with every image or with none")
    return found if found and all(given) else None


def _stack_items(items) -> tuple[np.ndarray, Any]:
    images, found = [], []
    for i, item in enumerate(items):
        image, label = _split(item, f"item {i}")
        image = _numpy(image, f"image {i}")
        if images and image.shape != images[0].shape:
            raise DataError(f"the images have different sizes: image 0 is {tuple(images[0].shape)}, image {i} is {tuple(image.shape)}; "
                            "resize them to one size")
        images.append(image)
        found.append(label)
    if not images:
        raise DataError("the data given hold no images; give at least one batch of images")
    return np.stack(images), _labels_of(found)


def _stack_batches(batches) -> tuple[np.ndarray, Any]:
    images, found = [], []
    for i, batch in enumerate(batches):
        if isinstance(batch, list) and batch:  # the default collate turns (image, label) items into [images, labels]
            image, label = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            image, label = _split(batch, f"batch {i}")
        image = _numpy(image, f"batch {i}")
        if images and image.shape[1:] != images[0].shape[1:]:
            raise DataError(f"the images have different sizes: batch 0 holds {tuple(images[0].shape[1:])}, batch {i} holds "
                            f"{tuple(image.shape[1:])}; resize them to one size")
        images.append(image)
        found.append(None if label is None else _numpy(label, f"the labels of batch {i}"))
    if not images:
        raise DataError("the DataLoader given yields no batches; give at least one batch of images")
    labels = _labels_of(found)
    return np.concatenate(images), (np.concatenate([np.atleast_1d(b) for b in labels]) if labels is not None else None)


# ---------------------------------------------------------------------------- pixels and labels


def _pixels(images: Any, signed: bool = False) -> torch.Tensor:
    """float32 ``[N, C, H, W]`` in [-1, 1]; ``signed``: floats are in [-1, 1] already (an ImageData)."""
    a = _numpy(images, "the images")
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
            raise DataError(f"image values must lie in [0, 1] or [-1, 1], found [{lo:.3g}, {hi:.3g}]; rescale them first")
        x = a.astype(np.float32, copy=False)
        if lo >= 0.0 and not signed:
            x = x * 2 - 1
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def _labels(labels: Any, n: int) -> torch.Tensor | None:
    """int64 ``[n]`` class indices from integers, whole floats or one-hot rows; None stays None."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)):
        raise DataError(f"labels must be class indices 0..K-1, one per image, got the string {labels!r}")
    if not isinstance(labels, (torch.Tensor, np.ndarray)):
        try:
            labels = [_numpy(label, "a label") if isinstance(label, torch.Tensor) else label for label in labels]
        except TypeError:
            raise DataError(f"labels must be a sequence of class indices, one per image, got a {type(labels).__name__}") from None
    try:
        a = _numpy(labels, "the labels")
    except DataError:
        raise DataError("the labels have mixed shapes; give one class index (or one one-hot row) per image") from None
    if a.dtype.kind in "USOc":
        sample = _plain(a.reshape(-1)[0]) if a.size else None
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
                        f"{_plain(a[~(np.isfinite(a) & (a == np.round(a)))][0])!r}")
    a = a.astype(np.int64)
    if len(a) and a.min() < 0:
        raise DataError(f"labels must be class indices 0..K-1, found {int(a.min())}")
    if len(a) != n:
        raise DataError(f"got {len(a)} labels for {n} images; give one label per image")
    return torch.from_numpy(a)
