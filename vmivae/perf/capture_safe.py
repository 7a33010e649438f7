"""Forms of three pieces of the step that a CUDA graph can capture: no host synchronisation, no copy from the host.

Each equals its plain counterpart in ``vmivae.steps`` (``tests/test_graphed.py`` checks it); the captured
step (:class:`vmivae.perf.graphed.GraphSafeStepper`) uses them, and the grouped step uses the counts.

* :func:`mi_targets`: ``z[:, dims]`` with a list copies an index tensor from the host; slices do not.
* :func:`code_entropy`: on the generation path ``H(c) = log K`` exactly; a new tensor from a Python
  number is a copy from the host, a fill is not.
* :func:`code_counts`: ``bincount`` reads its largest index on the host to size its output; a comparison
  with ``arange(K)`` does not (and, unlike ``bincount``, ``vmap`` batches it).
"""

from __future__ import annotations

import math

import torch

from ..models import VAEOutput
from ..objectives import decoded_codes
from ..steps import Objective
from ..steps import code_entropy as plain_code_entropy


def columns(z: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``z[:, dims]`` by slices, one per run of consecutive dims."""
    runs: list[list[int]] = []
    for d in dims:
        if runs and d == runs[-1][1]:
            runs[-1][1] = d + 1
        else:
            runs.append([d, d + 1])
    return torch.cat([z[:, a:b] for a, b in runs], dim=1) if len(runs) > 1 else z[:, runs[0][0] : runs[0][1]]


def mi_targets(out: VAEOutput, objective: Objective) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``steps.mi_targets`` with the Gaussian dims taken by :func:`columns`."""
    images, c, z = decoded_codes(out, objective.source)
    dims = objective.components.dims
    return images, (c if objective.components.categorical else None), (columns(z, dims) if dims else None)


def code_entropy(out: VAEOutput, objective: Objective) -> torch.Tensor:
    """``steps.code_entropy`` with ``log K`` on the generation path as a fill."""
    if out.logits is not None and objective.source == "generation":
        return out.logits.new_full((), math.log(out.logits.shape[-1]))
    return plain_code_entropy(out, objective)


def code_counts(logits: torch.Tensor) -> torch.Tensor:
    """``steps.code_counts`` by comparison: how many of the ``B`` images have each category as their argmax, ``[K]``."""
    k = logits.shape[-1]
    return (logits.argmax(dim=-1, keepdim=True) == torch.arange(k, device=logits.device)).sum(dim=0)
