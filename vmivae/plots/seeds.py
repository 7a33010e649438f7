"""Figures of results over seeds: every seed drawn as a point next to the mean and its interval.

A mean over three seeds hides how far apart the seeds are; these figures never show one without the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .base import MAX_WIDTH, _styled, axis_label


def _interval(values: np.ndarray, interval: str) -> tuple[float, float]:
    """Distances below and above the mean: its 95% percentile bootstrap interval (``"ci95"``, inside the values'
    range, so inside the metric's; :func:`vmivae.measure.stats.mean_interval`) or one sd (``"sd"``)."""
    from ..measure.stats import mean_interval

    if interval not in ("ci95", "sd"):
        raise ValueError(f"interval must be 'ci95' or 'sd', got '{interval}'")
    if len(values) < 2:
        return 0.0, 0.0
    if interval == "sd":
        sd = values.std(ddof=1)
        return sd, sd
    ci = mean_interval(values)
    return ci.estimate - ci.low, ci.high - ci.estimate


def _order(frame: pd.DataFrame, column: str | None, order: Sequence | None) -> list:
    if column is None:
        return [None]
    return list(order) if order is not None else list(dict.fromkeys(frame[column]))


@_styled
def seed_points(frame: pd.DataFrame, x: str = "variant", y: str = "hungarian", hue: str | None = "dataset", *,
                interval: str = "ci95", order: Sequence | None = None, hue_order: Sequence | None = None,
                labels: Mapping[str, str] | None = None, horizontal: bool | None = None, title: str | None = None,
                seed: int = 0) -> Figure:
    """Mean ± interval of ``y`` per ``x`` category (and ``hue`` group), with every row (seed) as a dot.

    ``frame``: one row per run, e.g. ``runs.csv`` of a study. ``interval``: ``"ci95"`` (95% percentile bootstrap interval
    of the mean, as :func:`vmivae.measure.study.summarize`) or ``"sd"``. ``labels`` renames the categories for the axis.
    ``horizontal`` puts the categories on the y axis; by default it does so when a category name is longer than
    12 characters, so long names are read, not rotated. The dots are jittered sideways only, never in value.
    """
    xs, hues = _order(frame, x, order), _order(frame, hue, hue_order)
    names = [str((labels or {}).get(v, v)) for v in xs]
    horizontal = max(len(n) for n in names) > 12 if horizontal is None else horizontal
    colours = dict(zip(hues, sns.color_palette("deep", len(hues))))
    spread = max(1.0, len(hues) * 0.6)
    size = (MAX_WIDTH - 0.5, 0.45 * len(xs) * spread + 1.4) if horizontal else (min(MAX_WIDTH - 0.2, 1.0 + 0.9 * len(xs) * spread), 3.8)
    fig, ax = plt.subplots(figsize=size)
    rng = np.random.default_rng(seed)
    step = 0.8 / len(hues)
    for j, group in enumerate(hues):
        for i, category in enumerate(xs):
            rows = frame[frame[x] == category] if group is None else frame[(frame[x] == category) & (frame[hue] == group)]
            values = rows[y].dropna().to_numpy(float)
            if not len(values):
                continue
            pos = i + (j - (len(hues) - 1) / 2) * step
            jitter = pos + rng.uniform(-0.25, 0.25, len(values)) * step
            lo, hi = _interval(values, interval)
            mean = values.mean()
            colour = colours[group]
            label = None if group is None or i else str(group)
            if horizontal:
                ax.scatter(values, jitter, s=18, color=colour, alpha=0.55, edgecolor="none", zorder=2)
                ax.errorbar(mean, pos, xerr=[[lo], [hi]], fmt="D", ms=6, color=colour, capsize=4, lw=1.5, zorder=3, label=label)
            else:
                ax.scatter(jitter, values, s=18, color=colour, alpha=0.55, edgecolor="none", zorder=2)
                ax.errorbar(pos, mean, yerr=[[lo], [hi]], fmt="D", ms=6, color=colour, capsize=4, lw=1.5, zorder=3, label=label)
    what = "mean, 95% bootstrap CI" if interval == "ci95" else "mean ± sd"
    if horizontal:
        ax.set_yticks(range(len(xs)), names)
        ax.invert_yaxis()
        ax.set_xlabel(axis_label(y))
        ax.set_ylabel(axis_label(x))
    else:
        ax.set_xticks(range(len(xs)), names)
        ax.set_ylabel(axis_label(y))
        ax.set_xlabel(axis_label(x))
    if hue is not None:  # above the data, never on it
        ax.legend(title=axis_label(hue), fontsize=8, title_fontsize=8, ncol=len(hues), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  frameon=False)
    fig.suptitle(title or f"{axis_label(y)}: every seed (dots), {what} (diamonds)", fontsize=10)
    fig.tight_layout()
    return fig


@_styled
def codes_used_curves(frame: pd.DataFrame, y: str = "codes_used", *, order: Sequence | None = None,
                      labels: Mapping[str, str] | None = None, n_codes: int | None = None, title: str | None = None) -> Figure:
    """Categories used over training: one colour per variant, a light line per seed and the seeds' mean in bold.

    ``frame``: columns ``variant, seed, step, codes_used`` (``training.csv`` of a study) and optionally
    ``dataset``, which makes one panel per dataset (at most two in a row). ``y`` may name another per-step
    column such as ``h_cat``. ``n_codes`` draws the code's size K as a dotted line.
    """
    variants = _order(frame, "variant", order)
    colours = dict(zip(variants, sns.color_palette("deep", len(variants))))
    datasets = list(dict.fromkeys(frame["dataset"])) if "dataset" in frame else [None]
    ncol = min(2, len(datasets))
    nrow = -(-len(datasets) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(MAX_WIDTH if ncol > 1 else 6.2, 3.0 * nrow + 0.9), squeeze=False, sharey=True)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets):
        part = frame if dataset is None else frame[frame["dataset"] == dataset]
        for variant in variants:
            rows = part[part["variant"] == variant]
            if rows.empty:
                continue
            for _, seed_rows in rows.groupby("seed"):
                seed_rows = seed_rows.sort_values("step")
                ax.plot(seed_rows["step"], seed_rows[y], color=colours[variant], lw=0.8, alpha=0.35)
            mean = rows.groupby("step")[y].mean()
            ax.plot(mean.index, mean.to_numpy(), color=colours[variant], lw=2.2, label=str((labels or {}).get(variant, variant)))
        if n_codes:
            ax.axhline(n_codes, color="black", ls=":", lw=1)
        ax.set_xlabel(axis_label("step"))
        if dataset is not None:
            ax.set_title(str(dataset), fontsize=10)
    for row in axes:
        row[0].set_ylabel(axis_label(y))
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(3, len(names)), fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0))
    fig.suptitle(title or f"{axis_label(y)} over training: seeds (light), their mean (bold)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * ((len(names) - 1) // 3), 1, 1))
    return fig


@_styled
def learning_curves(frame: pd.DataFrame, metrics: Sequence[str] = ("hungarian", "codes_used", "mi_categorical", "recon_mse"), *,
                    order: Sequence | None = None, labels: Mapping[str, str] | None = None, title: str | None = None) -> Figure:
    """Measurements against the training budget: one panel per metric, one colour per variant, a light line per
    seed and the seeds' mean in bold with a marker at each measured budget; the budget axis doubles per tick.

    ``frame``: columns ``variant, seed, step`` and the metrics (``curves.csv`` of a curve study,
    :func:`vmivae.measure.curves.read_curves`).
    """
    variants = _order(frame, "variant", order)
    colours = dict(zip(variants, sns.color_palette("deep", len(variants))))
    ncol = min(2, len(metrics))
    nrow = -(-len(metrics) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(MAX_WIDTH, 2.7 * nrow + 0.9), squeeze=False, sharex=True)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    steps = sorted(set(frame["step"].astype(int)))
    for ax, metric in zip(axes.flat, metrics):
        for variant in variants:
            rows = frame[frame["variant"] == variant]
            for _, seed_rows in rows.groupby("seed"):
                seed_rows = seed_rows.sort_values("step")
                ax.plot(seed_rows["step"], seed_rows[metric], color=colours[variant], lw=0.8, alpha=0.35)
            mean = rows.groupby("step")[metric].mean()
            ax.plot(mean.index, mean.to_numpy(), color=colours[variant], lw=2.2, marker="o", ms=4,
                    label=str((labels or {}).get(variant, variant)))
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [f"{s:,}" for s in steps])
        ax.minorticks_off()
        ax.set_title(axis_label(metric), fontsize=9)  # a title, not a y label: long labels would reach the next panel
        if metric == "codes_used":
            ax.set_ylim(0, frame[metric].max() + 0.5)
    for ax in axes[-1]:
        ax.set_xlabel(axis_label("step"))
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(3, len(names)), fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0))
    fig.suptitle(title or "Measurements against the budget: seeds (light), their mean (bold)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(names) - 1) // 3), 1, 1))
    return fig
