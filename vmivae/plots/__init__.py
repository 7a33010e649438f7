"""Figures. Every function returns a matplotlib Figure; the caller decides where to save it.

Modules: ``base`` (saving, the figure display with caption and alt text, style, axis labels in words),
``images`` (decoded images), ``curves`` (training curves, the method's ingredients), ``measurements`` (MI,
KL, confusion, factors), ``seeds`` (results over seeds: every seed as a point, codes used over training, learning curves).
Every figure fits the book's column: at most ``MAX_WIDTH`` inches (about 860 px at the saved ``DPI``).
"""

from .base import DPI, LABELS, MAX_WIDTH, PALETTE, axis_label, figure_html, figure_saver, save
from .curves import gumbel_softmax_samples, loss_curves, mi_curves, temperature_schedules, tradeoff
from .images import category_rows, digit_rows, grid_2d, image_grid, reconstructions, samples, traversal
from .measurements import confusion, estimate_vs_truth, factor_mi_heatmap, factor_mi_heatmaps, factor_mi_vmax, kl_per_dim, mi_profile
from .seeds import codes_used_curves, learning_curves, seed_points

__all__ = [
    "DPI", "LABELS", "MAX_WIDTH", "PALETTE", "axis_label", "category_rows", "codes_used_curves", "confusion", "digit_rows", "estimate_vs_truth",
    "factor_mi_heatmap", "factor_mi_heatmaps", "factor_mi_vmax", "figure_html", "figure_saver", "grid_2d", "gumbel_softmax_samples",
    "image_grid", "kl_per_dim", "learning_curves", "loss_curves", "mi_curves", "mi_profile", "reconstructions", "samples", "save", "seed_points",
    "temperature_schedules", "tradeoff", "traversal",
]
