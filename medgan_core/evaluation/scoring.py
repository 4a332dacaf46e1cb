"""A generator scored per class against held-out real patients, beside a real-data reference."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from medgan_core.data.labelled import LabelledSet
from medgan_core.evaluation.settings import EvaluationSettings
from medgan_core.evaluation.utility import classifier_scores
from medgan_core.metrics.distribution import median_heuristic_bandwidth
from medgan_core.metrics.encoder import Encoder
from medgan_core.metrics.feature_space import feature_metrics
from medgan_core.metrics.fidelity import nearest_neighbour_fidelity
from medgan_core.metrics.names import HOLDOUT_TO_TRAIN_RMSE, SYNTHETIC_TO_TRAIN_RMSE
from medgan_core.metrics.registry import registered_metric_scores
from medgan_core.models.registry import GanPair

if TYPE_CHECKING:
    from medgan_core.modalities.base import Modality

__all__ = ["evaluate_generator", "feature_bandwidth", "memorisation_check", "sample_with_labels",
           "score_against_real"]

logger = logging.getLogger(__name__)


def sample_with_labels(gan: GanPair, labels: torch.Tensor, *, seed: int, batch: int = 512) -> LabelledSet:
    """One synthetic sample per label, seeded; the global RNG is left untouched.

    Runs on the generator's device; the latents are drawn on the CPU (the same for a seed
    on every device) and the samples come back to the CPU.
    """
    rng = torch.Generator().manual_seed(seed)
    gan.generator.eval()
    device = next(gan.generator.parameters()).device
    with torch.no_grad():
        parts = [gan.generator(torch.randn(len(y), gan.latent_dim, generator=rng).to(device), y.to(device)).cpu()
                 for y in labels.long().split(batch)]
    return LabelledSet(torch.cat(parts).float(), labels.long().clone())


def feature_bandwidth(encoder: Encoder, train: LabelledSet, *, max_samples: int = 1000) -> float:
    """MMD kernel width fixed by the encoder and the training data (median heuristic).

    Fixed per encoder, not per comparison, so MMD values of different generators scored
    with the same encoder are comparable.
    """
    feats = encoder.features(train.subsample(max_samples, seed=0).samples)
    return median_heuristic_bandwidth(feats[0::2], feats[1::2], max_samples=max_samples)


def score_against_real(candidate: LabelledSet, real: LabelledSet, *, modality: "Modality", encoder: Encoder,
                       settings: EvaluationSettings, bandwidth: float, seed: int,
                       real_features: torch.Tensor | None = None) -> dict[str, float]:
    """Every set metric of one class's ``candidate`` samples (synthetic, or real for a
    reference) against ``real`` samples of that class: FD, PRDC, MMD^2 in the encoder's
    features, the sample-space metrics the modality supplies (``Modality.sample_metrics``:
    nearest-real RMSE/MAE/PSNR/SSIM, DTW for signals), then every registered metric that
    applies to the modality (:func:`medgan_core.metrics.registry.register_metric`)."""
    if real_features is None:
        real_features = encoder.features(real.samples)
    scores = feature_metrics(real_features, encoder.features(candidate.samples), bandwidth=bandwidth,
                             nearest_k=settings.nearest_k)
    scores.update(modality.sample_metrics(candidate, real, settings=settings, seed=seed))
    scores.update(registered_metric_scores(candidate, real, modality=modality.name, settings=settings, seed=seed))
    return scores


def memorisation_check(synthetic: LabelledSet, holdout: LabelledSet, train: LabelledSet, *,
                       scale: float) -> dict[str, float]:
    """Nearest-neighbour RMSE to the training samples: synthetic vs held-out real (same class).

    Synthetic samples closer to the training set than fresh real samples are a warning
    sign, of memorisation or of collapse onto the most typical training samples.
    """
    return {SYNTHETIC_TO_TRAIN_RMSE: nearest_neighbour_fidelity(synthetic.samples, train.samples).rmse_mean * scale,
            HOLDOUT_TO_TRAIN_RMSE: nearest_neighbour_fidelity(holdout.samples, train.samples).rmse_mean * scale}


def _balanced_labels(num_classes: int, per_class: int) -> torch.Tensor:
    return torch.arange(num_classes).repeat_interleave(per_class)


def evaluate_generator(*, gan: GanPair, modality: "Modality", encoder: Encoder, holdout: LabelledSet,
                       train: LabelledSet, class_names: Sequence[str], settings: EvaluationSettings,
                       bandwidth: float, seed: int = 0, with_reference: bool = True,
                       device: torch.device | str = "cpu") -> dict:
    """Score a generator per class against held-out real data, beside a real-data reference.

    For each class: :func:`score_against_real` for (a) ``synthetic_per_class`` synthetic
    samples and (b) as many real samples of the TRAINING patients (the ``reference``: what
    a generator that reproduced the training patients exactly would score on new
    patients). Plus :func:`memorisation_check` and, unless ``settings.classifier_seeds``
    is empty, TSTR on the held-out set. ``with_reference=False`` skips the reference and
    memorisation parts (per-round curves). The generator samples on its own device and
    the encoder embeds on its own; ``device`` is where the TSTR classifiers train.

    Returns:
        ``{"per_class": {name: {...}}, "reference": {name: {...}}, "memorisation": {name: {...}},
        "tstr": {...} | None, "synthetic": LabelledSet}`` (``synthetic`` is not JSON; pop it).
    """
    synthetic = sample_with_labels(gan, _balanced_labels(len(class_names), settings.synthetic_per_class),
                                   seed=seed)
    per_class: dict[str, dict] = {}
    reference: dict[str, dict] = {}
    memorisation: dict[str, dict] = {}
    for index, name in enumerate(class_names):
        real = holdout.of_class(index).subsample(settings.max_real_per_class, seed=seed)
        train_c = train.of_class(index)
        if len(real) < 3 or len(train_c) < 3:
            logger.warning("class %s: %d held-out and %d training samples, too few to score", name, len(real),
                           len(train_c))
            continue
        syn_c = synthetic.of_class(index)
        kwargs: dict[str, Any] = dict(modality=modality, encoder=encoder, real_features=encoder.features(real.samples),
                                      settings=settings, bandwidth=bandwidth, seed=seed)
        per_class[name] = score_against_real(syn_c, real, **kwargs)
        if not with_reference:
            continue
        reference[name] = score_against_real(train_c.subsample(len(syn_c), seed=seed), real, **kwargs)
        memorisation[name] = memorisation_check(syn_c, real, train_c.subsample(settings.max_real_per_class, seed=seed),
                                                scale=settings.physical_scale)
    tstr = None
    if settings.classifier_seeds:
        tstr = classifier_scores(synthetic, holdout, num_classes=len(class_names),
                                 epochs=settings.classifier_epochs, seeds=settings.classifier_seeds, device=device,
                                 per_patient=True)
    return {"per_class": per_class, "reference": reference, "memorisation": memorisation, "tstr": tstr,
            "synthetic": synthetic}
