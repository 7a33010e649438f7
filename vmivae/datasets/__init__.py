"""Datasets as tensors: one module per source, one registry, one container.

``load(name, split)`` returns an :class:`ImageData` (images ``[N, C, H, W]`` float32 in [-1, 1], labels,
factors). Modules: ``base`` (the container), ``mnist5k``, ``torchvision_sets``, ``celeba``, ``shapes``
(the sources), ``registry`` (names -> sources, ``load``), ``user_data`` (your own images, from any container) and
``pixels`` (their pixel values and labels, checked and converted).
"""

from .base import SPLITS, ImageData, data_root, to_unit_range
from .registry import DATASET_NAMES, REGISTRY, DatasetInfo, is_available, load
from .user_data import as_image_data

__all__ = ["DATASET_NAMES", "REGISTRY", "SPLITS", "DatasetInfo", "ImageData", "as_image_data", "data_root", "is_available", "load", "to_unit_range"]
