"""Run configuration: parsed once, at the boundary, into a frozen dataclass.

Flower hands apps a flat mapping with kebab-case keys (``[tool.flwr.app.config]`` in
``pyproject.toml``, overridden with ``--run-config``). Everything past the boundary
takes typed, keyword-only values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from medgan_core.errors import ConfigError

__all__ = ["RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    modality: str = "ecg"
    model: str = "dcgan1d"
    num_server_rounds: int = 4
    local_steps: int = 200
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
    target_epsilon: float = 10.0
    target_delta: float = 1e-5
    noise_multiplier: float = 0.0
    max_grad_norm: float = 1.0
    label_prior_noise: float = 20.0
    dp_enabled: bool = True
    grad_sample_mode: str = "hooks"
    seed: int = 42
    run_dir: str = "runs/ecg"
    data_root: str = "data/ecg"
    # Simulation only: the records of each site ("|" between sites, spaces between
    # records) and the held-out patients no site trains on. One record is one patient.
    site_records: str = "mitdb/106 mitdb/100|mitdb/105 mitdb/123|mitdb/108 mitdb/121 svdb/800"
    holdout_records: str = "mitdb/114 mitdb/116"
    fraction_train: float = 1.0
    min_nodes: int = 2
    fraction_evaluate: float = 1.0
    audit_every: int = 0
    # Membership audit (medgan_core.audit): attacks run by the audits, and the number of
    # one-run audit canaries offered to simulated site 0 (each included with prob. 1/2).
    audit_attacks: str = "logan gan_leaks gan_leaks_calibrated domias"
    canaries: int = 0
    image_size: int = 64
    # A run directory whose latest checkpoint this run continues from ("" = start fresh).
    resume_from: str = ""
    # Federated evaluation at each site (medgan_core.evaluation.site_scalars): samples per
    # site and round, epochs of the site's own encoder (trained once, kept at the site) and
    # of the TSTR classifier; a site holds out whole patients only from this many patients.
    eval_samples: int = 512
    eval_encoder_epochs: int = 2
    eval_classifier_epochs: int = 3
    site_eval_min_patients: int = 4

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> "RunConfig":
        """Parse a Flower run config (kebab-case keys); unknown keys are an error."""
        cls.reject_unknown_keys(raw)
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            name = key.replace("-", "_")
            default = known[name].default
            try:
                if isinstance(default, bool):
                    values[name] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
                else:
                    values[name] = type(default)(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"run-config {key}={value!r} is not a valid {type(default).__name__}") from exc
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
        if self.num_server_rounds < 1:
            raise ConfigError(f"num-server-rounds={self.num_server_rounds} must be >= 1")
        if self.dp_enabled and not (self.target_epsilon > 0 and 0 < self.target_delta < 1):
            raise ConfigError(
                f"target-epsilon={self.target_epsilon} must be > 0 and target-delta={self.target_delta} in (0, 1)"
            )
        if self.mode_seeking_weight < 0:
            raise ConfigError(f"mode-seeking-weight={self.mode_seeking_weight} must be >= 0")
        if not 0.0 <= self.generator_ema < 1.0:
            raise ConfigError(f"generator-ema={self.generator_ema} must be in [0, 1); 0 turns it off")
        if self.max_grad_norm <= 0:
            raise ConfigError(f"max-grad-norm={self.max_grad_norm} must be positive")
        if self.audit_every < 0 or self.canaries < 0:
            raise ConfigError(f"audit-every={self.audit_every} and canaries={self.canaries} must be >= 0")

    def site_record_groups(self) -> list[list[str]]:
        return [group.split() for group in self.site_records.split("|") if group.strip()]

    def record_paths(self, records: list[str]) -> list[Path]:
        return [Path(self.data_root) / r for r in records]
