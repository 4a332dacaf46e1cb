"""Public pretraining: G and D trained without privacy on public data that no site holds.

The strongest known lever for differentially private generation is to start DP training
from a model pretrained on public data, so that the private steps spend their noisy signal
on what the private data adds rather than on learning what an ECG beat or a radiograph
looks like (Li et al., "Large Language Models Can Be Strong Differentially Private
Learners", ICLR 2022; Ghalebikesabi et al., "Differentially Private Diffusion Models
Generate Useful Synthetic Images", 2023). Here the coordinator (or a researcher) runs
``medgan pretrain`` once; the run config's ``pretrained`` key then makes those weights the
federation's round-1 model, in place of random ones.

Why it costs the sites nothing: the weights are a function of public data and a public
seed only, like the random initial weights they replace. No site's record enters them, so
every site's (epsilon, delta) accounting is unchanged; the coordinator knows them anyway,
as it knows the initial weights it sends. What must hold is that the public data really is
no site's: in a simulation :meth:`~medgan_core.modalities.base.Modality.public_data` keeps
it apart from every site and the hold-out (ECG: other records; X-ray: a patient share of
its own), and the directory records which data it was and under which licence
(``provenance.json``, copied into every run directory that starts from it).

Training is the sites' own loop (:func:`~medgan_core.training.dp_gan.train_local_gan`)
without DP, seeded (public data needs no secret randomness, and a seed makes it
reproducible), with the classes balanced by resampling: the public ECG sets hold few PVCs,
and a conditional GAN pretrained on 13 V beats among 5,000 would barely learn its V pathway.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.models.registry import GanPair
from medgan_core.pretrained_weights import (
    PROVENANCE_FILE,
    WEIGHTS_FILE,
    load_pretrained,
    portable_path,
    pretrained_meta,
    resolve_pretrained,
    write_pretrained,
)

__all__ = ["PROVENANCE_FILE", "PretrainingConfig", "PretrainingResult", "WEIGHTS_FILE", "balanced_indices", "dataset_licence",
           "check_public_split", "load_pretrained", "load_public_data", "pretrain", "public_data_digest", "public_split",
           "pretrained_meta", "resolve_pretrained", "save_pretrained"]

logger = logging.getLogger(__name__)


#: Licences of the openly licensed sets this repository bundles, by folder name.
KNOWN_LICENCES: dict[str, str] = {
    "cpsc2021": ("CPSC 2021 (PhysioNet), CC BY 4.0: Wang X et al., \"Paroxysmal Atrial Fibrillation Events "
                 "Detection from Dynamic ECG Recordings: The 4th China Physiological Signal Challenge 2021\""),
    "mitdb": ("MIT-BIH Arrhythmia Database (PhysioNet), Open Data Commons Attribution License v1.0: Moody GB, "
              "Mark RG, IEEE Eng Med Biol 20(3):45-50 (2001)"),
    "svdb": ("MIT-BIH Supraventricular Arrhythmia Database (PhysioNet), Open Data Commons Attribution License "
             "v1.0: Greenwald SD, Patil RS, Mark RG, Computers in Cardiology 1990"),
    "cinc2021": ("PhysioNet/CinC Challenge 2021, CC BY 4.0: Reyna MA et al., \"Will Two Do? Varying Dimensions "
                 "in Electrocardiography\""),
    "kermany": ("Chest X-ray images, CC BY 4.0: Kermany D, Zhang K, Goldbaum M, \"Labeled Optical Coherence "
                "Tomography (OCT) and Chest X-Ray Images for Classification\", Mendeley Data v2 (2018)"),
}


@dataclass(frozen=True)
class PretrainingConfig:
    """How ``medgan pretrain`` trains (the model, sizes and learning rates are the run's).

    Attributes:
        steps: Discriminator steps (the generator steps after each: n_D = 1, since a
            non-private discriminator needs no head start).
        seed: Seed of the initial weights, the batches and the latents; public.
        balance_classes: Resample every class to the size of the largest.
        licence: The public data's licence; ``None``: looked up in :data:`KNOWN_LICENCES`.
    """

    steps: int = 3000
    seed: int = 0
    balance_classes: bool = True
    licence: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"--steps {self.steps}: pretraining needs at least one step")


def dataset_licence(run: RunConfig, override: str | None = None) -> str:
    """The licence of ``run``'s public data: ``override``, or the known licence of each
    database it comes from (named records: their folders; a share of a folder: its name).

    Raises:
        ConfigError: a database whose licence is not known and no ``override``.
    """
    if override:
        return override
    split = public_split(run)
    records = split.get("records")
    folders = sorted({Path(r).parts[0] for r in records}) if records else [Path(run.data_root).name]
    unknown = [f for f in folders if f not in KNOWN_LICENCES]
    if unknown:
        raise ConfigError(f"public data from {unknown}: its licence is not known to medgan; say it with "
                          "--licence 'NAME, LICENCE: citation' (only openly licensed data may be pretrained on)")
    return "; ".join(KNOWN_LICENCES[f] for f in folders)


def balanced_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices that resample every class present to the size of the largest (with
    replacement for the smaller ones), shuffled."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    size = int(counts.max())
    chosen = [rng.choice(np.flatnonzero(labels == c), size=size, replace=size > n) for c, n in zip(classes, counts)]
    return rng.permutation(np.concatenate(chosen))


@dataclass
class PretrainingResult:
    """A pretrained GAN (on the CPU), its provenance (what :func:`save_pretrained` writes)
    and the public data it was trained on."""

    gan: GanPair
    provenance: dict[str, Any]
    public: Any  # medgan_core.data.site_data.SiteData


def pretrain(run: RunConfig, config: PretrainingConfig, progress: Any = None) -> PretrainingResult:
    """Train ``run``'s GAN without privacy on its ``public-records`` data.

    Raises:
        ConfigError: no public split, an unknown licence, or too little public data.
    """
    from medgan_core.device import resolve_device
    from medgan_core.models.build import build_gan
    from medgan_core.modalities import get_modality
    from medgan_core.training.dp_gan import train_local_gan
    from medgan_core.training.steps import LocalTrainingConfig

    get_modality(run.modality).public_data(run)  # an empty or overlapping public-records first: its fix comes first
    licence = dataset_licence(run, config.licence)  # before minutes of training
    data = load_public_data(run)
    labels = data.labels.numpy()
    counts = Counter(data.class_names[int(label)] for label in labels)
    if len(data.samples) < run.batch_size:
        raise ConfigError(f"public-records={run.public_records!r}: {len(data.samples)} samples, fewer than "
                          f"batch-size={run.batch_size}; name more public records")
    index = balanced_indices(labels, config.seed) if config.balance_classes else np.arange(len(labels))
    torch.manual_seed(config.seed)
    gan = build_gan(run)
    training = LocalTrainingConfig(
        local_steps=config.steps, batch_size=run.batch_size, learning_rate_d=run.learning_rate_d,
        learning_rate_g=run.learning_rate_g, seed=config.seed, mode_seeking_weight=run.mode_seeking_weight,
        discriminator_steps=1, device=resolve_device(run.device))
    started = time.monotonic()
    result = train_local_gan(gan=gan, beats=data.samples[index], labels=data.labels[index], config=training,
                             dp=None, progress=progress)
    digest = public_data_digest(data)
    provenance = {
        "what": "public pretraining: no site's data; costs the sites no privacy",
        **pretrained_meta(run),
        "public-records": run.public_records,
        "split": public_split(run),
        "licence": licence,
        "samples": len(labels), "class-counts": dict(sorted(counts.items())),
        "patients": sorted(set(data.patient_ids)),
        "data-sha256": digest,
        "skipped": [str(s) for s in getattr(data.report, "skipped", [])],
        "training": {"steps": config.steps, "batch-size": run.batch_size, "learning-rate-d": run.learning_rate_d,
                     "learning-rate-g": run.learning_rate_g, "mode-seeking-weight": run.mode_seeking_weight,
                     "balance-classes": config.balance_classes, "seed": config.seed, "dp": False,
                     "seconds": round(time.monotonic() - started, 1), "final-d-loss": result.d_loss,
                     "final-g-loss": result.g_loss},
    }
    return PretrainingResult(gan, provenance, data)


def load_public_data(run: RunConfig) -> Any:
    """``run``'s public data as its modality reads it (a ``SiteData``), kept apart from every
    site and the hold-out (:meth:`~medgan_core.modalities.base.Modality.public_data`).

    Raises:
        ConfigError: an empty public split, or one that overlaps a site or the hold-out.
    """
    from medgan_core.modalities import get_modality

    modality = get_modality(run.modality)
    public = modality.public_data(run)
    return modality.load(public.data_paths, image_size=run.image_size, patient_share=public.patient_share)


def public_data_digest(data: Any) -> str:
    """sha256 of the public samples and labels as read (the provenance's ``data-sha256``)."""
    return hashlib.sha256(data.samples.numpy().tobytes() + data.labels.numpy().astype(np.int64).tobytes()).hexdigest()


def save_pretrained(out: str | Path, gan: GanPair, provenance: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``gan``'s weights and ``provenance`` to ``out`` (:func:`~medgan_core.pretrained_weights.write_pretrained`).

    Raises:
        ConfigError: ``out`` already holds a pretraining and ``overwrite`` is false.
    """
    from medgan_core.models.state import gan_state

    return write_pretrained(out, gan_state(gan), provenance, overwrite=overwrite)


def public_split(run: RunConfig) -> dict[str, Any]:
    """What fixes ``run``'s public data apart from the sites' (recorded in the provenance):
    ``data-root`` and the modality's :meth:`~medgan_core.modalities.base.Modality.public_split`."""
    from medgan_core.modalities import get_modality

    return {"data-root": portable_path(run.data_root), **get_modality(run.modality).public_split(run)}


def check_public_split(run: RunConfig, provenance: dict[str, Any]) -> None:
    """Simulation: refuse a run whose sites or hold-out hold data the pretraining saw.

    Named public records (ECG) may be no site's or the hold-out's. A public share of the
    same folder (X-ray) must come from the very split this run makes (same shares and
    seed, the public share included), so that its patients are neither a site's nor the
    hold-out's.

    Raises:
        ConfigError: naming the overlap and the fix.
    """
    split = provenance.get("split", {})
    if split.get("data-root") != portable_path(run.data_root):
        return  # other folders: the public data is no site's by construction
    if "records" in split:
        shared = sorted(set(run.simulation_records()) & set(split["records"]))
        if shared:
            raise ConfigError(f"pretrained={run.pretrained!r} was trained on {shared}, which this run's sites or "
                              "hold-out hold; pretrain on other records or change site-records/holdout-records")
        return
    ours = public_split(run)
    if split != ours:
        raise ConfigError(
            f"pretrained={run.pretrained!r} was trained on a public share of {split.get('data-root')} split as "
            f"{split}; this run splits it as {ours}, so its sites or hold-out would hold patients the pretraining "
            "saw. Use the pretraining's site-records, holdout-records, public-records and seed")
