"""GAN weights <-> one flat dict of arrays with ``generator.``/``discriminator.`` prefixes
(and ``encoder.`` for a VAE-GAN).

One flat dict (one Flower ArrayRecord) keeps G, D (and E) together through Flower's mods,
strategies and DP wrappers, which all expect a single ArrayRecord per message: FedAvg then
averages a VAE-GAN's encoder like every other weight. The encoder is trained under DP-SGD
(:mod:`medgan_core.training.vae_dp`), so releasing it is covered by the site's ledger.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import numpy as np
import torch
from torch import nn

from medgan_core.models.registry import GanPair

__all__ = ["DISCRIMINATOR_PREFIX", "ENCODER_PREFIX", "GENERATOR_PREFIX", "gan_state", "load_gan_state"]

GENERATOR_PREFIX = "generator."
DISCRIMINATOR_PREFIX = "discriminator."
ENCODER_PREFIX = "encoder."


def _parts(gan: GanPair) -> list[tuple[str, nn.Module]]:
    parts = [(GENERATOR_PREFIX, gan.generator), (DISCRIMINATOR_PREFIX, gan.discriminator)]
    if gan.encoder is not None:
        parts.append((ENCODER_PREFIX, gan.encoder))
    return parts


def gan_state(gan: GanPair) -> "OrderedDict[str, torch.Tensor]":
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for prefix, module in _parts(gan):
        for key, value in module.state_dict().items():
            state[prefix + key] = value.detach().cpu()
    return state


def load_gan_state(gan: GanPair, state: Mapping[str, torch.Tensor | np.ndarray]) -> None:
    """Load a flat prefixed state; missing or unexpected keys raise ``KeyError``."""
    parts = _parts(gan)
    known = tuple(prefix for prefix, _ in parts)
    stray = sorted(k for k in state if not k.startswith(known))
    if stray:
        raise KeyError(f"weights {stray[:5]} belong to no network of this model ({', '.join(known)}); "
                       "was the run made with another model variant?")
    for prefix, module in parts:
        part = {k[len(prefix):]: torch.as_tensor(np.asarray(v)) for k, v in state.items() if k.startswith(prefix)}
        expected = set(module.state_dict())
        if set(part) != expected:
            raise KeyError(
                f"{prefix[:-1]} weights do not match the model: missing {sorted(expected - set(part))[:5]}, "
                f"unexpected {sorted(set(part) - expected)[:5]}; was the run made with another model variant?"
            )
        module.load_state_dict(part)
