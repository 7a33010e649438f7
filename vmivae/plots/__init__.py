"""Figures. Every function returns a matplotlib Figure; the caller decides where to save it.

Modules: ``base`` (saving, style), ``images`` (decoded images), ``curves`` (training curves, the
method's ingredients), ``measurements`` (MI, KL, confusion, factors).
"""

from .base import PALETTE, figure_saver, save
from .curves import gumbel_softmax_samples, loss_curves, mi_curves, temperature_schedules, tradeoff
from .images import category_rows, grid_2d, image_grid, reconstructions, samples, traversal
from .measurements import confusion, estimate_vs_truth, factor_mi_heatmap, kl_per_dim, mi_profile

__all__ = [
    "PALETTE", "category_rows", "confusion", "estimate_vs_truth", "factor_mi_heatmap",
    "figure_saver", "grid_2d", "gumbel_softmax_samples", "image_grid", "kl_per_dim", "loss_curves",
    "mi_curves", "mi_profile", "reconstructions", "samples", "save", "temperature_schedules",
    "tradeoff", "traversal",
]
