"""GAN variants by name, so that a new variant is one file and one ``register_gan`` call."""

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
    _ensure_builtin_variants()
    return sorted(_GAN_REGISTRY)


def create_gan(name: str, **kwargs: object) -> GanPair:
    """Build the GAN variant ``name``.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the known variants.
    """
    _ensure_builtin_variants()
    if name not in _GAN_REGISTRY:
        raise ValueError(f"unknown GAN variant {name!r}; known variants: {', '.join(sorted(_GAN_REGISTRY))}")
    return _GAN_REGISTRY[name](**kwargs)


def _ensure_builtin_variants() -> None:
    # Importing the model modules registers their variants; done lazily to avoid cycles.
    from medgan_core.models import ecg  # noqa: F401
    try:
        from medgan_core.models import xray  # noqa: F401
    except ImportError:  # the X-ray models are optional until that modality is installed
        pass
