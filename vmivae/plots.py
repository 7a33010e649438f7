"""Figures. Every function returns a matplotlib Figure; the caller decides where to save it.

Images are shown in [0, 1] (``(x + 1) / 2``). Styling is seaborn's ``whitegrid``, applied per figure so
that importing this module changes nothing globally.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure

from .latents import LatentSpec, sample_prior, temperature_at
from .models import VAE

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


@_styled
def image_grid(images: torch.Tensor, ncol: int = 8, title: str | None = None, row_labels: Sequence[str] | None = None,
               col_labels: Sequence[str] | None = None, scale: float = 0.55) -> Figure:
    """A mosaic of images ``[N, C, H, W]`` in [-1, 1], optionally with row and column labels."""
    mosaic = _tile(images, ncol)
    nrow = -(-len(images) // ncol)
    fig, ax = plt.subplots(figsize=(max(2.5, ncol * scale + (1 if row_labels else 0)), max(1.5, nrow * scale + (0.4 if title else 0))))
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
    if not k:
        raise ValueError("this model has no categorical code")
    device = next(vae.parameters()).device
    z, _ = _base_codes(vae.latent, n_per_category, seed, device)
    zz = z.repeat(k, 1)
    cc = torch.eye(k, device=device).repeat_interleave(n_per_category, 0)
    return image_grid(vae.decode(vae.latent.join(zz, cc)), ncol=n_per_category, row_labels=[str(i) for i in range(k)], title=title)


@_styled
def confusion(clusters, labels, title: str = "categorical code vs digit label (test split)") -> Figure:
    """Counts of (code, label), codes ordered by their Hungarian match so a perfect code is diagonal."""
    from scipy.optimize import linear_sum_assignment

    from .metrics import contingency

    table = contingency(clusters, labels)
    rows, cols = linear_sum_assignment(-table)
    order = list(rows[np.argsort(cols)]) + [r for r in range(table.shape[0]) if r not in rows]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    sns.heatmap(table[order], annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax, annot_kws={"size": 7}, yticklabels=order)
    ax.set_xlabel("true label")
    ax.set_ylabel("code (Hungarian order)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


@_styled
def mi_profile(results: Mapping[str, Mapping], key: str = "mi", components: Sequence[str] | None = None,
               title: str = "MI lower bound per latent component (95% CI)") -> Figure:
    """Grouped bars: one group per component, one bar per model, bootstrap 95% intervals as error bars."""
    rows = []
    for model, result in results.items():
        for name, c in result[key].items():
            if components is None or name in components:
                rows.append({"model": model, "component": name, "nats": c["nats"], "lo": c["ci95"][0], "hi": c["ci95"][1]})
    frame = pd.DataFrame(rows)
    names = list(dict.fromkeys(frame["component"]))
    models = list(results)
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names) * len(models) + 2), 3.6))
    for i, model in enumerate(models):
        part = frame[frame["model"] == model].set_index("component").loc[names]
        xs = np.arange(len(names)) + (i - (len(models) - 1) / 2) * width
        ax.bar(xs, part["nats"], width, label=model, color=PALETTE.get(model), yerr=[part["nats"] - part["lo"], part["hi"] - part["nats"]], capsize=2)
    ax.set_xticks(np.arange(len(names)), names, rotation=45 if len(names) > 8 else 0)
    ax.set_ylabel("nats")
    ax.axhline(0, color="black", lw=0.8)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


@_styled
def mi_curves(histories: Mapping[str, pd.DataFrame], column: str = "ce_cat", entropy: float | None = None, window: int = 25,
              title: str | None = None) -> Figure:
    """A training-time MI curve per run: ``entropy - CE`` (or CE itself without an entropy), smoothed."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, history in histories.items():
        y = history[column].rolling(window, min_periods=1).mean()
        ax.plot(history["step"], (entropy - y) if entropy is not None else y, label=name, color=PALETTE.get(name))
    ax.set_xlabel("training step")
    ax.set_ylabel(f"H(c) - {column} (nats)" if entropy is not None else f"{column} (nats)")
    ax.legend()
    ax.set_title(title or ("MI bound tracked by the training-time Q" if entropy is not None else column))
    fig.tight_layout()
    return fig


@_styled
def loss_curves(histories: Mapping[str, pd.DataFrame], columns: Sequence[str] = ("recon", "kl_cont"), window: int = 25) -> Figure:
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.2), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for name, history in histories.items():
            ax.plot(history["step"], history[column].rolling(window, min_periods=1).mean(), label=name, color=PALETTE.get(name))
        ax.set_xlabel("training step")
        ax.set_title(column)
    axes[0][0].legend()
    fig.tight_layout()
    return fig


