"""What a generator is worth against real data: the numbers the report and the study compute.

Pure functions over labelled sample sets (no Flower; the only file touched is an encoder
cache that the caller names). Three callers share them, so a number means the same thing
wherever it appears:

* the run report (``simulations/report.py``) scores the final global generator, per
  class, against the held-out patients no site trained on;
* the study (``simulations/study.py``) scores every (variant, epsilon, setting) the same way.

Sites compute none of these on their own records: each would be an uncharged release
(see ``medgan_core.site.evaluate_round``).

Feature space. Fréchet distance (FD), PRDC and MMD are computed on the features of a
domain encoder (:mod:`medgan_core.metrics.encoder`): a small CNN trained, supervised, to
tell the diagnostic classes of REAL TRAINING data apart (N vs V beats; NORMAL vs
PNEUMONIA), whose penultimate layer is the feature space. It keeps what separates the
classes (QRS width, ST shape, opacities) and discards what does not, which is why its
distances track clinically relevant differences, unlike ImageNet Inception features on an
ECG. It is trained once, saved, and reused, because scores from different encoders are
not comparable. It is a NON-PRIVATE model of its training data: in simulation the
researcher trains it centrally on the sites' training patients (``run_dir/encoder.pt``,
:func:`load_or_train_encoder`). It must never ship with synthetic data.

Sample-space numbers (RMSE/MAE/PSNR/SSIM to the nearest real sample) say "a synthetic
sample is close to SOME real sample"; they are not a quality score, and close to the
TRAINING set they are a memorisation warning (see :func:`nearest_real_fidelity`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medgan_core.metrics.distribution import median_heuristic_bandwidth, mmd2, prdc
from medgan_core.metrics.dtw import mean_nn_dtw
from medgan_core.metrics.encoder import Encoder, load_encoder, train_encoder
from medgan_core.metrics.fidelity import nearest_neighbour_fidelity, psnr, ssim
from medgan_core.metrics.frechet import (
    FrechetDistance,
    TorchScriptFeatureExtractor,
    feature_statistics,
    frechet_distance,
)
from medgan_core.metrics.tstr import evaluate_classifier, train_classifier
from medgan_core.models.registry import GanPair

__all__ = [
    "EvaluationSettings",
    "LabelledSet",
    "augmentation_gain",
    "classifier_scores",
    "dtw_metrics",
    "ecg_labelled_set",
    "evaluate_generator",
    "feature_bandwidth",
    "feature_metrics",
    "inception_fid",
    "load_or_train_encoder",
    "nearest_real_fidelity",
    "sample_with_labels",
    "score_against_real",
]

logger = logging.getLogger(__name__)

# The scalars every site adds to its evaluate reply (FedAvg drops a round whose sites
# disagree on keys, so the set is fixed here, in one place).

@dataclass(frozen=True)
class LabelledSet:
    """Samples in model units with class labels and, for real data, each sample's patient.

    Attributes:
        samples: (N, 1, L) signals or (N, 1, H, W) images.
        labels: (N,) int64 class indices.
        patients: Patient id per sample (empty for synthetic data).
    """

    samples: torch.Tensor
    labels: torch.Tensor
    patients: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.labels.shape != (self.samples.shape[0],):
            raise ValueError(f"labels {tuple(self.labels.shape)} must be (N,) for samples {tuple(self.samples.shape)}")
        if self.patients and len(self.patients) != len(self.labels):
            raise ValueError(f"{len(self.patients)} patient ids for {len(self.labels)} samples")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: torch.Tensor | np.ndarray) -> "LabelledSet":
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        patients = tuple(self.patients[i] for i in idx.tolist()) if self.patients else ()
        return LabelledSet(self.samples[idx], self.labels[idx], patients)

    def of_class(self, label: int) -> "LabelledSet":
        return self.take(torch.nonzero(self.labels == label).flatten())

    def subsample(self, n: int, *, seed: int) -> "LabelledSet":
        """At most ``n`` samples, drawn without replacement with a fixed seed."""
        if len(self) <= n:
            return self
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))

    @staticmethod
    def concat(parts: Sequence["LabelledSet"]) -> "LabelledSet":
        with_patients = all(p.patients for p in parts)
        return LabelledSet(torch.cat([p.samples for p in parts]), torch.cat([p.labels for p in parts]),
                           tuple(x for p in parts for x in p.patients) if with_patients else ())


@dataclass(frozen=True)
class EvaluationSettings:
    """Budgets and units of an evaluation; every field changes the numbers, so it is reported.

    Attributes:
        synthetic_per_class: Synthetic samples per class (the reference real set is
            subsampled to the same size: FD is biased by sample size).
        max_real_per_class: Real samples per class for FD/PRDC/MMD and nearest neighbours.
        dtw_samples: Synthetic samples per class for DTW (real: twice as many).
        dtw_radius: Sakoe-Chiba radius in samples (12 = 10% of a 128-sample ECG beat).
        nearest_k: k of PRDC's k-NN balls.
        data_range: Span of model units (2.0 for [-1, 1]) for PSNR/SSIM.
        physical_scale: Model units -> physical units (5.0 mV for ECG; 1.0 otherwise).
        classifier_epochs: Epochs of each TSTR/TRTR classifier.
        classifier_seeds: One classifier per seed; scores are averaged (empty: no TSTR).
    """

    synthetic_per_class: int = 500
    max_real_per_class: int = 1000
    dtw_samples: int = 150
    dtw_radius: int = 12
    nearest_k: int = 5
    data_range: float = 2.0
    physical_scale: float = 1.0
    classifier_epochs: int = 8
    classifier_seeds: tuple[int, ...] = (0, 1, 2)


def ecg_labelled_set(record_paths: Sequence[str | Path], patients: Sequence[str]) -> LabelledSet:
    """ECG beats of ``record_paths`` (one record is one patient, named by ``patients``).

    Bad records are skipped and logged by the reader, as everywhere else.
    """
    from medgan_core.data.ecg import EcgConfig, load_ecg_records

    config = EcgConfig()
    parts = []
    for path, patient in zip(record_paths, patients, strict=True):
        beats, _ = load_ecg_records([path], config)
        if len(beats):
            parts.append(LabelledSet(torch.from_numpy(beats.beats).unsqueeze(1), torch.from_numpy(beats.labels),
                                     (patient,) * len(beats)))
    if not parts:
        raise ValueError(f"no readable beats in records {list(patients)}")
    return LabelledSet.concat(parts)


def load_or_train_encoder(path: str | Path, data: LabelledSet, *, modality: str, epochs: int, seed: int
                          ) -> Encoder:
    """The domain encoder saved at ``path``, or one trained on ``data`` and saved there.

    ``data`` must be REAL TRAINING data of whoever runs this (never held-out data, which
    would then no longer be unseen). Reusing the file keeps scores comparable across
    rounds and runs; delete it to retrain (e.g. after the training data changed).
    """
    path = Path(path)
    if path.is_file():
        return load_encoder(path)
    from medgan_core.modalities import get_modality

    logger.info("training the %s evaluation encoder on %d real training samples (%d epochs) -> %s",
                modality, len(data), epochs, path)
    encoder = train_encoder(data.samples, data.labels, modality=get_modality(modality).encoder_backbone,
                            epochs=epochs, seed=seed)
    encoder.save(path)
    return encoder


def sample_with_labels(gan: GanPair, labels: torch.Tensor, *, seed: int, batch: int = 512) -> LabelledSet:
    """One synthetic sample per label, seeded; the global RNG is left untouched."""
    rng = torch.Generator().manual_seed(seed)
    gan.generator.eval()
    with torch.no_grad():
        parts = [gan.generator(torch.randn(len(y), gan.latent_dim, generator=rng), y)
                 for y in labels.long().split(batch)]
    return LabelledSet(torch.cat(parts).float(), labels.long().clone())


def _balanced_labels(num_classes: int, per_class: int) -> torch.Tensor:
    return torch.arange(num_classes).repeat_interleave(per_class)


def feature_metrics(real: torch.Tensor, synthetic: torch.Tensor, *, bandwidth: float, nearest_k: int = 5
                    ) -> dict[str, float]:
    """FD, PRDC and unbiased MMD^2 between real and synthetic features (N, D).

    ``nearest_k`` is lowered to fit small sets (PRDC needs k < min(N, M)).
    """
    mu_r, sigma_r = feature_statistics(real)
    mu_s, sigma_s = feature_statistics(synthetic)
    k = max(1, min(nearest_k, len(real) - 1, len(synthetic) - 1))
    scores = prdc(real, synthetic, nearest_k=k)
    return {"fd": frechet_distance(mu_r, sigma_r, mu_s, sigma_s), "precision": scores.precision,
            "recall": scores.recall, "density": scores.density, "coverage": scores.coverage,
            "mmd2": mmd2(real, synthetic, bandwidth=bandwidth)}


def dtw_metrics(synthetic: torch.Tensor, real: torch.Tensor, *, radius: int, scale: float = 1.0
                ) -> dict[str, float]:
    """Mean nearest-neighbour DTW (banded) both ways between signal sets (N, 1, L), in physical units."""
    result = mean_nn_dtw(synthetic[:, 0], real[:, 0], window=int(radius))
    return {"dtw_syn_to_real": result.synthetic_to_real * scale,
            "dtw_real_to_syn": result.real_to_synthetic * scale}


def nearest_real_fidelity(synthetic: torch.Tensor, real: torch.Tensor, *, data_range: float, scale: float = 1.0
                          ) -> dict[str, float]:
    """RMSE, MAE (physical units), PSNR (dB) and SSIM of each synthetic sample vs its nearest real one.

    What they mean: how close a synthetic sample is to SOME real sample (L2 nearest
    neighbour). What they do not: a GAN sample has no true partner, so these are not
    reconstruction quality, and copying the training data scores best. Against held-out
    patients they measure plausibility; against the training patients a value below the
    held-out-real-to-training value is a memorisation warning. ``exact_copies`` counts
    synthetic samples identical to a real one (infinite PSNR, excluded from its mean).
    """
    nn_scores = nearest_neighbour_fidelity(synthetic, real)
    syn = synthetic.detach().double().flatten(1)
    ref = real.detach().double().flatten(1)
    nearest = torch.cat([torch.cdist(block, ref).argmin(dim=1) for block in syn.split(1024)])
    paired = real[nearest]
    peak = psnr(synthetic, paired, data_range=data_range)
    finite = torch.isfinite(peak)
    return {"rmse": nn_scores.rmse_mean * scale, "mae": nn_scores.mae_mean * scale,
            "psnr_db": float(peak[finite].mean()) if finite.any() else float("inf"),
            "ssim": float(ssim(synthetic, paired, data_range=data_range).mean()),
            "exact_copies": int((~finite).sum())}


def classifier_scores(train: LabelledSet, test: LabelledSet, *, num_classes: int, epochs: int,
                      seeds: Sequence[int]) -> dict[str, float]:
    """The fixed small classifier trained on ``train``, tested on ``test``, averaged over seeds.

    Returns:
        Mean ``balanced_accuracy``, ``auroc`` (last class vs rest), ``macro_f1``; the std
        of balanced accuracy over seeds (``balanced_accuracy_std``), ``num_test``, ``seeds``.
    """
    if not seeds:
        raise ValueError("classifier_scores needs at least one seed")
    runs = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):  # train_classifier seeds the global RNG
            model = train_classifier(train.samples, train.labels, num_classes=num_classes,
                                     epochs=epochs, seed=int(seed))
        runs.append(evaluate_classifier(model, test.samples, test.labels))
    bacc = np.array([r.balanced_accuracy for r in runs])
    return {"balanced_accuracy": float(bacc.mean()), "auroc": float(np.mean([r.auroc for r in runs])),
            "macro_f1": float(np.mean([r.macro_f1 for r in runs])), "balanced_accuracy_std": float(bacc.std()),
            "num_test": len(test), "seeds": len(runs)}


def augmentation_gain(*, site: LabelledSet, synthetic: LabelledSet, test: LabelledSet, num_classes: int,
                      epochs: int, seeds: Sequence[int]) -> dict:
    """A site's classifier on its own data alone vs its own data plus synthetic data.

    Both are tested on ``test``, whose patients must be disjoint from the site's: the
    question is whether the federation's synthetic data helps this hospital on patients
    it has never seen.

    Raises:
        ValueError: If either real set lacks patient ids, or they share a patient.
    """
    if not site.patients or not test.patients:
        raise ValueError("augmentation_gain needs patient ids on the site and test sets to prove they are disjoint")
    shared = sorted(set(site.patients) & set(test.patients))
    if shared:
        raise ValueError(f"test patients {shared} are also site training patients; test on held-out patients")
    alone = classifier_scores(site, test, num_classes=num_classes, epochs=epochs, seeds=seeds)
    combined = LabelledSet.concat([LabelledSet(site.samples, site.labels), synthetic])
    plus = classifier_scores(combined, test, num_classes=num_classes, epochs=epochs, seeds=seeds)
    return {"own_data": alone, "own_plus_synthetic": plus,
            "gain_balanced_accuracy": plus["balanced_accuracy"] - alone["balanced_accuracy"],
            "gain_auroc": plus["auroc"] - alone["auroc"], "gain_macro_f1": plus["macro_f1"] - alone["macro_f1"],
            "site_patients": sorted(set(site.patients)), "test_patients": sorted(set(test.patients)),
            "num_site": len(site), "num_synthetic": len(synthetic)}


def score_against_real(candidate: LabelledSet, real: LabelledSet, *, encoder: Encoder, settings: EvaluationSettings,
                       bandwidth: float, seed: int, real_features: torch.Tensor | None = None) -> dict[str, float]:
    """Every set metric of one class's ``candidate`` samples (synthetic, or real for a
    reference) against ``real`` samples of that class: FD, PRDC, MMD^2, nearest-real
    RMSE/MAE/PSNR/SSIM and, for signals, DTW both ways."""
    if real_features is None:
        real_features = encoder.features(real.samples)
    scores = feature_metrics(real_features, encoder.features(candidate.samples), bandwidth=bandwidth,
                             nearest_k=settings.nearest_k)
    scores.update(nearest_real_fidelity(candidate.samples, real.samples, data_range=settings.data_range,
                                        scale=settings.physical_scale))
    if candidate.samples.ndim == 3:  # 1-D signals: DTW on subsets (it is O(N M L r))
        syn = candidate.subsample(settings.dtw_samples, seed=seed).samples
        ref = real.subsample(2 * settings.dtw_samples, seed=seed + 1).samples
        scores.update(dtw_metrics(syn, ref, radius=settings.dtw_radius, scale=settings.physical_scale))
    return scores


def evaluate_generator(*, gan: GanPair, encoder: Encoder, holdout: LabelledSet, train: LabelledSet,
                       class_names: Sequence[str], settings: EvaluationSettings, bandwidth: float,
                       seed: int = 0, with_reference: bool = True) -> dict:
    """Score a generator per class against held-out real data, beside a real-data reference.

    For each class: FD, PRDC, MMD^2 (encoder features), nearest-real RMSE/MAE/PSNR/SSIM,
    DTW both ways (signals), for (a) ``synthetic_per_class`` synthetic samples and (b) as
    many real samples of the TRAINING patients (the ``reference``: what a generator that
    reproduced the training patients exactly would score on new patients). Plus a
    memorisation check (nearest-neighbour RMSE to the training set, synthetic vs held-out
    real) and, unless ``settings.classifier_seeds`` is empty, TSTR on the held-out set.
    ``with_reference=False`` skips the reference and memorisation parts (per-round curves).

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
        real_features = encoder.features(real.samples)
        syn_c = synthetic.of_class(index)
        kwargs = dict(encoder=encoder, real_features=real_features, settings=settings, bandwidth=bandwidth,
                      seed=seed)
        per_class[name] = score_against_real(syn_c, real, **kwargs)
        if not with_reference:
            continue
        reference[name] = score_against_real(train_c.subsample(len(syn_c), seed=seed), real, **kwargs)
        train_ref = train_c.subsample(settings.max_real_per_class, seed=seed).samples
        memorisation[name] = {
            "synthetic_to_train_rmse": nearest_neighbour_fidelity(syn_c.samples, train_ref).rmse_mean
            * settings.physical_scale,
            "holdout_to_train_rmse": nearest_neighbour_fidelity(real.samples, train_ref).rmse_mean
            * settings.physical_scale,
        }
    tstr = None
    if settings.classifier_seeds:
        tstr = classifier_scores(synthetic, holdout, num_classes=len(class_names),
                                 epochs=settings.classifier_epochs, seeds=settings.classifier_seeds)
    return {"per_class": per_class, "reference": reference, "memorisation": memorisation, "tstr": tstr,
            "synthetic": synthetic}


