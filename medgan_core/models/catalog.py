"""The catalogue of registered GAN variants: for each variant and each modality it applies
to, the sizes a run with that modality's defaults builds, and what touches real data.

Read by ``medgan models``; everything here comes from the two registries (variants and
modalities), so a variant registered later is listed without an edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["VariantRow", "variant_rows"]


@dataclass(frozen=True)
class VariantRow:
    """One variant built for one modality with the run config's defaults.

    Attributes:
        model: The variant's registered name (run-config ``model``).
        modality: A modality whose ``encoder_backbone`` the variant declares.
        sample_kind: That backbone (``"signal"`` or ``"image"``).
        model_kwargs: What the modality adds to the build (e.g. ``channels``, ``image_size``);
            the parameter counts scale with them.
        generator_parameters: Trainable parameters of the generator.
        discriminator_parameters: Trainable parameters of the discriminator (DP-SGD's noise
            norm grows with the square root of this).
        loss: ``"bce"`` or ``"wasserstein"``.
        touches_real_data: Networks trained under DP-SGD and charged to the ledger.
        encoder_parameters: Trainable parameters of a VAE-GAN's encoder (0 without one);
            released with the model update like G and D.
    """

    model: str
    modality: str
    sample_kind: str
    model_kwargs: dict[str, Any]
    generator_parameters: int
    discriminator_parameters: int
    loss: str
    touches_real_data: tuple[str, ...]
    encoder_parameters: int = 0


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def variant_rows() -> list[VariantRow]:
    """Every (variant, modality) pair the variant applies to, in name order.

    Builds each pair once with :func:`~medgan_core.models.build.build_gan` on a default run
    configuration of that modality, so the counts are those a run with defaults trains.
    """
    from medgan_core.config import RunConfig
    from medgan_core.modalities import available_modalities, get_modality
    from medgan_core.models.build import build_gan
    from medgan_core.models.registry import available_gans, gan_spec

    rows = []
    for name in available_gans():
        spec = gan_spec(name)
        for modality_name in available_modalities():
            modality = get_modality(modality_name)
            if not spec.applies_to(modality.encoder_backbone):
                continue
            run = RunConfig(modality=modality_name, model=name)
            gan = build_gan(run)
            rows.append(VariantRow(
                model=name, modality=modality_name, sample_kind=modality.encoder_backbone,
                model_kwargs=modality.model_kwargs(run), generator_parameters=_count(gan.generator),
                discriminator_parameters=_count(gan.discriminator), loss=gan.loss,
                touches_real_data=spec.touches_real_data,
                encoder_parameters=0 if gan.encoder is None else _count(gan.encoder),
            ))
    return rows
