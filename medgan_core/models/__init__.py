"""GAN models: one file per modality, variants found by name (:mod:`.registry`).

Importing the package registers the built-in variants: the variant modules import the
registry, never the reverse, so a new variant is one file plus one import here.
"""

from medgan_core.models import ecg as _ecg  # noqa: F401  (registers the 1-D variants)
from medgan_core.models import xray as _xray  # noqa: F401  (registers the 2-D variants)
from medgan_core.models.build import build_gan, initial_gan
from medgan_core.models.registry import GanPair, available_gans, create_gan, register_gan

__all__ = ["GanPair", "available_gans", "build_gan", "create_gan", "initial_gan", "register_gan"]
