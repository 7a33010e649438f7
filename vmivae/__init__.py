"""vmivae: a VAE whose chosen latent components are made informative by a variational MI bound.

Read the method in the order it runs:

* ``latents``: the Gaussian and Gumbel-softmax distributions, the temperature schedule.
* ``models``: the encoder, the decoder and Q.
* ``objectives``: the VMI loss terms, as pure tensor functions.
* ``steps``: one training iteration (fused and alternating).
* ``trainer`` and ``training``: a run's state, and the loop (``fit``, ``resume``).

Beside them at the top: ``config`` and ``presets`` (the typed config and its YAML layers), ``batches``,
``errors``, and ``cli`` (the ``vmivae`` command, also ``python -m vmivae``). Then the subpackages:

* ``datasets``: images as tensors, one module per source.
* ``measure``: measuring a fixed model: the MI estimator, metrics, evaluation, studies.
* ``plots``: figures.
* ``runs``: run plumbing: a run's folder, checkpoints, locks, signals, the cache of trained runs.
* ``perf``: performance tooling: device defaults, the captured step, grouped runs, data parallelism, benchmarks.
* ``teaching``: the chapters' support: a notebook's one-call setup, the exercises' checks.

Typical use::

    import vmivae
    config = vmivae.make_config("paper-joint", profile="quick")
    run = vmivae.fit(config, out="runs/joint")
    run = vmivae.load_run("runs/joint")
    estimate = vmivae.estimate_mi(run)      # MI per latent component, with intervals
    results = vmivae.evaluate(run)          # that, clustering and probes: what eval.json holds
"""

import os

# OpenMP threads that finish their share of an operation spin, waiting for the others, for a long time by
# default. When another process holds one of two cores, every operation then waits for a thread that is
# not running and a step becomes 3-4x slower; with passive waiting it is about 1.5x slower (vmivae.perf.contention,
# benchmarks/). OpenMP reads this when torch loads, so it applies where vmivae is imported before torch,
# as by the command line and the notebooks; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .errors import VMIVAEError, quiet_early_interrupt  # noqa: E402

quiet_early_interrupt()  # the command's Ctrl-C while torch loads: one line, not a traceback

from .config import Config  # noqa: E402
from .datasets import ImageData, load  # noqa: E402
from .presets import list_presets, list_profiles, make_config  # noqa: E402
from .runs.run import Run, load_run  # noqa: E402
from .training import fit, resume  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["__version__", "Config", "ImageData", "Run", "VMIVAEError", "estimate_mi", "evaluate", "fit", "list_presets", "list_profiles",
           "load", "load_run", "make_config", "resume"]


def __getattr__(name: str):
    """``estimate_mi`` and ``evaluate`` load the measurement modules on first use, keeping ``import vmivae`` light."""
    if name == "estimate_mi":
        from .measure.mi import estimate_mi as value
    elif name == "evaluate":
        from .measure.evaluation import evaluate as value
    else:
        raise AttributeError(f"module 'vmivae' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
