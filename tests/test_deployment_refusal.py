"""A deployed site (``--node-config site-config=...``) enforces its own TOML: a request
past its budget is refused in its log and in the reply, and the node keeps serving."""

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from client.app import app
from medgan_core.config import RunConfig
from medgan_core.models.state import gan_state
from medgan_core.models import build_gan

REPO = Path(__file__).resolve().parents[1]


def _site(tmp_path: Path, *, epsilon: float, allow_non_private: bool = False) -> Path:
    toml = tmp_path / "site.toml"
    toml.write_text(f"""[site]
id = "hospital-x"
[data]
modality = "ecg"
dir = "{REPO / 'data' / 'ecg' / 'mitdb'}"
records = ["105"]
[privacy]
target-epsilon = {epsilon}
target-delta = 1e-5
ledger = "ledger/privacy_ledger.json"
[limits]
max-local-steps = 1000
allow-non-private = {str(allow_non_private).lower()}
""")
    return toml


def _ask(run: RunConfig, toml: Path) -> Message:
    content = RecordDict({"arrays": ArrayRecord(gan_state(build_gan(run))),
                          "config": ConfigRecord({"server-round": 1})})
    msg = Message(content=content, dst_node_id=11, message_type=MessageType.TRAIN)
    context = Context(run_id=7, node_id=11, node_config={"site-config": str(toml)}, state=RecordDict(),
                      run_config=run.to_mapping())
    return app(msg, context)


@pytest.fixture
def site_log(caplog):
    """The ClientApp's log as a site daemon sees it (the "client" logger does not propagate)."""
    logger = logging.getLogger("client")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_request_past_the_site_budget_is_refused_in_log_and_reply(flower_identity, tmp_path, site_log):
    toml = _site(tmp_path, epsilon=2.0)
    # The coordinator's run config claims a budget of 10; the site agreed to 2.
    greedy = RunConfig(target_epsilon=10.0, noise_multiplier=0.3, local_steps=400, batch_size=64)
    reply = _ask(greedy, toml)

    assert reply.has_error()
    # The coordinator gets a fixed code and sentence; the site's log has the details.
    assert reply.error.reason == "medgan:budget-exhausted: the site's privacy budget does not allow this request"
    refusals = sorted({r.getMessage() for r in site_log.records if r.levelno == logging.ERROR and r.name == "client.app"})
    assert len(refusals) == 1 and "hospital-x refused: PrivacyBudgetExceeded" in refusals[0]
    assert "epsilon=2 " in refusals[0]  # the site's budget, not the run's
    assert "sent to the coordinator as medgan:budget-exhausted" in refusals[0]
    ledger = json.loads((tmp_path / "ledger" / "privacy_ledger.json").read_text())
    assert [e for e in ledger["entries"] if e.get("purpose", "dp-sgd") == "dp-sgd"] == []

    # The node keeps serving: a modest request is trained and accounted.
    modest = replace(greedy, noise_multiplier=1.0, local_steps=3, batch_size=32)
    ok = _ask(modest, toml)
    assert not ok.has_error()
    assert 0 < ok.content["metrics"]["epsilon"] <= 2.0


def test_non_private_request_is_refused_unless_the_site_allows_it(flower_identity, tmp_path, site_log):
    reply = _ask(RunConfig(dp_enabled=False, local_steps=2, batch_size=32), _site(tmp_path, epsilon=5.0))
    assert reply.has_error()
    assert reply.error.reason == "medgan:non-private-refused: the site does not train without differential privacy"
    assert any("hospital-x refused: NonPrivateRefused: hospital-x does not allow non-private" in r.getMessage()
               for r in site_log.records)
