"""Your own images as an :class:`ImageData`: arrays, tensors, lists, torch Datasets and DataLoaders.

Accepted as images (every form becomes float32 ``[N, C, H, W]`` in [-1, 1]):

* a tensor or array ``[N, C, H, W]``, ``[N, H, W]`` (one channel) or ``[N, H, W, C]`` (channels last,
  C = 1 or 3); uint8 and other integers are pixels 0..255, booleans are black and white, floats lie
  in [0, 1] or [-1, 1] (floats that all lie in [0, 1] are taken to be in [0, 1]);
* a list (or other iterable) of images of one size, or of ``(image, label)`` pairs; a tuple
  ``(images, labels)`` (or ``(images, None)``); items may be tensors, arrays, PIL images or dicts with an ``image`` and a
  ``label`` key (as Hugging Face datasets give them);
* a map-style torch ``Dataset``, an ``IterableDataset`` or a ``DataLoader`` of any of those (read
  through once, in the order they give; a shuffling loader gives a different order every time);
* an :class:`ImageData` (checked like the rest).

Labels are class indices 0..K-1: integers, whole floats, or one-hot rows (exactly one 1 per row).
Anything else is refused with one sentence (:class:`~vmivae.errors.DataError`): no images, images of
mixed sizes, NaN or inf pixels, values out of range, non-numeric pixels, labels that are strings,
negative or not one per image; pandas tables, sparse or meta-device tensors, ``(images, labels, extra)``;
and an iterable that yields more pixels than a quarter of the free memory (an endless one, such as
``itertools.repeat(image)``, would otherwise read until memory runs out).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..errors import DataError, VMIVAEError
from .base import ImageData
from .pixels import as_numpy, first_line, plain, to_labels, to_pixels

MAX_ITEMS = 1 << 24  # an iterable longer than this is taken to be endless


def _free_memory() -> int:
    """Bytes this process can still allocate: the least of the machine's free memory, its cgroup's and its address-space limit."""
    import resource

    limits = []
    try:
        with open("/proc/meminfo") as f:
            limits += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
        with open("/proc/self/status") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        limits += [soft - used] if soft != resource.RLIM_INFINITY else []
        cgroup = Path("/sys/fs/cgroup")
        if (cgroup / "memory.max").is_file() and (top := (cgroup / "memory.max").read_text().strip()) != "max":
            limits.append(int(top) - int((cgroup / "memory.current").read_text()))
    except (OSError, StopIteration, ValueError):
        pass
    return max(min(limits), 0) if limits else 16 << 30


def max_bytes() -> int:
    """How many bytes of float32 pixels an iterable may yield: a quarter of the free memory (stacking copies them twice)."""
    return _free_memory() // 4


IMAGE_KEYS = ("image", "img", "images", "pixel_values", "pixels", "x", "input")
LABEL_KEYS = ("label", "labels", "target", "targets", "y", "class")


def as_image_data(data: Any, labels: Any = None) -> ImageData:
    """Turn user data into :class:`ImageData` (see the module docstring for what is accepted)."""
    if isinstance(data, ImageData):
        images = to_pixels(data.images, signed=True)
        return dataclasses.replace(data, images=images, labels=to_labels(data.labels if labels is None else labels, len(images)))
    images, found = _collect(data)
    images = to_pixels(images)
    return ImageData(images, to_labels(found if labels is None else labels, len(images)))


# ---------------------------------------------------------------------------- reading the containers


def _collect(data: Any) -> tuple[Any, Any]:
    """``(images, labels or None)`` from any accepted container; images still in their own form."""
    if data is None:
        raise DataError("no images were given; pass a tensor or array [N, C, H, W], a list of images, a Dataset or a DataLoader")
    if isinstance(data, (str, bytes, os.PathLike)):
        raise DataError(f"fit() takes images, not a path ({data!r}); load them first, e.g. as an array [N, C, H, W]")
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return data, None
    if type(data).__name__ == "DataFrame":  # pandas, polars: iterating one gives its column names
        raise DataError(f"a {type(data).__module__.split('.')[0]} DataFrame is a table, not images; convert it to an array "
                        "[N, C, H, W] first, e.g. table.to_numpy().reshape(-1, 1, 28, 28) for rows of 784 pixels")
    if isinstance(data, (itertools.repeat, itertools.count, itertools.cycle)) and _endless(data):
        raise DataError(f"the itertools.{type(data).__name__} given never ends; give a finite number of images, "
                        "e.g. itertools.islice(it, n) or a list")
    if isinstance(data, dict):
        return _from_dict(data, "the dict given")
    if isinstance(data, DataLoader):
        if data.batch_size is None:  # items one by one, not batches
            return _stack_items(_iterate(data, "DataLoader"), "DataLoader")
        return _stack_batches(_iterate(data, "DataLoader"))
    if isinstance(data, IterableDataset):
        return _stack_items(_iterate(data, "dataset"), "dataset")
    if isinstance(data, Dataset):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError as exc:
            if "no len" not in str(exc) and "__len__" not in str(exc):
                raise DataError(f"the Dataset given has a len() that fails ({first_line(exc)}); make __len__ return the number of items") from None
            raise DataError("the Dataset given has no len(); give a map-style Dataset, an IterableDataset or a DataLoader") from None
        except Exception as exc:
            raise DataError(f"the Dataset given has a len() that fails ({type(exc).__name__}: {first_line(exc)}); "
                            "make __len__ return the number of items") from None
        return _stack_items(_indexed(data, n), "dataset", n)
    if isinstance(data, tuple) and len(data) == 2 and data[1] is None:
        return _collect(data[0])
    if isinstance(data, tuple) and len(data) == 2 and _is_images_and_labels(*data):
        return data
    if isinstance(data, tuple) and len(data) > 2 and _is_images_and_labels(*data[:2]):
        raise DataError(f"a tuple of {len(data)} items was given, which reads as (images, labels, and {len(data) - 2} more); "
                        "give (images, labels) or the images alone")
    if hasattr(data, "__iter__") or hasattr(data, "__getitem__"):
        return _stack_items(_iterate(data, type(data).__name__), type(data).__name__)
    raise DataError(f"cannot read images from a {type(data).__name__}; give a tensor or array [N, C, H, W], a list of images, "
                    "a Dataset or a DataLoader")


def _endless(it: Any) -> bool:
    """Whether an itertools iterator yields forever: ``count``, ``cycle`` (of anything but nothing), ``repeat(x)`` without ``times``."""
    if isinstance(it, itertools.repeat):
        try:
            it.__length_hint__()  # operator.length_hint would swallow the TypeError
        except TypeError:  # repeat(x) has no length; repeat(x, n) has n
            return True
        return False
    return True


def _too_much(what: str, read: int, size: int, expected: int | None = None) -> DataError:
    gib = size / 2**30
    if expected is not None:
        return DataError(f"the {what} given holds {expected} images, {gib:.3g} GiB as float32 pixels, more than a quarter of the free memory; "
                         "give fewer images, e.g. torch.utils.data.Subset(dataset, range(n))")
    return DataError(f"the {what} given has yielded {read} images ({gib:.3g} GiB as float32 pixels, a quarter of the free memory) "
                     "and has not ended; if it is endless, give a finite one, e.g. itertools.islice(it, n)")


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
        raise DataError(f"cannot iterate over the {what} given ({type(exc).__name__}: {first_line(exc)})") from None
    for i in itertools.count():
        try:
            item = next(iterator)
        except StopIteration:
            return
        except VMIVAEError:
            raise
        except Exception as exc:
            raise DataError(f"reading item {i} of the {what} failed ({type(exc).__name__}: {first_line(exc)})") from None
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
            raise DataError(f"reading item {i} of the dataset failed ({type(exc).__name__}: {first_line(exc)})") from None


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


def _labels_of(found: list[Any]) -> Any:
    given = [label is not None for label in found]
    if any(given) and not all(given):
        i = given.index(not given[0])
        raise DataError(f"item {i} has {'no label' if given[0] else 'a label'} but item 0 {'has one' if given[0] else 'has none'}; "
                        "give a label with every image or with none")
    return found if found and all(given) else None


def _stack_items(items, what: str = "data", expected: int | None = None) -> tuple[np.ndarray, Any]:
    images, found, size, budget = [], [], 0, max_bytes()
    for i, item in enumerate(items):
        image, label = _split(item, f"item {i}")
        image = as_numpy(image, f"image {i}")
        if image.ndim == 0:
            raise DataError(f"item {i} of the {what} is a single {type(plain(image[()])).__name__}, not an image; "
                            "give images (arrays [C, H, W] or [H, W]) or (image, label) pairs")
        size += 4 * image.size + 128  # as float32, plus what Python keeps per item
        if expected is not None and (size * expected) // (i + 1) > budget:
            raise _too_much(what, i + 1, (size * expected) // (i + 1), expected)
        if size > budget:
            raise _too_much(what, i + 1, size)
        if images and image.shape != images[0].shape:
            raise DataError(f"the images have different sizes: image 0 is {tuple(images[0].shape)}, image {i} is {tuple(image.shape)}; "
                            "resize them to one size")
        images.append(image)
        found.append(label)
    if not images:
        raise DataError("the data given hold no images; give at least one batch of images")
    return np.stack(images), _labels_of(found)


def _stack_batches(batches) -> tuple[np.ndarray, Any]:
    images, found, size, budget = [], [], 0, max_bytes()
    for i, batch in enumerate(batches):
        if isinstance(batch, list) and batch:  # the default collate turns (image, label) items into [images, labels]
            image, label = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            image, label = _split(batch, f"batch {i}")
        image = as_numpy(image, f"batch {i}")
        size += 4 * image.size + 128
        if size > budget:
            raise _too_much("DataLoader", sum(len(b) for b in images) + len(image), size)
        if images and image.shape[1:] != images[0].shape[1:]:
            raise DataError(f"the images have different sizes: batch 0 holds {tuple(images[0].shape[1:])}, batch {i} holds "
                            f"{tuple(image.shape[1:])}; resize them to one size")
        images.append(image)
        found.append(None if label is None else as_numpy(label, f"the labels of batch {i}"))
    if not images:
        raise DataError("the DataLoader given yields no batches; give at least one batch of images")
    labels = _labels_of(found)
    return np.concatenate(images), (np.concatenate([np.atleast_1d(b) for b in labels]) if labels is not None else None)
