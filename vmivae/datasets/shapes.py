"""``shapes``: procedural dSprites-style sprites with known generative factors, offline.

Every combination of five factors on a grid is rendered once (white shape on black, anti-aliased by
supersampling), like dSprites (Matthey et al. 2017) but small enough for a CPU:

============  =====================================  ===========  ===========
factor        values                                 32x32 grid   64x64 grid
============  =====================================  ===========  ===========
shape         square, ellipse, heart                 3            3
scale         0.5 .. 1.0 of the largest size          4            6
rotation      0 .. 2 pi (exclusive), radians         8            10
x, y          0.25 .. 0.75 of the image side         8 x 8        12 x 12
============  =====================================  ===========  ===========

32x32: 6,144 images; 64x64: 25,920. A seeded permutation of the grid puts 80% in ``train`` and 20% in
``test``. Rendering is pure float64 NumPy, so the same grid gives the same bytes every time; the result
is cached in ``<root>/shapes/``. ``factors`` holds each image's integer index on every factor's grid
(what MIG needs); :func:`factor_values` turns indices into values. ``labels`` is the shape index.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch

from ..runs.files import save_tensors
from .base import ImageData, to_unit_range

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
GRIDS = {32: (3, 4, 8, 8, 8), 64: (3, 6, 10, 12, 12)}  # values per factor, in FACTOR_NAMES order
MAX_RADIUS = 0.22  # of the image side, at scale 1.0
SUPERSAMPLE = {32: 4, 64: 2}  # sub-pixels per side for anti-aliasing
SPLIT_SEED, TRAIN_FRACTION = 0, 0.8
VERSION = 1  # bump when the rendering changes, so old caches are not reused


def factor_values(indices: np.ndarray, size: int = 32) -> dict[str, np.ndarray]:
    """Factor values for grid indices ``[N, 5]``: shape name index, scale, rotation (rad), x, y."""
    n_shape, n_scale, n_rot, n_x, n_y = GRIDS[size]
    idx = np.asarray(indices)
    return {
        "shape": idx[:, 0],
        "scale": np.linspace(0.5, 1.0, n_scale)[idx[:, 1]],
        "rotation": (2 * math.pi / n_rot) * idx[:, 2],
        "x": np.linspace(0.25, 0.75, n_x)[idx[:, 3]],
        "y": np.linspace(0.25, 0.75, n_y)[idx[:, 4]],
    }


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether shape-local points (unit radius, y up) lie inside the shape."""
    if shape == 0:  # square with half-side 0.8 (its corners reach ~1.13)
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == 1:  # ellipse, aspect 2:1, so that rotation changes the image
        return (u / 1.0) ** 2 + (v / 0.5) ** 2 <= 1.0
    # heart: the classical sextic (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled to fit the unit radius
    x, y = u * 1.15, v * 1.15 + 0.1
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


def render(indices: np.ndarray, size: int = 32) -> np.ndarray:
    """Render grid points ``[N, 5]`` to uint8 images ``[N, 1, size, size]`` (0 background, 255 shape)."""
    values = factor_values(indices, size)
    s = SUPERSAMPLE[size]
    coords = (np.arange(size * s) + 0.5) / (size * s)  # sub-pixel centres in (0, 1)
    gx, gy = np.meshgrid(coords, coords)  # gy grows downwards (image rows)
    out = np.empty((len(indices), 1, size, size), dtype=np.uint8)
    for i in range(len(indices)):
        radius = MAX_RADIUS * values["scale"][i]
        theta = values["rotation"][i]
        dx, dy = gx - values["x"][i], values["y"][i] - gy  # y up
        cos, sin = math.cos(theta), math.sin(theta)
        u = (cos * dx + sin * dy) / radius  # rotate points by -theta: the shape turns by +theta
        v = (-sin * dx + cos * dy) / radius
        cover = _inside(int(values["shape"][i]), u, v).reshape(size, s, size, s).mean(axis=(1, 3))
        out[i, 0] = np.round(cover * 255.0).astype(np.uint8)
    return out


def grid(size: int = 32) -> np.ndarray:
    """Every factor combination, ``[N, 5]`` int64, in row-major order of ``GRIDS[size]``."""
    return np.stack(np.meshgrid(*[np.arange(n) for n in GRIDS[size]], indexing="ij"), axis=-1).reshape(-1, 5)


def split_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed train/test split of ``n`` grid points: seeded permutation, first 80% train."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    cut = int(round(TRAIN_FRACTION * n))
    return perm[:cut], perm[cut:]


def generate(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels [N, 1, size, size] uint8, factor indices [N, 5])`` for the whole grid."""
    if size not in GRIDS:
        raise ValueError(f"shapes comes in sizes {sorted(GRIDS)}, not {size}")
    points = grid(size)
    return render(points, size), points


def _read_cache(cache: Path, size: int) -> dict[str, torch.Tensor] | None:
    """The cached grid, or None when there is none or it is damaged (then it is removed and rebuilt)."""
    if not cache.is_file():
        return None
    n = int(np.prod(GRIDS[size]))
    try:
        data = torch.load(cache, weights_only=True)
        ok = (isinstance(data, dict) and isinstance(data.get("pixels"), torch.Tensor) and isinstance(data.get("factors"), torch.Tensor)
              and tuple(data["pixels"].shape) == (n, 1, size, size) and data["pixels"].dtype == torch.uint8
              and tuple(data["factors"].shape) == (n, len(FACTOR_NAMES)))
    except Exception:  # truncated, overwritten, not a PyTorch file: a cache is only ever rebuilt, never reported
        ok = False
    if ok:
        return data
    with contextlib.suppress(OSError):
        cache.unlink()
    return None


def load_shapes(split: str, root: Path, size: int = 32) -> ImageData:
    """One split of the shapes dataset, generated on first use and cached under ``<root>/shapes``."""
    cache = Path(root) / "shapes" / f"shapes-{size}-v{VERSION}.pt"
    data = _read_cache(cache, size)
    if data is None:
        pixels, points = generate(size)
        data = {"pixels": torch.from_numpy(pixels), "factors": torch.from_numpy(points)}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            save_tensors(cache, data)
        except OSError:
            pass  # an unwritable data root only costs the regeneration next time
    train, test = split_indices(len(data["factors"]))
    idx = torch.from_numpy(train if split == "train" else test)
    factors = data["factors"][idx]
    name = "shapes" if size == 32 else f"shapes-{size}"
    return ImageData(to_unit_range(data["pixels"][idx].numpy()), factors[:, 0].clone(), factors, FACTOR_NAMES, name=name)