@_styled
def kl_per_dim(results: Mapping[str, Sequence[float]], title: str = "KL to the prior per Gaussian dim (test split)") -> Figure:
    """Bars of the mean KL of each Gaussian dim: dims near zero are ignored by the encoder."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    models = list(results)
    width = 0.8 / len(models)
    for i, (model, kl) in enumerate(results.items()):
        xs = np.arange(len(kl)) + (i - (len(models) - 1) / 2) * width
        ax.bar(xs, kl, width, label=model, color=PALETTE.get(model))
    ax.set_xticks(np.arange(len(next(iter(results.values())))), [f"z{j}" for j in range(len(next(iter(results.values()))))], rotation=90)
    ax.set_ylabel("KL (nats)")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


@_styled
def temperature_schedules(steps: int = 150_000, tau0: float = 1.0, tau_min: float = 0.3, rate: float = 1.5e-5, interval: int = 1000) -> Figure:
    """The intended schedule ``max(tau0 exp(-r t), tau_min)`` next to what the reference code ran (tau0)."""
    t = np.arange(0, steps, max(1, steps // 2000))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(t, [temperature_at(int(s), tau0, tau_min, rate, interval) for s in t], label="intended (this library)")
    ax.plot(t, np.full(len(t), tau0), ls="--", label="reference code in effect")
    ax.set_xlabel("training step")
    ax.set_ylabel("Gumbel-softmax temperature")
    ax.set_ylim(0, tau0 * 1.1)
    ax.legend()
    ax.set_title("temperature schedule")
    fig.tight_layout()
    return fig


@_styled
def tradeoff(frame: pd.DataFrame, x: str = "recon_mse", y: str = "mi_categorical", label: str = "lambda_cat",
             title: str = "MI vs reconstruction as lambda grows") -> Figure:
    """One point per run (mean with std error bars when the frame has ``<x>_std``/``<y>_std``), labelled."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.errorbar(frame[x], frame[y], xerr=frame.get(f"{x}_std"), yerr=frame.get(f"{y}_std"), fmt="o-", capsize=3)
    for _, row in frame.iterrows():
        ax.annotate(f"{label}={row[label]:g}", (row[x], row[y]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    fig.tight_layout()
    return fig


@_styled
def factor_mi_heatmap(factor_mi: Mapping, title: str = "MI between latents and ground-truth factors (nats)") -> Figure:
    matrix = np.array(factor_mi["nats"])
    fig, ax = plt.subplots(figsize=(4 + 0.5 * len(factor_mi["factors"]), 0.3 * len(factor_mi["latents"]) + 1.5))
    sns.heatmap(matrix, annot=True, fmt=".2f", cmap="rocket_r", xticklabels=factor_mi["factors"], yticklabels=factor_mi["latents"], ax=ax,
                annot_kws={"size": 7})
    ax.set_title(title)
    fig.tight_layout()
    return fig


@_styled
def estimate_vs_truth(frame: pd.DataFrame, title: str = "estimator on channels with known MI") -> Figure:
    """Bars of the estimate (with its 95% CI) next to the true MI for each validation channel."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    xs = np.arange(len(frame))
    ax.bar(xs - 0.2, frame["truth"], 0.4, label="true MI", color="#8c8c8c")
    ax.bar(xs + 0.2, frame["estimate"], 0.4, label="estimate", color="#c44e52",
           yerr=[frame["estimate"] - frame["lo"], frame["hi"] - frame["estimate"]], capsize=3)
    ax.set_xticks(xs, frame["channel"], rotation=15)
    ax.set_ylabel("nats")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


@_styled
def gumbel_softmax_samples(probs: Sequence[float] = (0.1, 0.2, 0.3, 0.4), taus: Sequence[float] = (0.1, 0.5, 1.0, 5.0), n: int = 3,
                           seed: int = 0) -> Figure:
    """Relaxed one-hot draws at several temperatures: near one-hot when cold, near uniform when hot."""
    from .latents import gumbel_softmax_sample

    logits = torch.log(torch.tensor(probs)).repeat(n, 1)
    fig, axes = plt.subplots(1, len(taus), figsize=(2.6 * len(taus), 2.6), sharey=True)
    for ax, tau in zip(np.atleast_1d(axes), taus):
        torch.manual_seed(seed)
        y = gumbel_softmax_sample(logits, tau).numpy()
        for i in range(n):
            ax.bar(np.arange(len(probs)) + (i - (n - 1) / 2) * 0.25, y[i], 0.25)
        ax.set_title(f"tau = {tau:g}")
        ax.set_xticks(range(len(probs)))
    np.atleast_1d(axes)[0].set_ylabel("sample value")
    fig.suptitle(f"{n} Gumbel-softmax samples for probabilities {list(probs)}")
    fig.tight_layout()
    return fig
