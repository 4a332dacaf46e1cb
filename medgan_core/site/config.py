"""A hospital site's own settings: :class:`SiteConfig` and the schema of its TOML file.

A deployed site reads them from its file (:meth:`SiteConfig.from_toml`); a simulated one
derives them from the run config (:meth:`SiteConfig.for_simulation`). Nothing here reads
data or spends budget.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from medgan_core.config import RunConfig
from medgan_core.device import DEVICE_RULE
from medgan_core.errors import ConfigError
from medgan_core.modalities import available_modalities, get_modality
from medgan_core.run_dir import RunDirectory, simulated_sites_root
from medgan_core.schema import Rule, coerce, finite_in, positive_int

__all__ = ["INSECURE_SEED_VARIABLE", "SiteConfig"]


#: Site-local switch for reproducible DP randomness in tests. It is read from the site
#: process's own environment (never from the run config the coordinator sends); a
#: simulated site honours it, a deployed site refuses to start with it set.
INSECURE_SEED_VARIABLE = "MEDGAN_INSECURE_DETERMINISTIC_SEED"


@dataclass(frozen=True)
class SiteConfig:
    """A site's own settings; the coordinator's run config cannot override them.

    Attributes:
        site_id: Name used in logs and the ledger.
        modality: "ecg" or "xray".
        data_paths: ECG record paths (without extension) or one image directory.
        ledger_path: Where the privacy ledger lives; it must survive restarts.
        target_epsilon, target_delta: The site's total budget over every run.
        max_local_steps: Upper bound on local steps per round, whatever is requested.
        allow_non_private: Whether a run may train without DP (simulated controls only).
        patient_share: Simulated X-ray sites only: which patients of the image directory
            are this site's (see :class:`PatientShare`); ``None`` means all of them.
        audit_paths: Records (ECG) or an image directory (X-ray) of patients the site never
            trains on, used only by the membership audit (``query.audit``): non-members and
            reference, split by patient (the modality's ``audit_holdout``).
        audit_share: Simulated X-ray sites only: which patients of ``audit_paths`` are the
            held-out ones (the hold-out group of the run's patient split).
        canaries: Simulation only: whether the run's audit canaries (run-config
            ``canaries``, see :mod:`medgan_core.audit`) are offered to this site's training
            data; each is included with probability 1/2. Never set for a deployed site.
        release_audit: Whether ``query.audit`` may send the audit's AUCs to the coordinator
            (with Gaussian noise, charged to the ledger); otherwise the audit's results stay
            in the site's directory. TOML ``[release] audit``; off by default.
        audit_noise_multiplier: Noise of that release, per AUC (sensitivity 1, see
            :func:`medgan_core.audit.release_audit`).
        privacy_unit: ``[privacy] unit`` ("record" or "patient"): the site's own choice of DP
            unit, which wins over the run's ``privacy-unit``; ``None`` follows the run.
        device: ``[site] device``: where this site trains ("auto", "cpu", "cuda",
            "cuda:N"); it wins over the run's ``device`` (it is the site's hardware).
            ``None`` follows the run.
        insecure_seed: Tests only: a fixed seed for the DP noise and sampling, which makes
            rounds replayable by anyone who knows it. Set only from the site's environment
            (:data:`INSECURE_SEED_VARIABLE`) and only for simulated sites.
    """

    site_id: str
    modality: str
    data_paths: tuple[str, ...]
    ledger_path: Path
    target_epsilon: float
    target_delta: float
    max_local_steps: int = 1000
    allow_non_private: bool = False
    patient_share: object = None
    audit_paths: tuple[str, ...] = ()
    audit_share: object = None
    canaries: bool = False
    release_audit: bool = False
    audit_noise_multiplier: float = 10.0
    insecure_seed: int | None = None
    privacy_unit: str | None = None
    device: str | None = None

    def unit(self, run: RunConfig) -> str:
        """The DP unit this site trains with: its own ``[privacy] unit`` wins over the run's."""
        return self.privacy_unit or run.unit

    def device_name(self, run: RunConfig) -> str:
        """The device setting this site trains with: its own ``[site] device`` wins over the run's."""
        return self.device or run.device

    @property
    def state_dir(self) -> Path:
        """The site's private directory: its ledger and everything kept beside it."""
        return self.ledger_path.parent

    @classmethod
    def from_toml(cls, path: str | Path) -> "SiteConfig":
        """Read and validate a site config file (see README, "Hospital IT").

        Every key is checked against its rule before anything else happens.

        Raises:
            ConfigError: one line naming the file, the key and the fix.
        """
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read site config ({exc}); fix the file or the path") from exc
        if os.environ.get(INSECURE_SEED_VARIABLE):
            raise ConfigError(
                f"{path}: {INSECURE_SEED_VARIABLE} is set in this site's environment; a deployed site refuses "
                "replayable DP randomness (it voids the guarantee); unset it"
            )
        base = path.parent
        for name in raw:
            if name not in _SITE_KEYS:
                raise ConfigError(f"{path}: unknown section [{name}]; known sections: " + ", ".join(_SITE_KEYS))
        sections = {name: _section(raw, name, path, required=name in ("site", "data", "privacy"))
                    for name in _SITE_KEYS}
        for name, table in sections.items():
            for key in table:
                if key not in _SITE_KEYS[name]:
                    raise ConfigError(f"{path}: unknown key [{name}] {key}; known keys in [{name}]: "
                                      + ", ".join(_SITE_KEYS[name]))

        def value(section: str, key: str, rule: Rule, default: object = _REQUIRED) -> object:
            table = sections[section]
            if key not in table:
                if default is _REQUIRED:
                    raise ConfigError(f"{path}: [{section}] {key} is missing; see deploy/examples/site.toml")
                return default
            return coerce(table[key], rule, where=str(path), key=f"[{section}] {key}")

        modality = value("data", "modality", Rule(str, lambda v: v in available_modalities(),
                                                  "one of " + ", ".join(map(repr, available_modalities()))))
        data_dir = base / str(value("data", "dir", _PATH))
        paths = get_modality(str(modality)).site_paths(data_dir, value("data", "records", Rule(list), None))
        audit_records = value("audit", "records", Rule(list), [])
        return cls(
            site_id=str(value("site", "id", _NAME)), modality=str(modality), data_paths=paths,
            device=value("site", "device", DEVICE_RULE, None),  # type: ignore[arg-type]
            ledger_path=base / str(value("privacy", "ledger", _PATH)),
            target_epsilon=float(value("privacy", "target-epsilon", _EPSILON)),  # type: ignore[arg-type]
            target_delta=float(value("privacy", "target-delta", _DELTA)),  # type: ignore[arg-type]
            max_local_steps=int(value("limits", "max-local-steps", positive_int(1_000_000), 1000)),  # type: ignore[arg-type]
            allow_non_private=bool(value("limits", "allow-non-private", Rule(bool), False)),
            audit_paths=tuple(str(data_dir / r) for r in audit_records),  # type: ignore[union-attr]
            release_audit=bool(value("release", "audit", Rule(bool), False)),
            audit_noise_multiplier=float(value("release", "audit-noise-multiplier",  # type: ignore[arg-type]
                                               finite_in(1.0, 1e4), 10.0)),
            privacy_unit=value("privacy", "unit", Rule(str, lambda v: v in ("record", "patient"),  # type: ignore[arg-type]
                                                       "'record' or 'patient'"), None),
        )

    @classmethod
    def for_simulation(cls, run: RunConfig, partition_id: int) -> "SiteConfig":
        """The simulated site ``partition_id``: its patients and a ledger in the run dir.

        ECG: ``site-records`` lists each site's records. X-ray: ``site-records`` and
        ``holdout-records`` are relative shares of the patients of ``data-root`` (see
        :func:`xray_share_weights`). With ``partition='dirichlet'`` the sites' patients are
        dealt again by class (:mod:`medgan_core.data.partition`), the held-out ones unchanged.
        """
        groups = run.site_record_groups()
        if not 0 <= partition_id < len(groups):
            raise ConfigError(
                f"partition {partition_id} has no records: site-records defines {len(groups)} sites; "
                "use as many simulated nodes as site groups"
            )
        simulated = get_modality(run.modality).simulated_site(run, partition_id)
        seed = os.environ.get(INSECURE_SEED_VARIABLE, "").strip()
        return cls(
            site_id=f"site-{partition_id}", modality=run.modality, patient_share=simulated.patient_share,
            data_paths=simulated.data_paths, audit_share=simulated.audit_share,
            ledger_path=RunDirectory(simulated_sites_root(run.run_dir, run.resume_from)).site_ledger_path(
                f"site-{partition_id}"),
            target_epsilon=run.target_epsilon, target_delta=run.target_delta,
            allow_non_private=True,
            audit_paths=simulated.audit_paths,
            canaries=partition_id == 0 and run.canaries > 0,
            # The researcher's own simulated sites answer the final federated audit; with
            # noise and charged like any release.
            release_audit=run.audit_every > 0,
            insecure_seed=(int(coerce(seed, positive_int(2**62), where=INSECURE_SEED_VARIABLE, key="value"))
                           + partition_id) if seed else None,
        )


