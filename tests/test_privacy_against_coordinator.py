"""The guarantee against the party it protects the sites from: the coordinator.

The coordinator knows the run configuration, chooses the global weights, ships the app
and sees every reply. These tests play it:

* it replays a site's local round, with and without a target record, using everything
  it knows (and, to be generous, the site's released class counts too) and cannot tell
  which world happened: the released discriminator matches neither replay. With the
  site-local test switch that makes the randomness replayable, the same attack does
  identify the world, which shows the test has teeth;
* two identical rounds release different discriminators;
* every key of every real reply (train, evaluate, audit; ECG and X-ray) is a declared
  release, and an undeclared one is refused before it leaves.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from client.app import REFUSALS, app
from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.models.state import DISCRIMINATOR_PREFIX, gan_state, load_gan_state
from medgan_core.models import build_gan
from medgan_core.site import INSECURE_SEED_VARIABLE, SIZE_RELEASE_FILE, SiteConfig, SizeRelease, train_round
from medgan_core.site.data import site_training_data
from medgan_core.site.rounds import _local_config
from medgan_core.training.dp_gan import DPSettings, train_local_gan
from privacy.releases import EVALUATE_REPLY, TRAIN_REPLY, ReleaseCategory, audit_reply_keys

ROUND = 1


def _global_weights(run: RunConfig) -> dict[str, np.ndarray]:
    torch.manual_seed(run.seed)  # the coordinator builds (and so knows) the global model
    return {k: v.numpy() for k, v in gan_state(build_gan(run)).items()}


def _discriminator(state: dict) -> torch.Tensor:
    return torch.cat([torch.as_tensor(v).flatten() for k, v in state.items() if k.startswith(DISCRIMINATOR_PREFIX)])


def _replay(run: RunConfig, site: SiteConfig, weights, metrics: dict, *, drop_first: bool, seed: int | None):
    """The coordinator's replay of the site's round, in the world with or without record 0."""
    data = site_training_data(site, run)
    samples, labels = (data.samples[1:], data.labels[1:]) if drop_first else (data.samples, data.labels)
    release = SizeRelease.read(site.state_dir / SIZE_RELEASE_FILE)  # generous: not in any reply
    gan = build_gan(run, len(data.class_names))
    load_gan_state(gan, weights)
    config = _local_config(run, int(metrics["local-steps"]), seed, public_dataset_size=int(metrics["num-examples"]))
    dp = DPSettings(noise_multiplier=metrics["noise-multiplier"], max_grad_norm=run.max_grad_norm,
                    grad_sample_mode=run.grad_sample_mode)
    train_local_gan(gan=gan, beats=samples, labels=labels, config=config, dp=dp, fake_label_prior=release.prior)
    return _discriminator(gan_state(gan))


def _seeds_the_coordinator_can_derive(run: RunConfig) -> list[int]:
    # The seeds the site used to derive (run seed, round, a hash of the site id), and the
    # ones the switch would use: everything in the config, tried exhaustively.
    site_hash = sum(ord(c) * (i + 1) for i, c in enumerate("site-0")) % 997
    return [run.seed * 1000 + ROUND * 17 + site_hash, run.seed, run.seed * 1000 + ROUND, 0]


@pytest.fixture
def tiny_run(tmp_path) -> RunConfig:
    from simulations.federation import resolve_run_config

    return resolve_run_config({"run-dir": str(tmp_path / "run"), "local-steps": 2, "batch-size": 32,
                               "num-server-rounds": 1})


def test_the_coordinator_cannot_replay_a_round_to_test_membership(tiny_run, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.delenv(INSECURE_SEED_VARIABLE, raising=False)
    site = SiteConfig.for_simulation(tiny_run, 0)
    assert site.insecure_seed is None  # the default: secret randomness
    weights = _global_weights(tiny_run)
    state, metrics = train_round(site=site, run=tiny_run, run_id="r", server_round=ROUND, weights=weights)
    released = _discriminator(state)
    for seed in _seeds_the_coordinator_can_derive(tiny_run):
        with_target = _replay(tiny_run, site, weights, metrics, drop_first=False, seed=seed)
        without_target = _replay(tiny_run, site, weights, metrics, drop_first=True, seed=seed)
        assert not torch.equal(released, with_target)
        assert not torch.equal(released, without_target)


def test_with_the_insecure_test_switch_the_same_attack_identifies_the_world(tmp_path, monkeypatch):
    """The attack above is real: once the randomness is known, one replay matches exactly."""
    from simulations.federation import resolve_run_config

    torch.set_num_threads(1)
    monkeypatch.setenv(INSECURE_SEED_VARIABLE, "7")
    run = resolve_run_config({"run-dir": str(tmp_path / "run"), "local-steps": 2, "batch-size": 32,
                              "num-server-rounds": 1})
    site = SiteConfig.for_simulation(run, 0)
    assert site.insecure_seed == 7
    weights = _global_weights(run)
    state, metrics = train_round(site=site, run=run, run_id="r", server_round=ROUND, weights=weights)
    released = _discriminator(state)
    seed = site.insecure_seed * 1000 + ROUND
    assert torch.equal(released, _replay(run, site, weights, metrics, drop_first=False, seed=seed))
    assert not torch.equal(released, _replay(run, site, weights, metrics, drop_first=True, seed=seed))


def test_a_deployed_site_refuses_the_insecure_switch(tmp_path, monkeypatch):
    site_toml = tmp_path / "site.toml"
    site_toml.write_text('[site]\nid = "a"\n[data]\nmodality = "ecg"\ndir = "."\nrecords = ["100"]\n'
                         '[privacy]\ntarget-epsilon = 5.0\ntarget-delta = 1e-5\nledger = "l.json"\n')
    assert SiteConfig.from_toml(site_toml).insecure_seed is None
    monkeypatch.setenv(INSECURE_SEED_VARIABLE, "1")
    with pytest.raises(ConfigError, match=INSECURE_SEED_VARIABLE):
        SiteConfig.from_toml(site_toml)


def test_two_identical_rounds_release_different_discriminators(tmp_path, monkeypatch):
    from simulations.federation import resolve_run_config

    monkeypatch.delenv(INSECURE_SEED_VARIABLE, raising=False)
    released = []
    for attempt in range(2):
        run = resolve_run_config({"run-dir": str(tmp_path / f"run{attempt}"), "local-steps": 2, "batch-size": 32})
        state, _ = train_round(site=SiteConfig.for_simulation(run, 1), run=run, run_id="r", server_round=1,
                               weights=_global_weights(run))
        released.append(_discriminator(state))
    assert not torch.equal(released[0], released[1])


# ---- every reply key is a declared release ----------------------------------------------

def _message(run: RunConfig, message_type: str, config: dict | None = None) -> Message:
    content = RecordDict({"arrays": ArrayRecord(gan_state(build_gan(run))),
                          "config": ConfigRecord({"server-round": 1, **(config or {})})})
    return Message(content=content, dst_node_id=11, message_type=message_type)


def _context(run: RunConfig, partition: int = 0) -> Context:
    return Context(run_id=1, node_id=11, node_config={"partition-id": partition, "num-partitions": 3},
                   state=RecordDict(), run_config=run.to_mapping())


def _assert_declared(reply: Message, declared: dict, *, opt_in: bool = False) -> dict:
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    metrics = dict(reply.content["metrics"])
    for key in metrics:
        assert key in declared, f"undeclared release {key!r}"
        category = declared[key][0]
        assert isinstance(category, ReleaseCategory)
        assert opt_in or category is not ReleaseCategory.SITE_OPT_IN, key
    return metrics


@pytest.fixture
def xray_run(xray_data_dir, tmp_path) -> RunConfig:
    return RunConfig.from_mapping({"modality": "xray", "model": "dcgan2d", "site-records": "1|1|1",
                                   "holdout-records": "1", "data-root": str(xray_data_dir), "image-size": 32,
                                   "run-dir": str(tmp_path / "xray"), "local-steps": 1, "batch-size": 16})


@pytest.mark.parametrize("modality", ["ecg", "xray"])
def test_train_and_evaluate_replies_hold_only_declared_releases(flower_identity, tiny_run, xray_run, modality):
    run = tiny_run if modality == "ecg" else xray_run
    train = _assert_declared(app(_message(run, MessageType.TRAIN), _context(run)), TRAIN_REPLY)
    assert set(train) == set(TRAIN_REPLY)
    evaluate = _assert_declared(app(_message(run, MessageType.EVALUATE), _context(run)), EVALUATE_REPLY)
    assert evaluate == {"num-examples": 1.0, "epsilon": train["epsilon"]}


def test_audit_results_stay_at_the_site_unless_it_opted_in(flower_identity, tiny_run):
    attacks = ["logan", "gan_leaks"]
    query = f"{MessageType.QUERY}.audit"
    # Default (no audit in the run config): the site audits, keeps the results, says so.
    reply = app(_message(tiny_run, query, {"attacks": " ".join(attacks)}), _context(tiny_run))
    assert _assert_declared(reply, audit_reply_keys(attacks)) == {"audit-kept-at-site": 1.0}
    site = SiteConfig.for_simulation(tiny_run, 0)
    kept = list((site.state_dir / "audits").glob("audit-*.json"))
    assert len(kept) == 1 and "logan-auc" in json.loads(kept[0].read_text())["metrics"]
    # Opted in (simulated sites do when audit-every > 0): noisy AUCs, charged to the ledger.
    opted = replace(tiny_run, audit_every=1)
    reply = app(_message(opted, query, {"attacks": " ".join(attacks)}), _context(opted))
    metrics = _assert_declared(reply, audit_reply_keys(attacks), opt_in=True)
    assert set(metrics) == {"audit-kept-at-site", "logan-auc-noised", "gan_leaks-auc-noised"}
    entries = json.loads(site.ledger_path.read_text())["entries"]
    assert [(e["purpose"], e["steps"], e["sample_rate"]) for e in entries] == [("audit-release", 2, 1.0)]


def test_an_undeclared_reply_key_is_refused_before_it_leaves(flower_identity, tiny_run, monkeypatch):
    import client.app as client_app

    real = client_app.train_round

    def leaky(**kwargs):
        state, metrics = real(**kwargs)
        return state, {**metrics, "d-loss": 0.7}  # a loss on real records: not a declared release

    monkeypatch.setattr(client_app, "train_round", leaky)
    reply = app(_message(tiny_run, MessageType.TRAIN), _context(tiny_run))
    assert reply.has_error()
    assert reply.error.reason == f"medgan:release-not-declared: {REFUSALS['release-not-declared']}"


def test_an_unexpected_failure_sends_a_fixed_code_not_the_exception_text(flower_identity, tiny_run, monkeypatch):
    import client.app as client_app

    def broken(**kwargs):
        raise OSError(f"cannot read {tiny_run.data_root}/mitdb/106.dat (4,314 beats)")

    monkeypatch.setattr(client_app, "train_round", broken)
    reply = app(_message(tiny_run, MessageType.TRAIN), _context(tiny_run))
    assert reply.error.reason == f"medgan:internal-error: {REFUSALS['internal-error']}"
    assert "mitdb" not in reply.error.reason
