"""The in-process federation: Flower's FedAvg arithmetic on the ClientApp's site code, the
same final global model as a real Flower simulation, and every round charged to the ledgers."""

import json

import pytest
import torch

import simulations.inprocess as inprocess
from medgan_core.run_dir import RunDirectory
from medgan_core.site import INSECURE_SEED_VARIABLE, SiteConfig
from simulations.inprocess import initial_weights, run_inprocess_federation

TWO_SITES = {"site-records": "mitdb/106|mitdb/105", "holdout-records": "mitdb/116"}


def test_rounds_average_the_replies_weighted_by_num_examples(small_run, monkeypatch):
    a = {"generator.w": torch.tensor([1.0, 2.0]), "discriminator.b": torch.tensor([0.0])}
    b = {"generator.w": torch.tensor([3.0, 6.0]), "discriminator.b": torch.tensor([4.0])}
    replies = {"site-0": (a, 1.0, 1.5), "site-1": (b, 3.0, 2.5)}
    seen = []

    def fake_round(*, site, run, run_id, server_round, weights):
        seen.append((site.site_id, server_round, {k: v.clone() for k, v in weights.items()}))
        state, n, eps = replies[site.site_id]
        return state, {"num-examples": n, "epsilon": eps, "d-loss-fake": 1.0, "g-loss": 2.0,
                       "noise-multiplier": 1.0, "local-steps": 3.0}

    monkeypatch.setattr(inprocess, "train_round", fake_round)
    sites = [SiteConfig.for_simulation(small_run, k) for k in (0, 1)]
    start = {"generator.w": torch.zeros(2), "discriminator.b": torch.zeros(1)}

    result = run_inprocess_federation(small_run, sites=sites, rounds=2, initial=start)

    assert list(result.weights) == ["generator.w", "discriminator.b"]
    assert torch.equal(result.weights["generator.w"], torch.tensor([2.5, 5.0]))  # (1*a + 3*b) / 4
    assert torch.equal(result.weights["discriminator.b"], torch.tensor([3.0]))
    # Round 2 starts every site from round 1's average; round 1 from the given weights.
    assert [(s, r) for s, r, _ in seen] == [("site-0", 1), ("site-1", 1), ("site-0", 2), ("site-1", 2)]
    assert torch.equal(seen[0][2]["generator.w"], torch.zeros(2))
    assert torch.equal(seen[2][2]["generator.w"], torch.tensor([2.5, 5.0]))
    assert result.epsilon == {"site-0": 1.5, "site-1": 2.5}
    assert result.rounds[0].aggregated["epsilon"] == pytest.approx(0.25 * 1.5 + 0.75 * 2.5)
    assert "num-examples" not in result.rounds[0].aggregated  # as Flower's FedAvg: the weight is dropped


def test_empty_or_repeated_sites_are_refused(small_run):
    site = SiteConfig.for_simulation(small_run, 0)
    with pytest.raises(ValueError, match="empty"):
        run_inprocess_federation(small_run, sites=[])
    with pytest.raises(ValueError, match="repeat"):
        run_inprocess_federation(small_run, sites=[site, site])


@pytest.mark.slow
def test_same_final_global_model_as_a_flower_simulation(tmp_path, monkeypatch):
    """Bit for bit. Without DP, and with the site-local test switch for the sites' seeds, a
    round is deterministic; two sites make FedAvg's sum independent of the reply order
    (Flower samples nodes in random order and aggregates in arrival order)."""
    from simulations.federation import resolve_run_config, run_federation

    monkeypatch.setenv(INSECURE_SEED_VARIABLE, "5")
    overrides = {**TWO_SITES, "num-server-rounds": 2, "local-steps": 2, "batch-size": 32, "dp-enabled": False,
                 "fraction-evaluate": 0.0}
    simulated = resolve_run_config({**overrides, "run-dir": str(tmp_path / "flower")})
    run_federation(simulated)
    expected = RunDirectory(simulated.run_dir).load_checkpoint("latest.pt")
    assert expected["round"] == 2

    here = resolve_run_config({**overrides, "run-dir": str(tmp_path / "inprocess")})
    result = run_inprocess_federation(here)

    assert list(result.weights) == list(expected["state"])
    for key, value in expected["state"].items():
        assert torch.equal(result.weights[key], value), key
    # And not trivially: two rounds moved the weights away from the ServerApp's initial model.
    start = initial_weights(here)
    assert any(not torch.equal(start[k], result.weights[k]) for k in start if start[k].is_floating_point())


def test_every_round_is_charged_to_every_site_ledger(small_run):
    rounds = small_run.num_server_rounds
    sites = [SiteConfig.for_simulation(small_run, k) for k in (0, 1)]

    result = run_inprocess_federation(small_run, sites=sites, evaluate=True)

    for site in sites:
        raw = json.loads(site.ledger_path.read_text())
        assert [(e["purpose"], e["server_round"]) for e in raw["entries"]] == [
            ("label-prior", 0)] + [("dp-sgd", r) for r in range(1, rounds + 1)]
        epsilons = [e["epsilon_after"] for e in raw["entries"]]
        assert all(a <= b for a, b in zip(epsilons, epsilons[1:]))  # never decreases
        assert epsilons[-1] <= small_run.target_epsilon
        per_round = [r.train[site.site_id]["epsilon"] for r in result.rounds]
        assert per_round == pytest.approx(epsilons[1:])  # what each reply said is what was charged
        assert result.epsilon[site.site_id] == pytest.approx(epsilons[-1])
        # The site's evaluate reply reads the same ledger.
        assert result.rounds[-1].evaluate[site.site_id]["epsilon"] == pytest.approx(epsilons[-1])
