"""vmivae: a VAE whose chosen latent components are made informative by a variational MI bound.

The package reads as the method's pipeline::

    data -> latents -> models -> objectives -> steps -> training -> (evaluation, plots)

Typical use::

    import vmivae
    config = vmivae.make_config("paper-joint", profile="quick")
    run = vmivae.fit(config, out="runs/joint")
    run = vmivae.load_run("runs/joint")
"""

import os

# OpenMP threads that finish their share of an operation spin, waiting for the others, for a long time by
# default. When another process holds one of two cores, every operation then waits for a thread that is
# not running and a step becomes 3-4x slower; with passive waiting it is about 1.5x slower (vmivae.perf.contention,
# benchmarks/). OpenMP reads this when torch loads, so it applies where vmivae is imported before torch,
# as by the command line and the notebooks; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import Config  # noqa: E402
from .datasets import ImageData, load  # noqa: E402
from .errors import VMIVAEError  # noqa: E402
from .presets import list_presets, list_profiles, make_config  # noqa: E402
from .runs.run import Run, load_run  # noqa: E402
from .training import fit, resume  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["__version__", "Config", "ImageData", "Run", "VMIVAEError", "fit", "list_presets", "list_profiles", "load", "load_run", "make_config", "resume"]
