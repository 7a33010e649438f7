"""Figures made of decoded images: grids, reconstructions, samples, traversals, category rows."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..latents import LatentSpec, sample_prior
from ..models import VAE
from .base import MAX_WIDTH, _styled, _tile


@_styled
def image_grid(images: torch.Tensor, ncol: int = 8, title: str | None = None, row_labels: Sequence[str] | None = None,
               col_labels: Sequence[str] | None = None, scale: float = 0.55) -> Figure:
    """A mosaic of images ``[N, C, H, W]`` in [-1, 1], optionally with row and column labels."""
    mosaic = _tile(images, ncol)
    nrow = -(-len(images) // ncol)
    margin = 1 if row_labels else 0
    scale = min(scale, (MAX_WIDTH - margin) / ncol)  # many columns: smaller tiles, never a figure wider than the page
    fig, ax = plt.subplots(figsize=(max(2.5, ncol * scale + margin), max(1.5, nrow * scale + (0.4 if title else 0))))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    h, w = images.shape[2] + 2, images.shape[3] + 2
    if row_labels is not None:
        ax.set_yticks([2 + h * i + h / 2 - 1 for i in range(len(row_labels))], row_labels)
    if col_labels is not None:
        ax.set_xticks([2 + w * i + w / 2 - 1 for i in range(len(col_labels))], col_labels, rotation=0)
        ax.tick_params(axis="x", labelsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def reconstructions(vae: VAE, x: torch.Tensor, n: int = 10, title: str = "data (top) and reconstructions (bottom)") -> Figure:
    """Test images above their deterministic reconstructions."""
    vae.eval()
    x = x[:n].to(next(vae.parameters()).device)
    return image_grid(torch.cat([x, vae.reconstruct(x)]), ncol=n, title=title)


@torch.no_grad()
def _base_codes(latent: LatentSpec, n: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    return sample_prior(latent, n, device, generator)


@torch.no_grad()
def samples(vae: VAE, n: int = 64, seed: int = 0, ncol: int = 8, title: str = "samples from the prior") -> Figure:
    vae.eval()
    z, c = _base_codes(vae.latent, n, seed, next(vae.parameters()).device)
    return image_grid(vae.decode(vae.latent.join(z, c)), ncol=ncol, title=title)


@torch.no_grad()
def traversal(vae: VAE, component: str, values: Sequence[float] = tuple(np.linspace(-3, 3, 9)), n_rows: int = 5, seed: int = 0,
              title: str | None = None) -> Figure:
    """Sweep one component (``z3`` or ``categorical``) with the rest of each row's code fixed (drawn from the prior)."""
    vae.eval()
    device = next(vae.parameters()).device
    z, c = _base_codes(vae.latent, n_rows, seed, device)
    rows = []
    if component == "categorical":
        if not vae.latent.categorical:
            raise ValueError("this model has no categorical code")
        k = vae.latent.categorical
        for i in range(n_rows):
            rows.append(vae.decode(vae.latent.join(z[i : i + 1].repeat(k, 1), torch.eye(k, device=device))))
        labels = [str(j) for j in range(k)]
    else:
        dim = int(component.lstrip("z"))
        for i in range(n_rows):
            zi = z[i : i + 1].repeat(len(values), 1)
            zi[:, dim] = torch.tensor(list(values), dtype=zi.dtype, device=device)
            ci = None if c is None else c[i : i + 1].repeat(len(values), 1)
            rows.append(vae.decode(vae.latent.join(zi, ci)))
        labels = [f"{v:+.1f}" for v in values]
    return image_grid(torch.cat(rows), ncol=len(labels), col_labels=labels, title=title or f"traversal of {component}")


@torch.no_grad()
def grid_2d(vae: VAE, dims: tuple[int, int] = (0, 1), values: Sequence[float] = tuple(np.linspace(-2.5, 2.5, 8)), seed: int = 0,
            category: int | None = None, title: str | None = None) -> Figure:
    """Decode a 2-D grid over two Gaussian dims (rows: ``dims[0]``, columns: ``dims[1]``), the rest fixed."""
    vae.eval()
    device = next(vae.parameters()).device
    z, c = _base_codes(vae.latent, 1, seed, device)
    if c is not None and category is not None:
        c = torch.nn.functional.one_hot(torch.tensor([category], device=device), vae.latent.categorical).float()
    v = torch.tensor(list(values), dtype=z.dtype, device=device)
    zz = z.repeat(len(v) ** 2, 1)
    zz[:, dims[0]] = v.repeat_interleave(len(v))
    zz[:, dims[1]] = v.repeat(len(v))
    images = vae.decode(vae.latent.join(zz, None if c is None else c.repeat(len(zz), 1)))
    labels = [f"{x:+.1f}" for x in values]
    return image_grid(images, ncol=len(v), row_labels=labels, col_labels=labels, title=title or f"z{dims[0]} (rows) x z{dims[1]} (columns)")


@torch.no_grad()
def category_rows(vae: VAE, n_per_category: int = 10, seed: int = 0, title: str = "one row per category, columns share the Gaussian code") -> Figure:
    """Category-by-row generations: row ``k`` decodes category ``k`` with the same Gaussian codes in every row."""
    vae.eval()
    k = vae.latent.categorical
    return image_grid(vae.category_grid(n_per_category, seed), ncol=n_per_category, row_labels=[str(i) for i in range(k or 0)], title=title)


def digit_rows(grid: torch.Tensor, clusters, labels, per_category: int, title: str = "row d: the code matched to digit d") -> Figure:
    """A category grid (``grid``: category ``k``'s ``per_category`` images in row ``k``, as :func:`category_rows`
    decodes it) with its rows reordered so that row ``d`` is the code that Hungarian matching pairs with label
    ``d`` on (``clusters``, ``labels``); a code that takes the digit shows digit ``d`` across row ``d``."""
    from scipy.optimize import linear_sum_assignment

    from ..measure.metrics import contingency

    table = contingency(clusters, labels)
    codes, digits = linear_sum_assignment(-table)
    order = [int(codes[digits == d][0]) for d in sorted(digits)]
    rows = torch.cat([grid[k * per_category:(k + 1) * per_category] for k in order])
    names = [f"{d} (code {k}, {table[k, d] / max(table[k].sum(), 1):.0%})" for d, k in zip(sorted(digits), order)]
    return image_grid(rows, ncol=per_category, row_labels=names, title=title)
