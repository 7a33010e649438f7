"""Saving figures and the one style they share.

Images are shown in [0, 1] (``(x + 1) / 2``). Styling is seaborn's ``whitegrid``, applied per figure so
that importing the package changes nothing globally.
"""

from __future__ import annotations

import base64
import functools
import html
import struct
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.figure import Figure

PALETTE = {"VMI": "#c44e52", "baseline": "#4c72b0"}
DPI = 110  # saved resolution
MAX_WIDTH = 7.8  # inches: 858 px at DPI, about the book's column (780 px) without shrinking text below 90%

# Axis labels in words, with units, for the columns the package's tables and histories use.
LABELS = {
    "step": "training step",
    "loss": "VAE loss (training objective)",
    "recon": "reconstruction loss (training objective)",
    "recon_mse": "reconstruction MSE (per pixel, images in [-1, 1])",
    "kl_cont": "KL of the Gaussian code (nats)",
    "kl_cat": "KL of the categorical code (nats)",
    "ce_cat": "cross-entropy of the categorical code (nats)",
    "ce_cont": "cross-entropy of the Gaussian dims (nats)",
    "q_loss": "Q's cross-entropy (nats)",
    "h_cat": "batch entropy of the code H(c) (nats)",
    "tau": "Gumbel-softmax temperature τ",
    "codes_used": "categories used (of the code's K)",
    "hungarian": "accuracy (Hungarian matching)",
    "majority": "accuracy (majority vote)",
    "nmi": "NMI",
    "linear_probe": "linear probe accuracy",
    "mi_categorical": "MI of the categorical code (nats)",
    "mi_z0": "MI of z0 (nats)",
    "mi_z1": "MI of z1 (nats)",
    "lambda_cat": "λ (categorical code)",
    "lambda_cont": "λ (Gaussian dims)",
    "variant": "objective",
    "dataset": "dataset",
}


def axis_label(name: str) -> str:
    """The words for a column name (``kl_cont`` -> ``KL of the Gaussian code (nats)``); unknown names unchanged."""
    return LABELS.get(name, name)


def save(fig: Figure, folder: str | Path, name: str, dpi: int = DPI) -> Figure:
    """Write ``<folder>/<name>.png`` and close the pyplot handle; returns ``fig`` for inline display."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return fig


def figure_html(png: bytes, caption: str, alt: str) -> str:
    """``<figure>`` with the PNG inline, its alt text and its caption; the ``width`` attribute is the PNG's own
    width in pixels, so a page shows the figure at most at its saved size (never upscaled) and shrinks it only
    to fit a narrower column."""
    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure class="vmivae-figure"><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{html.escape(alt)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def _required_text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a figure needs {what}: a non-empty string, got {value!r}")
    return " ".join(value.split())


def figure_saver(folder: str | Path, prefix: str) -> Callable[..., None]:
    """``show(fig, name, *, caption, alt)`` for a notebook: write ``<folder>/<prefix>_<name>.png`` and display it once.

    The stable file name is what ``run_all.sh`` publishes. The display is one output whose ``text/html`` is a
    ``<figure>`` with the PNG, its ``alt`` text and its ``caption`` (what the book and JupyterLab show), with
    ``image/png`` and the caption as ``text/plain`` for other front ends. The pyplot handle is closed, so the
    figure appears in the executed notebook exactly once.

    ``caption`` says what the figure shows and what to notice in it; ``alt`` describes the image for a reader
    who cannot see it (the kind of plot, its axes, the pattern it shows). Both are plain text (use Unicode
    such as λ or τ, not TeX) and both are required: neither is a substitute for the other.
    """

    def show(fig: Figure, name: str, *, caption: str, alt: str) -> None:
        from IPython.display import display  # a notebook dependency, not a library one

        caption, alt = _required_text(caption, "a caption"), _required_text(alt, "alt text")
        save(fig, folder, f"{prefix}_{name}")
        png = (Path(folder) / f"{prefix}_{name}.png").read_bytes()
        bundle = {"text/html": figure_html(png, caption, alt), "image/png": base64.b64encode(png).decode("ascii"), "text/plain": caption}
        display(bundle, raw=True)

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
