"""CelebA from a local folder in torchvision's layout, centre-cropped and resized to 64x64.

Expected layout (what torchvision's ``CelebA(root)`` reads; we do not download it)::

    <root>/celeba/img_align_celeba/000001.jpg ...      the aligned 178x218 JPEGs
    <root>/celeba/list_eval_partition.txt               "000001.jpg 0" per line (0 train, 1 valid, 2 test)
    <root>/celeba/list_attr_celeba.txt                  optional: 40 binary attributes (become factors)

torchvision's own class checks the MD5 of every text file, so we read the same files directly. The
decoded split is cached as ``<root>/celeba/vmivae-64-<split>.pt`` (uint8) after the first read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..runs.files import save_tensors
from .base import ImageData, to_unit_range

SIZE = 64
CROP_FRACTION = 148 / 178  # the usual 148-pixel centre square of a 178-pixel-wide aligned face
_PARTITION = {"train": "0", "test": "2"}
_LAYOUT = "<root>/celeba/img_align_celeba/*.jpg and <root>/celeba/list_eval_partition.txt (torchvision's CelebA layout)"


def centre_crop_resize(image, size: int = SIZE) -> np.ndarray:
    """PIL image -> ``[3, size, size]`` uint8: the central square of side ``CROP_FRACTION * min(w, h)``."""
    from PIL import Image

    w, h = image.size
    side = round(CROP_FRACTION * min(w, h))
    left, top = (w - side) // 2, (h - side) // 2
    image = image.convert("RGB").crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1)


def _read_attributes(path: Path, names: list[str]) -> tuple[torch.Tensor | None, tuple[str, ...]]:
    if not path.is_file():
        return None, ()
    lines = path.read_text().splitlines()
    header = lines[1].split()
    table = {row.split()[0]: row.split()[1:] for row in lines[2:] if row.strip()}
    try:
        values = np.array([[int(v) > 0 for v in table[n]] for n in names], dtype=np.float32)
    except (KeyError, ValueError):
        raise DataError(f"{path} does not list every image of the partition with {len(header)} attributes; restore the original file") from None
    return torch.from_numpy(values), tuple(header)


def load_celeba(split: str, root: Path) -> ImageData:
    folder = Path(root) / "celeba"
    images_dir, partition = folder / "img_align_celeba", folder / "list_eval_partition.txt"
    if not images_dir.is_dir() or not partition.is_file():
        raise DataError(f"CelebA is not in {folder}; download it yourself (it cannot be fetched automatically) and lay it out as {_LAYOUT}")
    names = [row.split()[0] for row in partition.read_text().splitlines() if row.strip() and row.split()[1] == _PARTITION[split]]
    if not names:
        raise DataError(f"{partition} lists no images for the {split} split; it should have lines like '000001.jpg 0'")
    cache = folder / f"vmivae-{SIZE}-{split}.pt"
    pixels = None
    if cache.is_file():
        cached = torch.load(cache, weights_only=True)
        pixels = cached["pixels"] if cached.get("names") == names else None
    if pixels is None:
        from PIL import Image, UnidentifiedImageError

        arrays = []
        for name in names:
            try:
                with Image.open(images_dir / name) as image:
                    arrays.append(centre_crop_resize(image))
            except (FileNotFoundError, UnidentifiedImageError):
                raise DataError(f"CelebA image {images_dir / name} is missing or not an image; restore it or fix {partition}") from None
        pixels = torch.from_numpy(np.stack(arrays))
        try:
            save_tensors(cache, {"names": names, "pixels": pixels})
        except OSError:
            pass  # a read-only dataset folder just means no cache
    factors, factor_names = _read_attributes(folder / "list_attr_celeba.txt", names)
    return ImageData(to_unit_range(pixels.numpy()), None, factors, factor_names, name="celeba")
