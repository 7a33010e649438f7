"""vmivae: a VAE whose chosen latent components are made informative by a variational MI bound.

The package reads as the method's pipeline::

    data -> latents -> models -> objectives -> steps -> training -> (evaluation, plots)

Typical use::

    import vmivae
    config = vmivae.make_config("paper-joint", profile="quick")
    run = vmivae.fit(config, out="runs/joint")
    run = vmivae.load_run("runs/joint")
"""

__version__ = "0.1.0"

from .config import Config, list_presets, list_profiles, make_config  # noqa: E402
from .datasets import ImageData, load  # noqa: E402
from .errors import VMIVAEError  # noqa: E402
from .run import Run, load_run  # noqa: E402
from .training import fit, resume  # noqa: E402

__all__ = ["Config", "ImageData", "Run", "VMIVAEError", "fit", "list_presets", "list_profiles", "load", "load_run", "make_config", "resume"]
