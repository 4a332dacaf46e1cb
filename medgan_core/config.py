"""Run configuration: parsed once, at the boundary, into a frozen dataclass.

Flower hands apps a flat mapping with kebab-case keys (``[tool.flwr.app.config]`` in
``pyproject.toml``, overridden with ``--run-config``). Everything past the boundary
takes typed, keyword-only values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from medgan_core.device import DEVICE_RULE
from medgan_core.errors import ConfigError
from medgan_core.schema import Rule, coerce, finite_in, non_negative_int, one_of, positive_int

__all__ = ["RunConfig"]


#: Per-sample-gradient mode of every DP step unless a run says otherwise. "fused" is the
#: project's one-pass clip-and-noise (medgan_core.training.fused_dp) for record-level DP,
#: the same mechanism as Opacus's at about half its cost; patient-level DP combines
#: Opacus's per-record gradients per patient under "fused" and "hooks" alike. "hooks" is
#: Opacus for any layer it supports; "ghost" is Opacus's fast clipping (record-level only).
DEFAULT_GRAD_SAMPLE_MODE = "fused"


@dataclass(frozen=True)
class RunConfig:
    modality: str = "ecg"
    model: str = "dcgan1d_smooth"
    num_server_rounds: int = 4
    local_steps: int = 500
    batch_size: int = 64
    learning_rate_d: float = 8e-4
    learning_rate_g: float = 8e-4
    latent_dim: int = 32
    # Generator-only mode-seeking regulariser (MSGAN) against mode collapse under a noisy
    # discriminator; it reads only generator outputs, so it costs no privacy. 0 = off.
    mode_seeking_weight: float = 0.1
    # Decay of a moving average of the generator's weights over a site's local steps; the
    # site releases the average (post-processing, no privacy cost). 0 = off.
    generator_ema: float = 0.0
    # Private discriminator steps per generator step (n_D). Under DP-SGD the discriminator
    # is noisy and learns slowly; several of its steps per generator step keep it ahead of
    # the generator (Bie, Kamath & Zhang, "Private GANs, Revisited", TMLR 2023). Privacy
    # counts discriminator steps (local-steps); the generator takes ceil(local-steps / n_D).
    discriminator_steps: int = 5
    target_epsilon: float = 10.0
    target_delta: float = 1e-5
    noise_multiplier: float = 0.0
    max_grad_norm: float = 1.0
    label_prior_noise: float = 20.0
    dp_enabled: bool = True
    # What one unit of each site's (epsilon, delta) protects: "record" (one beat or image),
    # "patient" (all of a person's records: user-level DP-SGD), or "auto" = the modality's
    # default (ECG record, X-ray patient). A site's own [privacy] unit wins.
    privacy_unit: str = "auto"
    # Patient-level DP only: expected patients Poisson-sampled per discriminator step, and
    # at most this many of a sampled patient's records in that step.
    patients_per_step: int = 64
    records_per_patient: int = 2
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE
    seed: int = 42
    run_dir: str = "runs/ecg"
    data_root: str = "data/ecg"
    # Simulation only: the records of each site ("|" between sites, spaces between
    # records) and the held-out patients no site trains on. One record is one patient.
    site_records: str = "mitdb/106 mitdb/100|mitdb/105 mitdb/123|mitdb/108 mitdb/121 svdb/800"
    holdout_records: str = "mitdb/114 mitdb/116"
    # Simulation only: the public data `medgan pretrain` trains on, kept apart from every
    # site and the hold-out (ECG: records under data-root; X-ray: one more patient share,
    # after the hold-out's). "" = none.
    public_records: str = ""
    # Simulation only: how the sites' patients are split. "records" = as site-records says
    # (X-ray: the shares; ecg12: the institutions); "dirichlet" = each class's patients over
    # the sites by Dir(partition-alpha) (medgan_core.data.partition), the hold-out unchanged.
    # A Dirichlet draw that leaves a site under partition-min-patients patients is redrawn.
    partition: str = "records"
    partition_alpha: float = 1.0
    partition_min_patients: int = 10
    fraction_train: float = 1.0
    min_nodes: int = 2
    fraction_evaluate: float = 1.0
    audit_every: int = 0
    # Membership audit (medgan_core.audit): attacks run by the audits, and the number of
    # one-run audit canaries offered to simulated site 0 (each included with prob. 1/2).
    audit_attacks: str = "logan gan_leaks gan_leaks_calibrated domias"
    canaries: int = 0
    image_size: int = 64
    # Multi-lead ECG only: the leads each sample holds, space-separated ("" = all 12).
    leads: str = ""
    # A run directory whose latest checkpoint this run continues from ("" = start fresh).
    resume_from: str = ""
    # A directory written by `medgan pretrain` (weights.pt + provenance.json): the round-1
    # model is that public pretraining instead of random weights. It was trained only on
    # public data no site holds, so it costs the sites no privacy. "" = random weights.
    pretrained: str = ""
    # Where sites train, and where the report and `medgan generate` run: "auto" (CUDA when
    # PyTorch sees a GPU, else the CPU), "cpu", "cuda" or "cuda:N". A site's own
    # [site] device wins (it is the site's hardware); medgan_core.device resolves it.
    device: str = "auto"

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, where: str = "run-config") -> "RunConfig":
        """Parse a Flower run config (kebab-case keys), every value checked against its rule.

        Raises:
            ConfigError: one line naming ``where``, the key, the value and what is accepted;
                unknown keys are an error too.
        """
        cls.reject_unknown_keys(raw)
        values = {key.replace("-", "_"): coerce(value, _RULES[key.replace("-", "_")], where=where, key=key)
                  for key, value in raw.items()}
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def reject_unknown_keys(cls, keys: Iterable[str]) -> None:
        """Raise ConfigError naming the first key that is not a run-config key, and the known ones."""
        known = {f.name for f in fields(cls)}
        for key in keys:
            if key.replace("-", "_") not in known:
                raise ConfigError(
                    f"unknown run-config key {key!r}; known keys: "
                    + ", ".join(sorted(k.replace("_", "-") for k in known))
                )

    def to_mapping(self) -> dict[str, Any]:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    def validate(self) -> None:
        """Every value against its rule, then the rules that tie values together."""
        for f in fields(self):
            coerce(getattr(self, f.name), _RULES[f.name], where="run-config", key=f.name.replace("_", "-"))
        from medgan_core.models.registry import available_gans  # the registry imports models, not config

        from medgan_core.modalities import available_modalities  # modalities type-check against this module

        if self.modality not in available_modalities():  # the registry now, not a list frozen at import
            raise ConfigError(f"run-config: modality = {self.modality!r} is invalid; use one of the registered "
                              "modalities: " + ", ".join(available_modalities()))
        if self.model not in available_gans():
            raise ConfigError(f"run-config: model = {self.model!r} is not a registered GAN; use one of "
                              + ", ".join(available_gans()))
        from medgan_core.modalities import get_modality
        from medgan_core.models.registry import gan_spec

        kind = get_modality(self.modality).encoder_backbone
        if not gan_spec(self.model).applies_to(kind):
            fitting = [name for name in available_gans() if gan_spec(name).applies_to(kind)]
            raise ConfigError(f"run-config: model = {self.model!r} does not generate {kind} samples, which "
                              f"modality = {self.modality!r} needs; use one of " + ", ".join(fitting))
        touches = gan_spec(self.model).touches_real_data
        if self.unit == "patient" and tuple(touches) != ("discriminator",):
            # Patient-level DP-SGD (training/patient_dp.py) clips the discriminator only.
            why = (f" (modality = {self.modality!r} defaults to 'patient')" if self.privacy_unit == "auto" else "")
            raise ConfigError(f"run-config: model = {self.model!r} trains {', '.join(touches)} on real records, and "
                              f"patient-level DP clips only the discriminator; set privacy-unit = 'record'{why}, "
                              "or use a plain GAN variant")
        if not self.site_record_groups():
            raise ConfigError("run-config: site-records is empty; list each site's records, '|' between sites")

    @property
    def unit(self) -> str:
        """The privacy unit this run asks for, ``auto`` resolved by modality."""
        if self.privacy_unit != "auto":
            return self.privacy_unit
        from medgan_core.modalities import get_modality  # modalities type-check against this module

        return get_modality(self.modality).default_unit

    @property
    def dirichlet_alpha(self) -> float | None:
        """``partition-alpha`` when the simulated sites are a Dirichlet label-skew split, else ``None``."""
        return self.partition_alpha if self.partition == "dirichlet" else None

    def site_record_groups(self) -> list[list[str]]:
        return [group.split() for group in self.site_records.split("|") if group.strip()]

    def simulation_records(self) -> list[str]:
        """Simulation: every record a site or the hold-out names (``site-records``, then
        ``holdout-records``)."""
        return [record for group in self.site_record_groups() for record in group] + self.holdout_records.split()

    def record_paths(self, records: list[str]) -> list[Path]:
        return [Path(self.data_root) / r for r in records]


_TEXT = Rule(str)
_RULES: dict[str, Rule] = {
    "modality": _TEXT,  # checked against the registry in RunConfig.validate
    "model": _TEXT,
    "num_server_rounds": positive_int(10_000),
    "local_steps": positive_int(1_000_000),
    "batch_size": positive_int(1_000_000),
    "learning_rate_d": finite_in(0.0, 1.0, low_open=True),
    "learning_rate_g": finite_in(0.0, 1.0, low_open=True),
    "latent_dim": positive_int(4096),
    "mode_seeking_weight": finite_in(0.0, 1000.0),
    "generator_ema": finite_in(0.0, 1.0, high_open=True),
    "discriminator_steps": positive_int(1000),
    # Above 100 an (epsilon, delta) pair promises nothing; a budget is agreed with the data owner.
    "target_epsilon": finite_in(0.0, 100.0, low_open=True),
    "target_delta": finite_in(0.0, 1.0, low_open=True, high_open=True),
    "noise_multiplier": finite_in(0.0, 1e4),
    "max_grad_norm": finite_in(0.0, 1e6, low_open=True),
    "label_prior_noise": finite_in(0.0, 1e6, low_open=True),
    "dp_enabled": Rule(bool),
    "privacy_unit": one_of("auto", "record", "patient"),
    "patients_per_step": positive_int(100_000),
    "records_per_patient": positive_int(10_000),
    "grad_sample_mode": one_of("fused", "hooks", "ghost"),
    "seed": non_negative_int(2**31 - 1),
    "run_dir": Rule(str, lambda v: bool(v.strip()), "a non-empty path"),
    "data_root": Rule(str, lambda v: bool(v.strip()), "a non-empty path"),
    "site_records": _TEXT,
    "holdout_records": _TEXT,
    "public_records": _TEXT,
    "partition": one_of("records", "dirichlet"),
    "partition_alpha": finite_in(0.0, 1e6, low_open=True),
    "partition_min_patients": positive_int(1_000_000),
    "fraction_train": finite_in(0.0, 1.0, low_open=True),
    "min_nodes": positive_int(100_000),
    "fraction_evaluate": finite_in(0.0, 1.0),
    "audit_every": non_negative_int(10_000),
    "audit_attacks": _TEXT,
    "canaries": non_negative_int(100_000),
    "image_size": Rule(int, lambda v: v in (32, 64, 128), "32, 64 or 128"),
    "leads": _TEXT,
    "resume_from": _TEXT,
    "pretrained": _TEXT,
    "device": DEVICE_RULE,
}
