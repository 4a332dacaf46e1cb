"""Real Flower messages through the ClientApp: packing, same keys everywhere, and the
property that nothing but model arrays and scalar metrics leaves a site."""

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from client.app import app
from medgan_core.models.state import DISCRIMINATOR_PREFIX, GENERATOR_PREFIX, gan_state
from medgan_core.models import build_gan
from medgan_core.site import SiteConfig, load_site_data

EXPECTED_TRAIN_KEYS = {"num-examples", "epsilon", "d-loss-fake", "g-loss", "noise-multiplier", "local-steps"}


def _message(run, message_type=MessageType.TRAIN, server_round=1):
    gan = build_gan(run)
    content = RecordDict({"arrays": ArrayRecord(gan_state(gan)), "config": ConfigRecord({"server-round": server_round})})
    return Message(content=content, dst_node_id=11, message_type=message_type), gan


def _context(run, partition):
    return Context(run_id=1, node_id=11, node_config={"partition-id": partition, "num-partitions": 3},
                   state=RecordDict(), run_config=run.to_mapping())


def _site_samples(run, partition):
    site = SiteConfig.for_simulation(run, partition)
    return load_site_data(site.modality, site.data_paths, run.image_size).samples.numpy()


@pytest.mark.parametrize("partition", [0, 1, 2])
def test_train_reply_holds_only_weights_and_scalars(flower_identity, small_run, partition):
    msg, gan = _message(small_run)
    reply = app(msg, _context(small_run, partition))
    assert not reply.has_error()
    # Exactly one ArrayRecord and one MetricRecord; no ConfigRecord, nothing else.
    assert set(reply.content.keys()) == {"arrays", "metrics"}
    assert isinstance(reply.content["arrays"], ArrayRecord)
    assert isinstance(reply.content["metrics"], MetricRecord)
    # Same metric keys at every site (FedAvg drops a round otherwise), all scalars.
    metrics = dict(reply.content["metrics"])
    assert set(metrics) == EXPECTED_TRAIN_KEYS
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    # The arrays are the model's weights, G and D under prefixes, with the model's shapes.
    arrays = reply.content["arrays"].to_torch_state_dict()
    expected = gan_state(gan)
    assert list(arrays) == list(expected)
    assert all(k.startswith((GENERATOR_PREFIX, DISCRIMINATOR_PREFIX)) for k in arrays)
    assert all(tuple(arrays[k].shape) == tuple(expected[k].shape) for k in arrays)
    # No array is (a slice of) the site's data: no array holds a row equal to a record.
    samples = _site_samples(small_run, partition).reshape(-1, 128)  # (N, L) beats
    sample_rows = {np.round(r, 5).tobytes() for r in samples[:500]}
    for value in arrays.values():
        flat = value.numpy().reshape(-1)
        if flat.size >= samples.shape[1] and flat.size % samples.shape[1] == 0:
            rows = flat.reshape(-1, samples.shape[1])
            assert not any(np.round(r, 5).tobytes() in sample_rows for r in rows)
    # The FedAvg weight is the site's public size (its charged noisy class counts), not the
    # exact count: close to it, an integer, and re-read from the release file.
    assert metrics["num-examples"] == float(round(metrics["num-examples"]))
    assert abs(metrics["num-examples"] - len(samples)) < 200
    assert 0 < metrics["epsilon"] <= small_run.target_epsilon


def test_weights_changed_and_ledger_advanced(flower_identity, small_run):
    msg, gan = _message(small_run)
    reply = app(msg, _context(small_run, 0))
    before = gan_state(gan)
    after = reply.content["arrays"].to_torch_state_dict()
    assert any(not np.allclose(before[k].numpy(), after[k].numpy()) for k in before if k.startswith(DISCRIMINATOR_PREFIX))
    ledger = SiteConfig.for_simulation(small_run, 0).ledger_path
    assert ledger.exists()


def test_evaluate_reply_is_scalars_with_the_same_keys_everywhere(flower_identity, small_run):
    keys = []
    for partition in range(3):
        msg, _ = _message(small_run, MessageType.EVALUATE)
        reply = app(msg, _context(small_run, partition))
        assert set(reply.content.keys()) == {"metrics"}
        keys.append(set(dict(reply.content["metrics"])))
    assert keys[0] == keys[1] == keys[2] == {"num-examples", "epsilon"}


def test_site_past_its_budget_replies_with_an_error_and_survives(flower_identity, small_run):
    from dataclasses import replace

    greedy = replace(small_run, noise_multiplier=0.3, local_steps=400, target_epsilon=1.0)
    msg, _ = _message(greedy)
    reply = app(msg, _context(greedy, 1))
    assert reply.has_error()
    # A fixed code and sentence: no site name, epsilon or path reaches the coordinator.
    assert reply.error.reason.startswith("medgan:budget-exhausted: ")
    assert "site-1" not in reply.error.reason and "PrivacyBudgetExceeded" not in reply.error.reason
    # No DP-SGD round was spent (only the one-off class-prior release), and the node
    # still answers the next message.
    ledger = SiteConfig.for_simulation(greedy, 1).ledger_path
    import json
    entries = json.loads(ledger.read_text())["entries"]
    assert [e["purpose"] for e in entries] == ["label-prior"]
    ok = app(_message(small_run)[0], _context(small_run, 1))
    assert not ok.has_error()
