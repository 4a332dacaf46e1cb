"""What a generator is worth against real data: the numbers the report and the study compute.

Pure functions over labelled sample sets (:class:`medgan_core.data.labelled.LabelledSet`;
no Flower). Two callers share them, so a number means the same thing wherever it appears:
the run report (``simulations/report.py``) scores the final global generator, per class,
against the held-out patients no site trained on; the study (``simulations/study.py``)
scores every (variant, epsilon, setting) the same way. Every value travels under one key
(:mod:`medgan_core.metrics.names`).

Sites compute none of these on their own records: each would be an uncharged release
(see ``medgan_core.site.evaluate_round``).

Feature space. Fréchet distance (FD), PRDC and MMD are computed on the features of a
domain encoder (:mod:`medgan_core.metrics.encoder`, ``Modality.encoder_backbone``): a
small CNN trained, supervised, to tell the diagnostic classes of REAL TRAINING data apart
(N vs V beats; NORMAL vs PNEUMONIA), whose penultimate layer is the feature space. It
keeps what separates the classes and discards what does not, which is why its distances
track clinically relevant differences, unlike ImageNet Inception features on an ECG. It
is trained once, saved, and reused (:func:`~medgan_core.metrics.encoder.load_or_train_encoder`),
because scores from different encoders are not comparable. It is a NON-PRIVATE model of
its training data: it must never ship with synthetic data.

Sample space. What applies depends on the data, so the modality supplies it
(``Modality.sample_metrics``): nearest-real RMSE/MAE/PSNR/SSIM for every modality, DTW for
signals. They say "a synthetic sample is close to SOME real sample"; they are not a
quality score, and close to the TRAINING set they are a memorisation warning
(:func:`memorisation_check`).

Modules: :mod:`.settings` (budgets and units), :mod:`.scoring` (per-class scores of a
generator), :mod:`.utility` (classifiers: TSTR, TRTR, augmentation gain; the project's CNN and,
independent of it, gradient-boosted trees).
"""

from medgan_core.evaluation.scoring import (
    evaluate_generator,
    feature_bandwidth,
    memorisation_check,
    sample_with_labels,
    score_against_real,
)
from medgan_core.evaluation.settings import EvaluationSettings
from medgan_core.evaluation.utility import augmentation_gain, classifier_scores, gbt_scores

__all__ = [
    "EvaluationSettings",
    "augmentation_gain",
    "classifier_scores",
    "evaluate_generator",
    "feature_bandwidth",
    "gbt_scores",
    "memorisation_check",
    "sample_with_labels",
    "score_against_real",
]
