"""The modality interface: everything that differs between kinds of medical data.

Code outside a :class:`Modality` implementation never asks which modality it is running:
it asks the modality (``get_modality(run.modality)``) for what it needs. A new modality,
e.g. 12-lead ECG, is one file with the implementation decorated ``@register_modality``,
plus one import line in ``medgan_core/modalities/__init__.py``; multi-channel samples
``(N, C, ...)`` flow through unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence, TypeVar

import numpy as np

from medgan_core.errors import ConfigError

if TYPE_CHECKING:
    from medgan_core.config import RunConfig
    from medgan_core.data.labelled import LabelledSet
    from medgan_core.data.site_data import SiteData
    from medgan_core.evaluation.settings import EvaluationSettings

__all__ = ["Modality", "SimulatedSite", "available_modalities", "get_modality", "register_modality"]


@dataclass(frozen=True)
class SimulatedSite:
    """Where a simulated site's data is: its paths, an optional patient share of a shared
    folder (hashable, so loads can be cached), and its held-out audit records (paths, and
    a share of them when they are a folder shared with the sites)."""

    data_paths: tuple[str, ...]
    patient_share: Any = None
    audit_paths: tuple[str, ...] = ()
    audit_share: Any = None


class Modality(ABC):
    """One kind of data: how it is read, simulated, shaped, exported and reported.

    Class attributes:
        name: The run-config value (``modality = name``).
        class_names: Class order; a label is an index here.
        record_word: What one record is, for people ("beat", "image").
        default_unit: The DP unit of ``privacy-unit = "auto"``.
        encoder_backbone: Backbone of the domain encoder for feature metrics
            (``medgan_core.metrics.encoder``).
        encoder_epochs: Epochs of that encoder when a report trains it.
        physical_scale: Model units -> ``sample_unit``.
        sample_unit: Unit of sample-space metrics (RMSE, DTW) in reports.
        report_per_class: Synthetic samples per class a report scores and exports.
        export_dir: Folder of a run directory that holds the synthetic export.
        export_format: What :meth:`export` writes, for people ("WFDB", "DICOM").
        round_metric: The sample-space metric drawn per round beside FD and coverage.
        bundled_simulation: Run-config values (kebab-case) that point a simulation at this
            modality's bundled data and sites, for ``medgan study --modality NAME``; empty
            when ``pyproject.toml``'s defaults already do (ECG).
    """

    name: ClassVar[str]
    class_names: ClassVar[tuple[str, ...]]
    record_word: ClassVar[str]
    default_unit: ClassVar[str] = "record"
    encoder_backbone: ClassVar[str]
    encoder_epochs: ClassVar[int] = 5
    physical_scale: ClassVar[float] = 1.0
    sample_unit: ClassVar[str] = "model units"
    report_per_class: ClassVar[int] = 500
    export_dir: ClassVar[str]
    export_format: ClassVar[str]
    round_metric: ClassVar[str] = "rmse"
    bundled_simulation: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    def model_kwargs(self, run: "RunConfig") -> dict[str, Any]:
        """Extra keyword arguments of ``create_gan`` for this modality (e.g. image size)."""
        return {}

    @abstractmethod
    def site_paths(self, data_dir: Path, records: Sequence[str] | None) -> tuple[str, ...]:
        """A deployed site's data paths from its TOML's ``[data] dir`` and ``records``."""

    @abstractmethod
    def simulated_site(self, run: "RunConfig", partition_id: int) -> SimulatedSite:
        """Simulated site ``partition_id``'s data (its patients only), from the run config."""

    def pooled_simulated_site(self, run: "RunConfig") -> SimulatedSite:
        """Simulation: one holder with every simulated site's patients (the centralized setting).

        By default the sites' data paths one after another, which is right where a site is
        its paths and all sites share one ``patient_share`` (ECG records; 12-lead records
        with one lead selection); a modality whose sites are shares of one folder overrides it.

        Raises:
            ConfigError: the sites' ``patient_share`` differ, so paths alone cannot pool them.
        """
        sites = [self.simulated_site(run, k) for k in range(len(run.site_record_groups()))]
        if len({site.patient_share for site in sites}) > 1:
            raise ConfigError(f"modality {self.name!r}: the simulated sites hold different shares of their data, "
                              "so their paths alone cannot pool them; implement pooled_simulated_site")
        return SimulatedSite(data_paths=tuple(path for site in sites for path in site.data_paths),
                             patient_share=sites[0].patient_share, audit_paths=sites[0].audit_paths,
                             audit_share=sites[0].audit_share)

    def public_data(self, run: "RunConfig") -> SimulatedSite:
        """Simulation: the public data of ``public-records`` that ``medgan pretrain`` trains
        on, disjoint from every simulated site and the hold-out (its ``data_paths`` and
        ``patient_share`` are read by :meth:`load`).

        Raises:
            ConfigError: the modality has no public split, ``public-records`` is empty, or
                it names a site's or the hold-out's patient.
        """
        raise ConfigError(f"modality {self.name!r} has no public split for pretraining; pretrain on the ecg or "
                          "xray modality, or start from random weights (pretrained='')")

    def public_split(self, run: "RunConfig") -> dict[str, Any]:
        """What sets ``public-records``' data apart from the sites' in this modality, as a
        pretraining's provenance records it: ``{"records": [...]}`` for named records (no
        site or hold-out may name one), or the split parameters of a shared folder (a run
        must split it the same way).

        Raises:
            ConfigError: the modality has no public split.
        """
        raise ConfigError(f"modality {self.name!r} has no public split for pretraining; pretrain on the ecg or "
                          "xray modality, or start from random weights (pretrained='')")

    @abstractmethod
    def load(self, data_paths: tuple[str, ...], *, image_size: int, patient_share: Any = None) -> "SiteData":
        """Read a site's data; a bad record is skipped and reported, never fatal."""

    @abstractmethod
    def audit_holdout(self, audit_paths: tuple[str, ...], *, image_size: int,
                      audit_share: Any = None) -> tuple["SiteData", "SiteData"]:
        """The membership audit's held-out patients, split by patient: (non-members, reference).

        Args:
            audit_paths: a site's ``[audit] records`` or a simulated site's ``audit_paths``.
            image_size: as for :meth:`load`.
            audit_share: a simulated site's ``audit_share``, else ``None``.

        Returns:
            Two disjoint sets of patients, loaded as :meth:`load` loads a site.

        Raises:
            ConfigError: fewer than two held-out patients.
        """

    @abstractmethod
    def simulation_data_missing(self, run: "RunConfig") -> list[str]:
        """The simulated sites' and hold-out data that this process cannot read (empty when it
        can read all of it, as the researcher-mode central audit needs)."""

    @abstractmethod
    def attribution_regions(self, sample_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Named, disjoint regions of one sample in which ``medgan explain`` sums attribution mass.

        Args:
            sample_shape: One sample's shape, ``(C, ...)`` as the models see it.

        Returns:
            Region name -> boolean mask of ``sample_shape``, in reading order (for ECG the
            beat's waves, for X-ray the lung fields); what they leave out is "rest".
        """

    @abstractmethod
    def export(self, samples: np.ndarray, labels: np.ndarray, out: Path, *, fs: int | None = None,
               provenance: str | None = None) -> list[Path]:
        """Write synthetic samples (model units) as this modality's files; returns the paths."""

    @abstractmethod
    def read_back(self, paths: Sequence[Path], *, image_size: int) -> "LabelledSet":
        """The files :meth:`export` wrote, read with the reader real data goes through, in model units."""

    # ---- evaluation: what a report needs to know about this kind of data ----

    @abstractmethod
    def evaluation_data(self, run: "RunConfig") -> tuple[list["LabelledSet"], "LabelledSet"]:
        """Simulation: every site's training samples (with patient ids) and the held-out samples.

        The held-out patients are disjoint from every site's; they are what a report
        scores the generator on.
        """

    def evaluation_settings(self, **overrides: Any) -> "EvaluationSettings":
        """This modality's evaluation budgets and units; ``overrides`` replace fields."""
        from medgan_core.evaluation.settings import EvaluationSettings

        return EvaluationSettings(**{"synthetic_per_class": self.report_per_class,
                                     "physical_scale": self.physical_scale, **overrides})

    def sample_metrics(self, candidate: "LabelledSet", real: "LabelledSet", *, settings: "EvaluationSettings",
                       seed: int) -> dict[str, float]:
        """Sample-space metrics of ``candidate`` against ``real`` (one class): by default
        nearest-real RMSE/MAE (``sample_unit``), PSNR and SSIM."""
        from medgan_core.metrics.fidelity import nearest_real_fidelity

        return nearest_real_fidelity(candidate.samples, real.samples, data_range=settings.data_range,
                                     scale=settings.physical_scale)

    @abstractmethod
    def plot_samples(self, real: "LabelledSet", synthetic: "LabelledSet", out_dir: Path, *, seed: int = 0,
                     real_title: str = "real (held-out patients)") -> Path:
        """A figure of real beside synthetic samples per class in ``out_dir``; returns its path.
        ``real_title`` says where the real samples come from, where the figure names it."""


_MODALITIES: dict[str, Modality] = {}


_M = TypeVar("_M", bound="Modality | type[Modality]")


def register_modality(modality: _M) -> _M:
    """Make ``modality`` available as ``modality = modality.name`` in run and site configs.

    Takes an instance, or a class (instantiated without arguments), so that it also serves as
    a class decorator (``@register_modality class MyModality(Modality): ...``); returns it.

    Raises:
        ValueError: the name is taken, or ``modality`` is not a :class:`Modality`.
    """
    instance = modality() if isinstance(modality, type) else modality
    if not isinstance(instance, Modality):
        raise ValueError(f"{modality!r} is not a Modality")
    if instance.name in _MODALITIES:
        raise ValueError(f"modality {instance.name!r} is already registered")
    _MODALITIES[instance.name] = instance
    return modality


def available_modalities() -> tuple[str, ...]:
    return tuple(_MODALITIES)


def get_modality(name: str) -> Modality:
    """The registered modality ``name``.

    Raises:
        ConfigError: an unknown name; the message lists the known ones.
    """
    try:
        return _MODALITIES[name]
    except KeyError:
        raise ConfigError(f"unknown modality {name!r}; use one of {', '.join(_MODALITIES)}") from None
