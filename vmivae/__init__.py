"""vmivae: a VAE whose chosen latent components are made informative by a variational MI bound.

The package reads as the method's pipeline::

    data -> latents -> models -> objectives -> steps -> training -> (evaluation, plots)

Typical use::

    import vmivae
    config = vmivae.make_config("paper-joint", profile="quick")
    run = vmivae.fit(config, out="runs/joint")
    run = vmivae.load_run("runs/joint")
"""

from .config import Config
from .datasets import ImageData, load
from .errors import VMIVAEError
from .presets import list_presets, list_profiles, make_config
from .run import Run, load_run
from .training import fit, resume
from .version import __version__

__all__ = ["__version__", "Config", "ImageData", "Run", "VMIVAEError", "fit", "list_presets", "list_profiles", "load", "load_run", "make_config", "resume"]
