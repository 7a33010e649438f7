"""Figures of curves over training and of the method's ingredients (temperature, Gumbel-softmax)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure

from ..latents import temperature_at
from .base import MAX_WIDTH, PALETTE, _styled, axis_label


def _grid(n: int, per_row: int = 3, height: float = 2.8) -> tuple[Figure, np.ndarray]:
    """``n`` panels, at most ``per_row`` in a row, within :data:`MAX_WIDTH`; unused panels hidden."""
    ncol = min(n, per_row)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(min(MAX_WIDTH - 0.4, 2.6 * ncol + 0.3), height * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


@_styled
def mi_curves(histories: Mapping[str, pd.DataFrame], column: str = "ce_cat", entropy: float | None = None, window: int = 25,
              title: str | None = None) -> Figure:
    """A training-time MI curve per run: ``entropy - CE`` (or CE itself without an entropy), smoothed."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, history in histories.items():
        y = history[column].rolling(window, min_periods=1).mean()
        ax.plot(history["step"], (entropy - y) if entropy is not None else y, label=name, color=PALETTE.get(name))
    ax.set_xlabel(axis_label("step"))
    ax.set_ylabel("MI lower bound H(c) − CE (nats)" if entropy is not None else axis_label(column))
    ax.legend()
    ax.set_title(title or ("MI bound tracked by the training-time Q" if entropy is not None else axis_label(column)))
    fig.tight_layout()
    return fig


@_styled
def loss_curves(histories: Mapping[str, pd.DataFrame], columns: Sequence[str] = ("recon", "kl_cont"), window: int = 25) -> Figure:
    """One panel per column of the training history (at most three in a row), one line per run, smoothed."""
    fig, axes = _grid(len(columns))
    for ax, column in zip(axes, columns):
        for name, history in histories.items():
            ax.plot(history["step"], history[column].rolling(window, min_periods=1).mean(), label=name, color=PALETTE.get(name))
        ax.set_xlabel(axis_label("step"))
        ax.set_title(axis_label(column), fontsize=9)
    axes[0].legend()
    fig.tight_layout()
    return fig


@_styled
def temperature_schedules(steps: int = 150_000, tau0: float = 1.0, tau_min: float = 0.3, rate: float = 1.5e-5, interval: int = 1000) -> Figure:
    """The intended schedule ``max(tau0 exp(-r t), tau_min)`` next to what the reference code ran (tau0)."""
    t = np.arange(0, steps, max(1, steps // 2000))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(t, [temperature_at(int(s), tau0, tau_min, rate, interval) for s in t], label="intended (this library)")
    ax.plot(t, np.full(len(t), tau0), ls="--", label="reference code in effect")
    ax.set_xlabel(axis_label("step"))
    ax.set_ylabel(axis_label("tau"))
    ax.set_ylim(0, tau0 * 1.1)
    ax.legend()
    ax.set_title("temperature schedule")
    fig.tight_layout()
    return fig


@_styled
def tradeoff(frame: pd.DataFrame, x: str = "recon_mse", y: str = "mi_categorical", label: str = "lambda_cat",
             title: str = "MI vs reconstruction as λ grows") -> Figure:
    """One point per setting (mean with sd error bars when the frame has ``<x>_std``/``<y>_std``), joined in the
    frame's order; each point's colour and the legend name its ``label`` value, so no text sits on the data."""
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    ax.plot(frame[x], frame[y], "-", color="#8c8c8c", lw=1, zorder=1)
    colours = sns.color_palette("viridis", len(frame))
    name = axis_label(label).split(" (")[0]
    for i, (_, row) in enumerate(frame.iterrows()):
        ax.errorbar(row[x], row[y], xerr=row.get(f"{x}_std"), yerr=row.get(f"{y}_std"), fmt="o", ms=7, capsize=3,
                    color=colours[i], label=f"{name} = {row[label]:g}", zorder=2)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


@_styled
def gumbel_softmax_samples(probs: Sequence[float] = (0.1, 0.2, 0.3, 0.4), taus: Sequence[float] = (0.1, 0.5, 1.0, 5.0), n: int = 3,
                           seed: int = 0) -> Figure:
    """Relaxed one-hot draws at several temperatures: near one-hot when cold, near uniform when hot."""
    from ..latents import gumbel_softmax_sample

    logits = torch.log(torch.tensor(probs)).repeat(n, 1)
    fig, axes = plt.subplots(1, len(taus), figsize=(min(MAX_WIDTH, 1.9 * len(taus) + 0.3), 2.5), sharey=True)
    for ax, tau in zip(np.atleast_1d(axes), taus):
        torch.manual_seed(seed)
        y = gumbel_softmax_sample(logits, tau).numpy()
        for i in range(n):
            ax.bar(np.arange(len(probs)) + (i - (n - 1) / 2) * 0.25, y[i], 0.25)
        ax.set_title(f"τ = {tau:g}")
        ax.set_xlabel("category")
        ax.set_xticks(range(len(probs)))
    np.atleast_1d(axes)[0].set_ylabel("sample value")
    fig.suptitle(f"{n} Gumbel-softmax samples for probabilities {list(probs)}")
    fig.tight_layout()
    return fig
