"""GAN weights <-> one flat dict of arrays with ``generator.``/``discriminator.`` prefixes.

One flat dict (one Flower ArrayRecord) keeps G and D together through Flower's mods,
strategies and DP wrappers, which all expect a single ArrayRecord per message.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from medgan_core.models.registry import GanPair

__all__ = ["GENERATOR_PREFIX", "DISCRIMINATOR_PREFIX", "gan_state", "load_gan_state"]

GENERATOR_PREFIX = "generator."
DISCRIMINATOR_PREFIX = "discriminator."


def gan_state(gan: GanPair) -> "OrderedDict[str, torch.Tensor]":
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for prefix, module in ((GENERATOR_PREFIX, gan.generator), (DISCRIMINATOR_PREFIX, gan.discriminator)):
        for key, value in module.state_dict().items():
            state[prefix + key] = value.detach().cpu()
    return state


def load_gan_state(gan: GanPair, state: dict[str, torch.Tensor | np.ndarray]) -> None:
    """Load a flat prefixed state; missing or unexpected keys raise ``KeyError``."""
    for prefix, module in ((GENERATOR_PREFIX, gan.generator), (DISCRIMINATOR_PREFIX, gan.discriminator)):
        part = {k[len(prefix):]: torch.as_tensor(np.asarray(v)) for k, v in state.items() if k.startswith(prefix)}
        expected = set(module.state_dict())
        if set(part) != expected:
            raise KeyError(
                f"{prefix[:-1]} weights do not match the model: missing {sorted(expected - set(part))[:5]}, "
                f"unexpected {sorted(set(part) - expected)[:5]}; was the run made with another model variant?"
            )
        module.load_state_dict(part)
