"""GAN models: one file per modality, variants found by name (:mod:`.registry`).

Importing the package registers the built-in variants: the variant modules import the
registry, never the reverse, so a new variant is one file plus one import here.
"""

from medgan_core.models import ecg as _ecg  # noqa: F401  (registers the 1-D variants)
from medgan_core.models import xray as _xray  # noqa: F401  (registers the 2-D variants)
from medgan_core.models import classic as _classic  # noqa: F401  (registers mlp1d, mlp2d)
from medgan_core.models import bilstm as _bilstm  # noqa: F401  (registers bilstm_dcgan1d)
from medgan_core.models import wgan as _wgan  # noqa: F401  (registers wgan1d)
from medgan_core.models import vaegan as _vaegan  # noqa: F401  (registers vaegan1d, vaegan2d)
from medgan_core.models.build import build_gan, initial_gan
from medgan_core.models.registry import GanPair, GanSpec, available_gans, create_gan, gan_spec, register_gan

__all__ = ["GanPair", "GanSpec", "available_gans", "build_gan", "create_gan", "gan_spec", "initial_gan",
           "register_gan"]