_REQUIRED = object()
# Every section and key a site file may hold; anything else is a typo to report, not ignore.
_SITE_KEYS: dict[str, tuple[str, ...]] = {
    "site": ("id", "device"),
    "data": ("modality", "dir", "records"),
    "privacy": ("target-epsilon", "target-delta", "ledger", "unit"),
    "limits": ("max-local-steps", "allow-non-private"),
    "audit": ("records",),
    "release": ("audit", "audit-noise-multiplier"),
    "app": ("policy", "allowed-fab-sha256"),  # read by the site daemon's app guard (client/)
}
_PATH = Rule(str, lambda v: bool(v.strip()), "a non-empty path (relative to the site file)")
_NAME = Rule(str, lambda v: bool(v.strip()) and len(v) <= 100, "a non-empty name")
_EPSILON = finite_in(0.0, 100.0, low_open=True)  # above 100 the guarantee means nothing
_DELTA = finite_in(0.0, 1e-2, low_open=True)  # delta is a failure probability: << 1 / records


def _section(raw: dict, name: str, path: Path, *, required: bool) -> dict:
    table = raw.get(name)
    if table is None:
        if required:
            raise ConfigError(f"{path}: section [{name}] is missing; see deploy/examples/site.toml")
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table (a [{name}] section), not {type(table).__name__}")
    return table
