"""ServerApp-side membership audits.

* :class:`CentralAudit`, the ServerApp ``evaluate_fn`` for ``audit-every`` = k > 0: every
  k rounds it audits the current global model on every site's records and the canaries
  (:func:`medgan_core.audit.audit_federation`). It needs every site's data, so it exists
  only in simulation (researcher mode); a coordinator without the records gets ``None``
  from :func:`central_audit_fn` and a warning.
* :func:`query_site_audits`, the federated audit: a ``query.audit`` message to every site,
  which audits the global model on its own data and replies with scalars only.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from medgan_core.audit import (
    audit_federation,
    audit_pools,
    default_reference_steps,
    parse_attacks,
    train_reference_gan,
)
from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.models import GanPair, build_gan
from medgan_core.models.state import load_gan_state
from medgan_core.modalities import get_modality
from privacy.audit.attacks import attacks_need
from privacy.audit.runner import audit_metrics, has_violation

__all__ = ["AUDIT_QUERY", "CentralAudit", "central_audit_fn", "query_site_audits"]

logger = logging.getLogger(__name__)

AUDIT_QUERY = "query.audit"


class CentralAudit:
    """``evaluate_fn(server_round, arrays)``: the researcher-mode audit every ``every`` rounds.

    Returns a MetricRecord of scalars, keys ``<scope>-<attack>-auc`` etc. (see
    :func:`privacy.audit.runner.audit_metrics`) for scopes ``site-K`` and
    ``site-0-canaries``, plus ``violation`` (0/1); ``None`` on rounds it skips.

    Args:
        run: the run configuration (``audit-every``, ``audit-attacks``, ``canaries``).
        reference_steps: steps of the reference GAN (trained once, at the first audit);
            default :func:`medgan_core.audit.default_reference_steps`.
        n_synthetic: generator samples per audit.
    """

    def __init__(self, *, run: RunConfig, reference_steps: int | None = None, n_synthetic: int = 2000) -> None:
        if run.audit_every < 1:
            raise ConfigError(f"audit-every={run.audit_every}: the central audit needs k >= 1")
        self.run = run
        self.attacks = parse_attacks(run.audit_attacks)
        self.reference_steps = reference_steps or default_reference_steps(run)
        self.n_synthetic = n_synthetic
        self._reference_gan: GanPair | None = None  # trained lazily, then reused every audit

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round < 1 or server_round % self.run.audit_every:
            return None
        gan = build_gan(self.run)
        load_gan_state(gan, arrays.to_torch_state_dict())
        try:
            scopes = audit_federation(run=self.run, gan=gan, reference_gan=self._reference(),
                                      attacks=self.attacks, n_synthetic=self.n_synthetic)
        except (ConfigError, ValueError, OSError) as err:
            # An audit failure must not end the federation; the round's line says why.
            logger.error("round %d: central membership audit failed: %s", server_round, err)
            return MetricRecord({"audit-failed": 1.0})
        metrics: dict[str, float] = {}
        for scope, audits in scopes.items():
            metrics.update(audit_metrics(audits, prefix=f"{scope}-"))
        violation = any(has_violation(audits) for audits in scopes.values())
        metrics["violation"] = float(violation)
        if violation:
            logger.error("round %d: membership audit VIOLATION: an empirical epsilon lower bound "
                         "exceeds the accountant's epsilon; see metrics.jsonl", server_round)
        logger.info("round %d: central audit %s", server_round,
                    {k: round(v, 3) for k, v in metrics.items() if k.endswith(("-auc", "-epsilon-lb"))})
        # JSON has no NaN: unreachable TPRs (too few non-members) are left out of the record.
        return MetricRecord({k: v for k, v in metrics.items() if not math.isnan(v)})

    def _reference(self) -> GanPair | None:
        if self._reference_gan is None and attacks_need(self.attacks, "reference_synthetic"):
            pools = audit_pools(self.run)
            self._reference_gan = train_reference_gan(run=self.run, records=pools.reference,
                                                      labels=pools.reference_labels, steps=self.reference_steps)
        return self._reference_gan


def central_audit_fn(run: RunConfig) -> CentralAudit | None:
    """The central audit for ``run``, or ``None`` when off (``audit-every`` = 0) or impossible
    here (this process cannot read every site's records: a deployment)."""
    if run.audit_every < 1:
        return None
    missing = get_modality(run.modality).simulation_data_missing(run)
    if missing:
        logger.warning("audit-every=%d: the central audit needs every site's records (simulation, "
                       "researcher mode); %s not readable here, skipped. Sites answer %s instead.",
                       run.audit_every, missing[:3], AUDIT_QUERY)
        return None
    return CentralAudit(run=run)


def query_site_audits(grid: Grid, arrays: ArrayRecord, *, attacks: Sequence[str],
                      timeout: float = 3600.0) -> dict[str, dict[str, Any]]:
    """Ask every site to audit ``arrays`` on its own data (``query.audit``).

    Args:
        grid: the ServerApp's grid.
        arrays: the global GAN weights.
        attacks: attack names each site runs.
        timeout: seconds to wait for the replies.

    Returns:
        Node id -> the site's scalar metrics, or ``{"error": reason}`` for a refusal.
    """
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"attacks": " ".join(attacks)})})
    messages = [Message(content=content, message_type=AUDIT_QUERY, dst_node_id=node)
                for node in grid.get_node_ids()]
    replies = grid.send_and_receive(messages, timeout=timeout)
    results: dict[str, dict[str, Any]] = {}
    for reply in replies:
        node = str(reply.metadata.src_node_id)
        if reply.has_error():
            logger.error("site %s refused the audit query: %s", node, reply.error.reason)
            results[node] = {"error": reply.error.reason}
        else:
            results[node] = dict(reply.content["metrics"])
    return results
