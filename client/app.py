"""Flower ClientApp for a hospital site.

Each handler unpacks the message, calls :mod:`medgan_core.site`, and packs the reply.
A reply carries exactly one ArrayRecord (the GAN weights) and one MetricRecord of
scalars with the same keys at every site, each declared in :mod:`privacy.releases` and
checked before sending; nothing else leaves the site. A refusal is a fixed code and
sentence (:data:`REFUSALS`); its details stay in the site's log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
import warnings

import torch
from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from medgan_core.audit import parse_attacks, release_site_audit
from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.site import NonPrivateRefused, SiteConfig, evaluate_round, train_round
from privacy.ledger import LedgerBusy, LedgerError, PrivacyBudgetExceeded
from privacy.releases import EVALUATE_REPLY, TRAIN_REPLY, UndeclaredRelease, audit_reply_keys, check_reply

logger = logging.getLogger(__name__)

# Known-harmless warnings that would otherwise repeat every round in every site's log:
# Opacus's secure-RNG notice (its secure mode needs torchcsprng; our noise and sampling
# generators are seeded from `secrets` instead, see medgan_core.training.dp_gan), a PyTorch note on backward hooks
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


#: What the coordinator may learn about a refusal: a fixed code and a fixed sentence. The
#: exception's own text (paths, counts, epsilons) stays in the site's log.
REFUSALS: dict[str, str] = {
    "budget-exhausted": "the site's privacy budget does not allow this request",
    "non-private-refused": "the site does not train without differential privacy",
    "config-refused": "the site refuses this run configuration or its own configuration is invalid; "
                      "see the site's log",
    "release-not-declared": "the reply would hold an undeclared release",
    "ledger-busy": "the site's privacy ledger is in use by another request; retry later",
    "ledger-invalid": "the site's privacy ledger is missing or damaged; the site must restore it",
    "internal-error": "the site failed to process the request; see the site's log",
}


def refusal_code(error: BaseException) -> str:
    """The fixed code for ``error`` (anything unexpected is an internal error)."""
    if isinstance(error, PrivacyBudgetExceeded):
        return "budget-exhausted"
    if isinstance(error, LedgerBusy):
        return "ledger-busy"
    if isinstance(error, LedgerError):  # missing beside other site state, tampered, invalid
        return "ledger-invalid"
    if isinstance(error, NonPrivateRefused):
        return "non-private-refused"
    if isinstance(error, ConfigError):
        return "config-refused"
    if isinstance(error, UndeclaredRelease):
        return "release-not-declared"
    return "internal-error"


def _refuse(msg: Message, site_id: str, error: Exception) -> Message:
    code = refusal_code(error)
    logger.error("%s refused: %s: %s [sent to the coordinator as medgan:%s]", site_id, type(error).__name__,
                 error, code, exc_info=code == "internal-error")
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"medgan:{code}: {REFUSALS[code]}"),
                   reply_to=msg)


def _site_id(context: Context) -> str:
    # Only for the site's own log when its config cannot even be read.
    return str(context.node_config.get("partition-id", "site"))


def _answer(msg: Message, context: Context, handle: Callable[[SiteConfig, RunConfig], RecordDict]) -> Message:
    """Read the run and the site's config, let ``handle`` build the reply's content, and turn
    every failure into a fixed refusal code, never a traceback or the exception's text."""
    torch.set_num_threads(1)  # one core per simulated site; sites run side by side
    site_id = _site_id(context)
    try:
        run = RunConfig.from_mapping(context.run_config)
        site = site_for(context, run)
        site_id = site.site_id
        content = handle(site, run)
    except Exception as error:  # noqa: BLE001
        return _refuse(msg, site_id, error)
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    _show_progress()

    def handle(site: SiteConfig, run: RunConfig) -> RecordDict:
        state, metrics = train_round(
            site=site, run=run, run_id=str(context.run_id),
            server_round=int(msg.content["config"]["server-round"]), weights=_weights(msg),
        )
        check_reply(metrics, TRAIN_REPLY)
        return RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)})

    return _answer(msg, context, handle)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    def handle(site: SiteConfig, run: RunConfig) -> RecordDict:
        metrics = evaluate_round(site=site, run=run, weights=_weights(msg))
        check_reply(metrics, EVALUATE_REPLY)
        return RecordDict({"metrics": MetricRecord(metrics)})

    return _answer(msg, context, handle)


@app.query("audit")
def audit(msg: Message, context: Context) -> Message:
    """Membership audit of the global model on this site's own records.

    The site attacks the global GAN with its training records as members and its own
    held-out patients as non-members (``medgan_core.audit.site_audit``). The results stay
    in the site's directory; only where the site opted in (``[release] audit = true``) do
    noisy AUCs leave it, charged to its ledger (``medgan_core.audit.release_site_audit``).
    """
    def handle(site: SiteConfig, run: RunConfig) -> RecordDict:
        config = msg.content["config"] if "config" in msg.content else {}
        attacks = parse_attacks(str(config.get("attacks", run.audit_attacks)))
        metrics = release_site_audit(site=site, run=run, run_id=str(context.run_id), weights=_weights(msg),
                                     attacks=attacks)
        check_reply(metrics, audit_reply_keys(attacks), site_opt_in=site.release_audit)
        return RecordDict({"metrics": MetricRecord(metrics)})

    return _answer(msg, context, handle)
