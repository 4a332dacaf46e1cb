"""The initial GAN of a run: the one place a run's configuration becomes a :class:`GanPair`."""

from __future__ import annotations

import torch

from medgan_core.config import RunConfig
from medgan_core.modalities import get_modality
from medgan_core.models.registry import GanPair, create_gan

__all__ = ["build_gan", "initial_gan"]


def build_gan(run: RunConfig, num_classes: int = 2) -> GanPair:
    """The run's GAN variant (``model``) with the run's sizes and its modality's extras.

    Every caller that needs the federation's model (the ServerApp, a site's round, the
    audits, ``medgan generate``, the report) builds it here, so that a checkpoint written by
    one of them always loads into the model another builds. Weights come from torch's
    global RNG: seed it (``torch.manual_seed(run.seed)``) for the run's initial weights.

    Args:
        run: the run configuration (``model``, ``latent-dim``, ``modality``, ``image-size``).
        num_classes: classes of the conditional generator and discriminator.

    Raises:
        ValueError: an unknown ``model``; the message lists the known variants.
    """
    return create_gan(run.model, latent_dim=run.latent_dim, num_classes=num_classes,
                      **get_modality(run.modality).model_kwargs(run))


def initial_gan(run: RunConfig) -> GanPair:
    """The federation's global model before round 1: :func:`build_gan` right after
    ``torch.manual_seed(run.seed)``.

    The ServerApp, the in-process federation and the audits' untrained baseline all start
    here, so they start from the same weights. ``run.seed`` is public: these weights are
    data-independent and reveal nothing about any site. With ``pretrained`` set, the
    weights are those of ``medgan pretrain`` (:mod:`medgan_core.pretraining`, files :mod:`medgan_core.pretrained_weights`): trained on
    public data only, so they too reveal nothing about any site.

    Raises:
        ConfigError: ``pretrained`` is missing, unreadable or made for another model.
    """
    torch.manual_seed(run.seed)
    gan = build_gan(run)
    if run.pretrained:
        from medgan_core.models.state import load_gan_state
        from medgan_core.pretrained_weights import load_pretrained

        state, _ = load_pretrained(run)
        load_gan_state(gan, state)
    return gan