def inception_fid(real: torch.Tensor, synthetic: torch.Tensor, *, path: str | Path, batch: int = 64) -> float:
    """Conventional FID of images (N, 1 or 3, H, W) in [-1, 1] with a user-supplied Inception.

    ``path`` is a TorchScript Inception-v3 file on disk (see
    :class:`~medgan_core.metrics.frechet.TorchScriptFeatureExtractor`); nothing is ever
    downloaded. Only meaningful for images; 1-D signals use the domain encoder's FD.

    Raises:
        FileNotFoundError: If ``path`` does not exist (the message says where to get it).
        ValueError: If the inputs are not image batches.
    """
    if real.ndim != 4 or synthetic.ndim != 4:
        raise ValueError("Inception FID needs image batches (N, C, H, W); score 1-D signals with the encoder FD")
    metric = FrechetDistance(TorchScriptFeatureExtractor(path))
    for batch_real in real.split(batch):
        metric.update(batch_real, real=True)
    for batch_fake in synthetic.split(batch):
        metric.update(batch_fake, real=False)
    return metric.compute()


def feature_bandwidth(encoder: Encoder, train: LabelledSet, *, max_samples: int = 1000) -> float:
    """MMD kernel width fixed by the encoder and the training data (median heuristic).

    Fixed per encoder, not per comparison, so MMD values of different generators scored
    with the same encoder are comparable.
    """
    feats = encoder.features(train.subsample(max_samples, seed=0).samples)
    return median_heuristic_bandwidth(feats[0::2], feats[1::2], max_samples=max_samples)

