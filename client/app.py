"""Flower ClientApp for a hospital site.

Each handler unpacks the message, calls :mod:`medgan_core.site`, and packs the reply.
A reply carries exactly one ArrayRecord (the GAN weights) and one MetricRecord of
scalars with the same keys at every site; nothing else leaves the site.
"""

from __future__ import annotations

import logging
import warnings

import torch
from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from medgan_core.audit import parse_attacks, site_audit
from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.site import SiteConfig, evaluate_round, train_round
from privacy.audit.runner import audit_metrics
from privacy.ledger import PrivacyBudgetExceeded

logger = logging.getLogger(__name__)

# Known-harmless warnings that would otherwise repeat every round in every site's log:
# Opacus's secure-RNG notice (documented in the README), a PyTorch note on backward hooks
# over inputs without gradients (the discriminator's inputs never need them), and pandas
# deprecations inside wfdb.
for _message in ("Secure RNG turned off", "Full backward hook is firing", "The inplace keyword"):
    warnings.filterwarnings("ignore", message=_message)

app = ClientApp()


def _show_progress() -> None:
    """Sites run in Ray worker processes whose root logger is unconfigured; give the
    project's loggers a handler so round/site/step/epsilon progress reaches the console."""
    for name in ("medgan_core", "privacy", "client"):
        named = logging.getLogger(name)
        if not named.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
            named.addHandler(handler)
            named.setLevel(logging.INFO)
            named.propagate = False


def site_for(context: Context, run: RunConfig) -> SiteConfig:
    """A deployed SuperNode names its site file in ``--node-config site-config=...``;
    a simulated node is a partition of the bundled data."""
    if "site-config" in context.node_config:
        return SiteConfig.from_toml(str(context.node_config["site-config"]))
    return SiteConfig.for_simulation(run, int(context.node_config["partition-id"]))


def _weights(msg: Message) -> dict:
    return msg.content["arrays"].to_torch_state_dict()


def _refuse(msg: Message, site_id: str, error: Exception) -> Message:
    reason = f"{site_id} refused: {type(error).__name__}: {error}"
    logger.error(reason)
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)  # one core per simulated site; sites run side by side
    _show_progress()
    run = RunConfig.from_mapping(context.run_config)
    site = site_for(context, run)
    try:
        state, metrics = train_round(
            site=site, run=run, run_id=str(context.run_id),
            server_round=int(msg.content["config"]["server-round"]), weights=_weights(msg),
        )
    except (PrivacyBudgetExceeded, ConfigError) as error:
        return _refuse(msg, site.site_id, error)
    content = RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    run = RunConfig.from_mapping(context.run_config)
    site = site_for(context, run)
    try:
        metrics = evaluate_round(site=site, run=run, weights=_weights(msg))
    except ConfigError as error:
        return _refuse(msg, site.site_id, error)
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


@app.query("audit")
def audit(msg: Message, context: Context) -> Message:
    """Membership audit of the global model on this site's own records.

    The site attacks the global GAN with its training records as members and its own
    held-out patients as non-members (``medgan_core.audit.site_audit``). Only scalars
    (AUC with CI, TPR at low FPR, counts) leave the site: no record, embedding or
    per-record score. They are aggregate statistics outside the DP guarantee, like the
    evaluation losses.
    """
    torch.set_num_threads(1)
    run = RunConfig.from_mapping(context.run_config)
    site = site_for(context, run)
    try:
        config = msg.content["config"] if "config" in msg.content else {}
        attacks = parse_attacks(str(config.get("attacks", run.audit_attacks)))
        audits = site_audit(site=site, run=run, weights=_weights(msg), attacks=attacks)
    except (ConfigError, ValueError) as error:
        return _refuse(msg, site.site_id, error)
    return Message(content=RecordDict({"metrics": MetricRecord(audit_metrics(audits))}), reply_to=msg)
