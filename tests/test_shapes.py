"""The procedural shapes dataset: deterministic bytes, correct factors, cached."""

import math

import numpy as np
import torch

from vmivae import load
from vmivae.datasets.shapes import FACTOR_NAMES, GRIDS, factor_values, grid, render, split_indices


def test_rendering_is_deterministic():
    points = grid(32)[::97]
    a, b = render(points, 32), render(points, 32)
    assert a.dtype == np.uint8 and a.tobytes() == b.tobytes()


def _centroid(image: np.ndarray) -> tuple[float, float]:
    w = image.astype(float)
    rows, cols = np.indices(w.shape)
    return (w * cols).sum() / w.sum() / w.shape[1], (w * rows).sum() / w.sum() / w.shape[0]


def test_factors_are_what_the_images_show():
    size = 32
    # a square at scale 1.0, no rotation, at x = 0.25, y = 0.75 (index 0 and 7 on the 8-point grid)
    square = render(np.array([[0, 3, 0, 0, 7]]), size)[0, 0]
    cx, cy = _centroid(square)
    assert abs(cx - 0.25) < 0.02 and abs(cy - 0.75) < 0.02
    # its area: side 2 * 0.8 * 0.22 of the image side
    assert abs((square / 255).sum() / size**2 - (2 * 0.8 * 0.22) ** 2) < 0.01
    # scale 0.5 has a quarter of the area of scale 1.0
    small = render(np.array([[0, 0, 0, 4, 4]]), size)[0, 0]
    assert abs(small.sum() / square.sum() - 0.25) < 0.03
    # an ellipse rotated by a quarter turn is the transpose of the unrotated one (at the centre of the image)
    ellipse = render(np.array([[1, 3, 0, 4, 4]]), size)[0, 0].astype(int)
    quarter = render(np.array([[1, 3, 2, 4, 4]]), size)[0, 0].astype(int)  # rotation index 2 of 8 = pi / 2
    assert factor_values(np.array([[1, 3, 2, 4, 4]]))["rotation"][0] == math.pi / 2
    assert (ellipse.sum(0) > 0).sum() > 1.6 * (ellipse.sum(1) > 0).sum()  # wide before turning
    assert (quarter.sum(1) > 0).sum() > 1.6 * (quarter.sum(0) > 0).sum()  # tall after
    # the heart is not symmetric under a half turn, the ellipse is
    heart, heart_turned = render(np.array([[2, 3, 0, 4, 4], [2, 3, 4, 4, 4]]), size)[:, 0]
    assert not np.array_equal(heart, heart_turned[::-1, ::-1])


def test_load_gives_a_fixed_split_with_factor_labels(tmp_path):
    train, test = load("shapes", "train", root=tmp_path), load("shapes", "test", root=tmp_path)
    n = int(np.prod(GRIDS[32]))
    assert len(train) + len(test) == n == 6144 and len(test) == 1229  # a fifth of the 6,144 sprites, rounded
    assert train.images.shape[1:] == (1, 32, 32) and train.factor_names == FACTOR_NAMES
    assert torch.equal(train.labels, train.factors[:, 0])
    assert (tmp_path / "shapes" / "shapes-32-v1.pt").is_file()
    again = load("shapes", "test", root=tmp_path)  # from the cache: the same bytes
    assert torch.equal(again.images, test.images)
    # every image is the rendering of its factor row
    idx = [0, 17, 400]
    fresh = render(test.factors[idx].numpy(), 32)
    torch.testing.assert_close(test.images[idx], torch.from_numpy(fresh).float() / 127.5 - 1)
    train_idx, test_idx = split_indices(n)
    assert not set(train_idx) & set(test_idx)
