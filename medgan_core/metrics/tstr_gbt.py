"""TSTR with a classifier independent of the project: gradient-boosted trees on z-normalised samples.

The report's CNN (:mod:`medgan_core.metrics.tstr`) is the project's own model, trained the
way the project chose; an outsider would score the same synthetic data with something off
the shelf. This module is that outsider: scikit-learn's ``HistGradientBoostingClassifier``
on each sample flattened and z-normalised on its own (an ECG beat's amplitude and offset
removed, its shape kept), images first averaged down to at most 32x32 pixels. Nothing
here is tuned to the data or shares code with the CNN except the scoring
(:func:`~medgan_core.metrics.tstr.scores_from_probabilities`), so both classifiers' rows
mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits
from torch.nn import functional as F

from medgan_core.metrics.tstr import ClassifierScores, scores_from_probabilities

__all__ = ["GBT_DESCRIPTION", "GbtConfig", "evaluate_gbt", "gbt_features", "gbt_probabilities", "train_gbt"]

GBT_DESCRIPTION = "gradient-boosted trees on z-normalised samples, independent of the project's CNN"


@dataclass(frozen=True)
class GbtConfig:
    """The trees' settings, fixed for every training set (only the data changes between rows).

    Attributes:
        max_iter: Boosting iterations (scikit-learn's default).
        max_features: Share of features each split may use; below 1 the seed picks them, so
            seeds give different ensembles and the std over seeds means something.
        max_side: Images larger than ``max_side`` on either side are averaged down to
            ``max_side`` x ``max_side`` before flattening; 1-D samples are left as they are.
    """

    max_iter: int = 100
    max_features: float = 0.5
    max_side: int = 32


def gbt_features(x: torch.Tensor, *, max_side: int = 32) -> np.ndarray:
    """Per-sample z-normalised, flattened features of ``x`` (B, C, L) or (B, C, H, W).

    Images with a side above ``max_side`` are area-averaged to ``max_side`` x ``max_side``
    first. Each sample is shifted to mean 0 and scaled to std 1 on its own; a constant
    sample becomes all zeros.

    Returns:
        (B, F) float64 features.
    """
    x = x.detach().to("cpu", torch.float64)
    if x.dim() == 4 and max(x.shape[-2:]) > max_side:
        x = F.interpolate(x, size=(max_side, max_side), mode="area")  # (B, C, max_side, max_side)
    flat = x.reshape(len(x), -1).numpy()  # (B, F)
    centred = flat - flat.mean(axis=1, keepdims=True)
    std = centred.std(axis=1, keepdims=True)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)


def train_gbt(x: torch.Tensor, y: torch.Tensor, *, seed: int = 0,
              config: GbtConfig = GbtConfig()) -> HistGradientBoostingClassifier:
    """Trees fitted on :func:`gbt_features` of ``x`` with classes ``y`` (B,).

    Classes are weighted by inverse frequency (as the CNN's loss is), which changes nothing
    on the class-balanced synthetic sets and lets the real set's rare class count. Early
    stopping is off, so every training set gets the same budget whatever its size; one
    OpenMP thread, so the same numbers on every machine.
    """
    model = HistGradientBoostingClassifier(max_iter=config.max_iter, max_features=config.max_features,
                                           early_stopping=False, class_weight="balanced", random_state=seed)
    with threadpool_limits(limits=1, user_api="openmp"):
        return model.fit(gbt_features(x, max_side=config.max_side), y.numpy())


def evaluate_gbt(model: HistGradientBoostingClassifier, x: torch.Tensor, y: torch.Tensor, *, num_classes: int,
                 config: GbtConfig = GbtConfig()) -> ClassifierScores:
    """Scores of fitted trees on ``x`` with classes ``y`` (B,): see :func:`scores_from_probabilities`."""
    return scores_from_probabilities(gbt_probabilities(model, x, num_classes=num_classes, config=config), y.numpy())


def gbt_probabilities(model: HistGradientBoostingClassifier, x: torch.Tensor, *, num_classes: int,
                      config: GbtConfig = GbtConfig()) -> np.ndarray:
    """Class probabilities (B, num_classes) of fitted trees on ``x``.

    Classes absent from the training set get probability 0, so the last column is always
    the last class; trees fitted on one class give it probability 1.
    """
    probs = np.zeros((len(x), num_classes))
    seen = model.classes_.astype(int)
    if len(seen) == 1:  # scikit-learn's predict_proba has no meaningful columns then
        probs[:, seen[0]] = 1.0
        return probs
    with threadpool_limits(limits=1, user_api="openmp"):
        probs[:, seen] = model.predict_proba(gbt_features(x, max_side=config.max_side))
    return probs
