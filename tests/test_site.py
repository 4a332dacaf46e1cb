"""A site's round: class-prior release, budget-derived noise, ledger before release."""

import json

import pytest

from medgan_core.models.state import gan_state
from medgan_core.site import SiteConfig, build_gan, train_round
from privacy.accounting import epsilon_from_history


def _weights(run):
    return {k: v.numpy() for k, v in gan_state(build_gan(run)).items()}


def test_prior_released_once_and_rounds_compose(small_run):
    site = SiteConfig.for_simulation(small_run, 2)
    weights = _weights(small_run)
    _, first = train_round(site=site, run=small_run, run_id="t", server_round=1, weights=weights)
    _, second = train_round(site=site, run=small_run, run_id="t", server_round=2, weights=weights)
    raw = json.loads(site.ledger_path.read_text())
    assert [e["purpose"] for e in raw["entries"]] == ["label-prior", "dp-sgd", "dp-sgd"]
    assert raw["entries"][0]["sample_rate"] == 1.0 and raw["entries"][0]["steps"] == 1
    prior = json.loads(site.ledger_path.with_name("label_prior.json").read_text())["prior"]
    assert sum(prior) == pytest.approx(1.0) and prior[0] > prior[1]  # N beats dominate
    history = [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in raw["entries"]]
    assert second["epsilon"] == pytest.approx(epsilon_from_history(history, delta=small_run.target_delta))
    assert first["epsilon"] < second["epsilon"] <= small_run.target_epsilon


def test_derived_noise_plans_the_remaining_rounds_to_the_target(small_run):
    site = SiteConfig.for_simulation(small_run, 0)
    weights = _weights(small_run)
    for server_round in range(1, small_run.num_server_rounds + 1):
        _, metrics = train_round(site=site, run=small_run, run_id="t", server_round=server_round, weights=weights)
    # After the planned rounds the site is close to, and never above, its target.
    assert 0.97 * small_run.target_epsilon <= metrics["epsilon"] <= small_run.target_epsilon


def test_site_limits_cap_local_work(small_run):
    from dataclasses import replace

    site = replace(SiteConfig.for_simulation(small_run, 0), max_local_steps=2)
    _, metrics = train_round(site=site, run=small_run, run_id="t", server_round=1, weights=_weights(small_run))
    assert metrics["local-steps"] == 2
