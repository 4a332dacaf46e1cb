"""GAN variants by name, so that a new variant is one file and one ``register_gan`` call.

The registry imports no variant: :mod:`medgan_core.models` imports the built-in variant
modules, which register themselves here (importing any ``medgan_core.models.*`` module runs
the package first, so the registry is always filled before it is asked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

__all__ = ["GanPair", "GanSpec", "available_gans", "create_gan", "gan_spec", "register_gan"]


@dataclass
class GanPair:
    """A generator and its discriminator, built from one config.

    In a plain GAN the discriminator is the only network that sees real records, so it is
    the one that DP-SGD wraps; the generator only ever sees the discriminator's outputs on
    fakes. A VAE-GAN (:mod:`medgan_core.models.vaegan`) adds an ``encoder``
    (``(samples, labels) -> (mu, logvar)``): the encoder and the generator's reconstruction
    of real records then train under a second DP-SGD mechanism on the same Poisson sample
    (:mod:`medgan_core.training.vae_dp`), and the encoder is part of the model update.
    """

    generator: nn.Module
    discriminator: nn.Module
    latent_dim: int
    num_classes: int
    # "bce" for the non-saturating DCGAN loss, "wasserstein" for critic-style variants.
    loss: str = "bce"
    # VAE-GAN only: the encoder q(z | x, y); None for every plain GAN.
    encoder: nn.Module | None = None


GanFactory = Callable[..., GanPair]


@dataclass(frozen=True)
class GanSpec:
    """What a registered variant declares about itself, besides how to build it.

    Attributes:
        name: The run-config ``model`` value.
        factory: ``factory(**kwargs) -> GanPair``.
        sample_kinds: Kinds of sample the variant generates, named as
            ``Modality.encoder_backbone`` (``"signal"``: (N, C, L) beats; ``"image"``:
            (N, 1, H, W) images). A variant applies to a modality whose backbone is listed;
            empty means undeclared (applies to any, unchecked).
        touches_real_data: The networks that see real records and therefore train under
            DP-SGD and are charged to the site's ledger.
    """

    name: str
    factory: GanFactory
    sample_kinds: tuple[str, ...] = ()
    touches_real_data: tuple[str, ...] = ("discriminator",)

    def applies_to(self, sample_kind: str) -> bool:
        return not self.sample_kinds or sample_kind in self.sample_kinds


_GAN_REGISTRY: dict[str, GanSpec] = {}


def register_gan(name: str, factory: GanFactory, *, sample_kinds: tuple[str, ...] = (),
                 touches_real_data: tuple[str, ...] = ("discriminator",)) -> None:
    """Register ``factory(**kwargs) -> GanPair`` under ``name``.

    Args:
        name: The run-config ``model`` value.
        factory: Builds the pair from keyword arguments (``latent_dim``, ``num_classes`` and
            the modality's ``model_kwargs``).
        sample_kinds: See :class:`GanSpec`; ``()`` leaves it undeclared.
        touches_real_data: See :class:`GanSpec`.

    Raises:
        ValueError: ``name`` is taken.
    """
    if name in _GAN_REGISTRY:
        raise ValueError(f"GAN variant {name!r} is already registered")
    _GAN_REGISTRY[name] = GanSpec(name=name, factory=factory, sample_kinds=tuple(sample_kinds),
                                  touches_real_data=tuple(touches_real_data))


def available_gans() -> list[str]:
    return sorted(_GAN_REGISTRY)


def create_gan(name: str, **kwargs: object) -> GanPair:
    """Build the GAN variant ``name``.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the known variants.
    """
    return gan_spec(name).factory(**kwargs)


def gan_spec(name: str) -> GanSpec:
    """The registration of variant ``name``.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the known variants.
    """
    if name not in _GAN_REGISTRY:
        raise ValueError(f"unknown GAN variant {name!r}; known variants: {', '.join(sorted(_GAN_REGISTRY))}")
    return _GAN_REGISTRY[name]

