"""Saving figures and the one style they share.

Images are shown in [0, 1] (``(x + 1) / 2``). Styling is seaborn's ``whitegrid``, applied per figure so
that importing the package changes nothing globally.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.figure import Figure

PALETTE = {"VMI": "#c44e52", "baseline": "#4c72b0"}


def save(fig: Figure, folder: str | Path, name: str, dpi: int = 110) -> Figure:
    """Write ``<folder>/<name>.png`` and close the pyplot handle; returns ``fig`` for inline display."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return fig


def figure_saver(folder: str | Path, prefix: str) -> Callable[[Figure, str], None]:
    """``show(fig, name)`` for a notebook: write ``<folder>/<prefix>_<name>.png`` and display the figure once.

    The stable file name is what ``run_all.sh`` publishes; displaying the returned figure (rather than
    leaving pyplot's handle open) keeps each figure in the executed notebook exactly once.
    """

    def show(fig: Figure, name: str) -> None:
        from IPython.display import display  # a notebook dependency, not a library one

        display(save(fig, folder, f"{prefix}_{name}"))

    return show


def _styled(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> Figure:
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
            return fn(*args, **kwargs)

    return wrapper


def _to_numpy_images(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1] -> ``[N, H, W, C]`` (or ``[N, H, W]``) in [0, 1]."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def _tile(images: torch.Tensor, ncol: int, pad: int = 2) -> np.ndarray:
    """One mosaic array from a batch, ``ncol`` images per row, white padding."""
    x = _to_numpy_images(images)
    n, h, w = x.shape[:3]
    nrow = -(-n // ncol)
    shape = (nrow * (h + pad) + pad, ncol * (w + pad) + pad) + x.shape[3:]
    canvas = np.ones(shape, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = x[i]
    return canvas
