"""GAN variants by name, so that a new variant is one file and one ``register_gan`` call.

The registry imports no variant: :mod:`medgan_core.models` imports the built-in variant
modules, which register themselves here (importing any ``medgan_core.models.*`` module runs
the package first, so the registry is always filled before it is asked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

__all__ = ["GanPair", "available_gans", "create_gan", "register_gan"]


@dataclass
class GanPair:
    """A generator and its discriminator, built from one config.

    The discriminator is the only network that sees real records, so it is the one that
    DP-SGD wraps; the generator only ever sees the discriminator's outputs on fakes.
    """

    generator: nn.Module
    discriminator: nn.Module
    latent_dim: int
    num_classes: int
    # "bce" for the non-saturating DCGAN loss, "wasserstein" for critic-style variants.
    loss: str = "bce"


GanFactory = Callable[..., GanPair]
_GAN_REGISTRY: dict[str, GanFactory] = {}


def register_gan(name: str, factory: GanFactory) -> None:
    """Register ``factory(**kwargs) -> GanPair`` under ``name``."""
    if name in _GAN_REGISTRY:
        raise ValueError(f"GAN variant {name!r} is already registered")
    _GAN_REGISTRY[name] = factory


def available_gans() -> list[str]:
    return sorted(_GAN_REGISTRY)


def create_gan(name: str, **kwargs: object) -> GanPair:
    """Build the GAN variant ``name``.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the known variants.
    """
    if name not in _GAN_REGISTRY:
        raise ValueError(f"unknown GAN variant {name!r}; known variants: {', '.join(sorted(_GAN_REGISTRY))}")
    return _GAN_REGISTRY[name](**kwargs)

