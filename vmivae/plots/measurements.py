"""Figures of measurements: MI per component, KL per dim, confusion tables, factor heat maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .base import PALETTE, _styled


@_styled
def confusion(clusters, labels, title: str = "categorical code vs digit label (test split)") -> Figure:
    """Counts of (code, label), codes ordered by their Hungarian match so a perfect code is diagonal."""
    from scipy.optimize import linear_sum_assignment

    from ..metrics import contingency

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
