"""Figures of measurements: MI per component, KL per dim, confusion tables, factor heat maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .base import MAX_WIDTH, PALETTE, _styled


@_styled
def confusion(clusters, labels, title: str = "categorical code vs digit label (test split)") -> Figure:
    """Counts of (code, label), codes ordered by their Hungarian match so a perfect code is diagonal."""
    from scipy.optimize import linear_sum_assignment

    from ..measure.metrics import contingency

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
               title: str = "MI lower bound per latent component (95% CI)", per_row: int = 12) -> Figure:
    """Grouped bars: one group per component, one bar per model, bootstrap 95% intervals as error bars.

    Components wrap into rows of at most ``per_row`` groups that share one y axis, so 33 components of two
    models fit the page's width (three rows) instead of a strip several thousand pixels wide.
    """
    rows = []
    for model, result in results.items():
        for name, c in result[key].items():
            if components is None or name in components:
                rows.append({"model": model, "component": name, "nats": c["nats"], "lo": c["ci95"][0], "hi": c["ci95"][1]})
    frame = pd.DataFrame(rows)
    names = list(dict.fromkeys(frame["component"]))
    models = list(results)
    chunks = [names[i : i + per_row] for i in range(0, len(names), per_row)]
    width = 0.8 / len(models)
    panel_width = min(MAX_WIDTH, max(4.5, 0.55 * len(chunks[0]) * max(1, len(models) / 2) + 1.2))
    fig, axes = plt.subplots(len(chunks), 1, figsize=(panel_width, 2.5 * len(chunks) + 0.5), sharey=True, squeeze=False)
    for ax, chunk in zip(axes[:, 0], chunks):
        for i, model in enumerate(models):
            part = frame[frame["model"] == model].set_index("component").reindex(chunk)
            xs = np.arange(len(chunk)) + (i - (len(models) - 1) / 2) * width
            ax.bar(xs, part["nats"], width, label=model, color=PALETTE.get(model),
                   yerr=[part["nats"] - part["lo"], part["hi"] - part["nats"]], capsize=2)
        ax.set_xticks(np.arange(len(chunk)), chunk)
        ax.set_xlim(-0.6, per_row - 0.4 if len(chunks) > 1 else len(chunk) - 0.4)
        ax.set_ylabel("MI (nats)")
        ax.axhline(0, color="black", lw=0.8)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("latent component")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@_styled
def kl_per_dim(results: Mapping[str, Sequence[float]], title: str = "KL to the prior per Gaussian dim (test split)") -> Figure:
    """Bars of the mean KL of each Gaussian dim: dims near zero are ignored by the encoder."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    models = list(results)
    width = 0.8 / len(models)
    n = len(next(iter(results.values())))
    for i, (model, kl) in enumerate(results.items()):
        xs = np.arange(len(kl)) + (i - (len(models) - 1) / 2) * width
        ax.bar(xs, kl, width, label=model, color=PALETTE.get(model))
    ax.set_xticks(np.arange(n), [f"z{j}" for j in range(n)], rotation=90 if n > 16 else 0)
    ax.set_xlabel("Gaussian dimension")
    ax.set_ylabel("KL (nats)")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def factor_mi_vmax(*factor_mis: Mapping) -> float:
    """The largest entry of several factor-MI matrices: the shared top of their colour scale."""
    return float(max(np.nanmax(np.array(f["nats"], dtype=float)) for f in factor_mis))


def _factor_heatmap(ax, factor_mi: Mapping, vmax: float, cbar: bool, cbar_ax=None) -> None:
    sns.heatmap(np.array(factor_mi["nats"], dtype=float), annot=True, fmt=".2f", cmap="rocket_r", vmin=0, vmax=vmax,
                xticklabels=factor_mi["factors"], yticklabels=factor_mi["latents"], ax=ax, annot_kws={"size": 7}, cbar=cbar,
                cbar_ax=cbar_ax, cbar_kws={"label": "MI (nats)"})
    ax.set_xlabel("ground-truth factor")
    ax.tick_params(axis="x", rotation=30)
    ax.tick_params(axis="y", rotation=0)


@_styled
def factor_mi_heatmap(factor_mi: Mapping, title: str = "MI between latents and ground-truth factors (nats)", vmax: float | None = None) -> Figure:
    """Latents (rows) against factors (columns). Heat maps compared with each other need one colour scale:
    pass them all ``vmax=factor_mi_vmax(a, b)``, or draw them together with :func:`factor_mi_heatmaps`."""
    vmax = factor_mi_vmax(factor_mi) if vmax is None else vmax
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, 3.2 + 0.6 * len(factor_mi["factors"])), 0.3 * len(factor_mi["latents"]) + 1.6))
    _factor_heatmap(ax, factor_mi, vmax, cbar=True)
    ax.set_ylabel("latent")
    ax.set_title(title)
    fig.tight_layout()
    return fig


@_styled
def factor_mi_heatmaps(factor_mis: Mapping[str, Mapping], title: str = "MI between latents and ground-truth factors (nats)",
                       vmax: float | None = None) -> Figure:
    """Several models' factor-MI heat maps side by side on one colour scale (one colour bar)."""
    vmax = factor_mi_vmax(*factor_mis.values()) if vmax is None else vmax
    first = next(iter(factor_mis.values()))
    n = len(factor_mis)
    fig = plt.figure(figsize=(min(MAX_WIDTH, 1.2 + n * (1.2 + 0.5 * len(first["factors"]))), 0.3 * len(first["latents"]) + 1.8))
    grid = fig.add_gridspec(1, n + 1, width_ratios=[1] * n + [0.06])
    cbar_ax = fig.add_subplot(grid[0, n])
    for i, (name, factor_mi) in enumerate(factor_mis.items()):
        ax = fig.add_subplot(grid[0, i])
        _factor_heatmap(ax, factor_mi, vmax, cbar=i == 0, cbar_ax=cbar_ax if i == 0 else None)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("latent" if i == 0 else "")
        if i:
            ax.set_yticklabels([])
    fig.suptitle(title)
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
    ax.set_ylabel("MI (nats)")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig
