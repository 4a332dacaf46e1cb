"""``medgan audit``: membership-inference audit of a saved run, without retraining it.

Loads the run's global GAN, audits it for every simulated site (members: the site's
training records; non-members and reference: the held-out patients, split by patient)
and, when the run had canaries, computes the one-run epsilon lower bound on them beside
site 0's accountant epsilon. Writes ``RUN_DIR/audit/audit.json`` and one ROC figure per
scope; see :mod:`medgan_core.audit` for who is a member and why.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medgan_core.audit import (
    audit_federation,
    audit_pools,
    canary_records,
    canary_unit,
    default_reference_steps,
    parse_attacks,
    simulation_canaries,
    train_reference_gan,
)
from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.generate import load_run_gan
from medgan_core.io_utils import atomic_write_bytes
from medgan_core.models import GanPair, build_gan, initial_gan
from medgan_core.models.state import gan_state, load_gan_state
from medgan_core.run_dir import RunDirectory
from medgan_core.site import SiteConfig, training_records
from privacy.audit.attacks import attacks_need
from privacy.audit.canaries import CanarySet
from privacy.audit.plotting import plot_roc

__all__ = ["CANARY_FILE", "audit_run", "format_table", "write_canary_manifest"]

logger = logging.getLogger(__name__)

CANARY_FILE = "audit/canaries.npz"
_REFERENCE_FILE = "audit/reference_gan.pt"


def write_canary_manifest(run: RunConfig) -> Path | None:
    """Simulation driver: keep the run's canaries and their inclusion bits in the run dir.

    The bits stay with the auditor (the run directory); a site never sends them anywhere.
    Returns the path written, or ``None`` when the run has no canaries.
    """
    canaries = simulation_canaries(run)
    if canaries is None:
        return None
    path = canaries.save(Path(run.run_dir) / CANARY_FILE)
    logger.info("audit: %d canaries of %d record(s) (%d included in site 0's training data) written to %s",
                len(canaries), canary_records(run), int(canaries.included.sum()), path)
    return path


def _check_manifest(run: RunConfig) -> None:
    path = Path(run.run_dir) / CANARY_FILE
    expected = simulation_canaries(run)
    if expected is None or not path.exists():
        return
    stored = CanarySet.load(path)
    # Compared flat: manifests written before records kept their channel axis hold (m, L).
    same_records = stored.records.size == expected.records.size and np.allclose(
        stored.records.reshape(len(stored.records), -1), expected.records.reshape(len(expected.records), -1))
    same_groups = np.array_equal(stored.record_groups, expected.record_groups)
    if not (np.array_equal(stored.included, expected.included) and same_records and same_groups):
        raise ConfigError(f"{path} does not match the canaries of this run's config (seed, canaries, "
                          "holdout-records, privacy-unit, records-per-patient); was the config or the "
                          "bundled data changed after the run?")


def _member_patients(run: RunConfig) -> dict[str, list[str]]:
    """Each simulated site's patients (its members' patients), as the site's data names them."""
    members = {}
    for index in range(len(run.site_record_groups())):
        data = training_records(replace(SiteConfig.for_simulation(run, index), canaries=False), run)
        members[f"site-{index}"] = sorted(set(data.patient_ids))
    return members


def _auc(audit: Any) -> float | None:
    return audit.result.auc if audit.result is not None else None


def _reference_gan(run: RunConfig, steps: int, seed: int) -> GanPair:
    """The reference GAN, cached in the run dir so repeated audits compare like with like."""
    path = Path(run.run_dir) / _REFERENCE_FILE
    pools = audit_pools(run)
    key = {"steps": steps, "seed": seed, "num_reference": len(pools.reference)}
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            gan = build_gan(run)
            load_gan_state(gan, saved["state"])
            return gan
    gan = train_reference_gan(run=run, records=pools.reference, labels=pools.reference_labels, steps=steps, seed=seed)
    buffer = io.BytesIO()
    torch.save({"state": dict(gan_state(gan)), "key": key}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return gan


def audit_run(
    run_dir: str | Path,
    *,
    attacks: Sequence[str] | None = None,
    n_synthetic: int = 2000,
    reference_steps: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Audit a saved run; write ``audit/audit.json`` and ``audit/roc_<scope>.png``.

    Args:
        run_dir: the run directory (config, checkpoint, ledgers).
        attacks: attack names; default the run's ``audit-attacks``.
        n_synthetic: samples drawn from the run's generator.
        reference_steps: steps of the reference GAN (cached under ``audit/``); default
            :func:`medgan_core.audit.default_reference_steps`.
        seed: seed of sampling, subsampling and bootstrap.

    Returns:
        The report written to ``audit.json``; ``report["violation"]`` is True when any
        empirical lower bound exceeds the accountant's epsilon.

    Raises:
        ConfigError: unknown attacks, too few held-out patients, or a canary manifest that
            does not match the run's configuration.
        FileNotFoundError: the run has no checkpoint.
    """
    directory = RunDirectory(run_dir)
    gan, run = load_run_gan(run_dir)
    run = replace(run, run_dir=str(directory.root.resolve()))  # ledgers relative to where the run is now
    names = parse_attacks(list(attacks) if attacks else run.audit_attacks)
    _check_manifest(run)
    steps = reference_steps or default_reference_steps(run)
    reference = _reference_gan(run, steps, seed) if attacks_need(names, "reference_synthetic") else None
    scopes = audit_federation(run=run, gan=gan, reference_gan=reference, attacks=names,
                              n_synthetic=n_synthetic, seed=seed)
    # The same audit of the federation's untrained initial model: how far from 0.5 an
    # attack is for reasons other than training (e.g. members and non-members being
    # different patients). Leakage shows as a change from this baseline.
    baseline = audit_federation(run=run, gan=initial_gan(run), reference_gan=reference, attacks=names,
                                n_synthetic=n_synthetic, seed=seed)
    pools = audit_pools(run)
    # Simulated sites train in the run's unit; the canaries follow it (see medgan_core.audit),
    # so every scope's accountant epsilon and lower bound are per this unit.
    unit = canary_unit(run)
    report: dict[str, Any] = {
        "run_dir": str(directory.root),
        "dp_enabled": run.dp_enabled,
        "unit": unit,
        "attacks": names,
        "split": {
            "members": _member_patients(run),
            "non_member_patients": list(pools.non_member_patients),
            "reference_patients": list(pools.reference_patients),
            "canaries": run.canaries,
            "canary_records": canary_records(run) if run.canaries else None,
            "reference_gan_steps": steps if reference is not None else None,
            "n_synthetic": n_synthetic,
        },
        "scopes": {},
        "figures": [],
    }
    for scope, audits in scopes.items():
        first = next(iter(audits.values()))
        report["scopes"][scope] = {
            "unit": unit,
            "accountant_epsilon": first.accountant_epsilon,
            "attacks": {name: {**audit.to_dict(), "untrained_auc": _auc(baseline[scope][name])}
                        for name, audit in audits.items()},
        }
        curves = {name: (a.fpr, a.tpr) for name, a in audits.items() if a.fpr is not None}
        if curves:
            figure = plot_roc(curves, directory.root / "audit" / f"roc_{scope}.png",
                              title=f"membership inference, {scope} ({'DP' if run.dp_enabled else 'no DP'})")
            report["figures"].append(str(figure.relative_to(directory.root)))
    report["violation"] = any(a["violation"] for s in report["scopes"].values() for a in s["attacks"].values())
    directory.write_json("audit/audit.json", report)
    if report["violation"]:
        logger.error("VIOLATION: an empirical epsilon lower bound exceeds the accountant's epsilon "
                     "(see %s); this indicates a bug in accounting or the DP implementation",
                     directory.root / "audit" / "audit.json")
    return report


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf (no DP)"
    return f"{value:.{digits}f}"


def _per(unit: str | None) -> str:
    return f" (per {unit})" if unit else ""


def format_table(report: dict[str, Any]) -> str:
    """The audit as a Markdown table: one row per scope (site) and attack.

    The epsilon columns name their unit (``per patient``, ``per beat``): in the header when
    every scope has the same one, else in each row's cells. Reports written before scopes
    recorded a unit get no unit.
    """
    units = {entry.get("unit") for entry in report["scopes"].values()}
    shared = units.pop() if len(units) == 1 else None
    header = ("| scope | attack | AUC [95% CI] | AUC untrained | TPR@1%FPR | TPR@0.1%FPR "
              f"| members / non-members | epsilon lower bound{_per(shared)} | accountant epsilon{_per(shared)} "
              "| verdict |")
    lines = [header, "|" + "---|" * 10]
    for scope, entry in report["scopes"].items():
        cell_unit = "" if shared is not None or not entry.get("unit") else f" per {entry['unit']}"
        for name, audit in entry["attacks"].items():
            r = audit["result"]
            if r is None:
                lines.append(f"| {scope} | {name} | failed: {audit['error']} | | | | | | | |")
                continue
            bound = audit["lower_bound"]
            lines.append(
                f"| {scope} | {name} | {_num(r['auc'])} [{_num(r['auc_ci_low'])}, {_num(r['auc_ci_high'])}] "
                f"| {_num(audit.get('untrained_auc'))} | {_num(r['tpr_at_1pct_fpr'])} | {_num(r['tpr_at_01pct_fpr'])} "
                f"| {r['num_members']} / {r['num_non_members']} "
                f"| {_num(bound['epsilon_lb']) + cell_unit if bound else 'n/a (not randomized)'} "
                f"| {_num(entry['accountant_epsilon'])}{cell_unit} | {'**VIOLATION**' if audit['violation'] else audit['verdict'] or '-'} |"
            )
    return "\n".join(lines)
