"""The audit runner on real GANs (no Flower): it must fire on a memorising GAN, stay near
chance under strong DP, and surface a lower bound above the accountant's epsilon loudly."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

from medgan_core.data.ecg import EcgConfig, load_ecg_records
from medgan_core.models.registry import GanPair, create_gan
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan
from privacy.accounting import epsilon_from_history, noise_multiplier_for_target
from privacy.audit import VIOLATION
from privacy.audit.canaries import craft_canaries, draw_inclusion
from privacy.audit.runner import DEFAULT_ATTACKS, audit_generator, audit_metrics, has_violation

DATA = "data/ecg/mitdb"
DELTA = 1e-5
# 64 canaries, about half of them the whole training set: small enough to memorise.
NUM_CANARIES, STEPS, BATCH = 64, 800, 16
DP_STEPS = 100  # epsilon = 1 whatever the steps; fewer keep the (slower) DP-SGD test short


@pytest.fixture(scope="module")
def pools():
    beats, _ = load_ecg_records([f"{DATA}/116"], EcgConfig())
    rng = np.random.default_rng(0)
    order = rng.permutation(len(beats.beats))
    canaries = craft_canaries(beats.beats[order[:500]], num_canaries=NUM_CANARIES, num_classes=2, seed=3)
    reference = beats.beats[order[500:1500]]  # disjoint from every canary source
    # An idealised reference generator for calibrated GAN-Leaks: real reference-population
    # beats it never trained on (training a second GAN here would only cost test time).
    return canaries, reference, beats.beats[order[1500:2300]]


def _train(canaries, *, target_epsilon: float | None):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: extra threads only contend on a shared CPU
    try:
        return _train_single_thread(canaries, target_epsilon=target_epsilon)
    finally:
        torch.set_num_threads(threads)


def _train_single_thread(canaries, *, target_epsilon: float | None):
    members, labels = canaries.included_records()
    torch.manual_seed(0)
    gan = create_gan("dcgan1d", latent_dim=32, num_classes=2)
    steps = STEPS if target_epsilon is None else DP_STEPS
    config = LocalTrainingConfig(local_steps=steps, batch_size=BATCH, learning_rate_d=2e-3, seed=1)
    dp = None
    if target_epsilon is not None:
        sigma = noise_multiplier_for_target(target_epsilon=target_epsilon, delta=DELTA,
                                            sample_rate=BATCH / len(members), steps=steps)
        dp = DPSettings(noise_multiplier=sigma, max_grad_norm=1.0, grad_sample_mode="hooks")
    result = train_local_gan(gan=gan, beats=torch.from_numpy(members).float().unsqueeze(1),
                             labels=torch.from_numpy(labels).long(), config=config, dp=dp)
    epsilon = epsilon_from_history(result.dp_history, delta=DELTA) if dp else math.inf
    return gan, epsilon


def _audit(gan, canaries, reference, reference_synthetic, accountant_epsilon):
    c = canaries
    ref_labels = np.zeros(len(reference), dtype=np.int64)
    return audit_generator(
        gan=gan, members=c.records[c.included], member_labels=c.labels[c.included],
        non_members=c.records[~c.included], non_member_labels=c.labels[~c.included],
        reference=reference, reference_labels=ref_labels, reference_synthetic=reference_synthetic,
        attacks=DEFAULT_ATTACKS, n_synthetic=1000, seed=0, delta=DELTA,
        accountant_epsilon=accountant_epsilon, randomized_inclusion=True, n_resamples=200,
    )


@pytest.fixture(scope="module")
def overfit(pools):
    canaries, _, _ = pools
    return _train(canaries, target_epsilon=None)


def test_canaries_are_seeded_distinct_and_fair_coins():
    pool = np.random.default_rng(1).normal(size=(300, 128))
    a = craft_canaries(pool, num_canaries=200, num_classes=2, seed=7)
    b = craft_canaries(pool, num_canaries=200, num_classes=2, seed=7)
    c = craft_canaries(pool, num_canaries=200, num_classes=2, seed=8)
    assert np.array_equal(a.records, b.records) and np.array_equal(a.included, b.included)
    assert not np.array_equal(a.included, c.included)
    assert len(set(a.source_indices.tolist())) == 200  # distinct sources
    # Each canary is its source beat, circularly shifted and possibly negated.
    for record, source in zip(a.records[:20], a.source_indices[:20]):
        assert any(np.allclose(record, s * np.roll(pool[source], k)) for s in (1, -1) for k in range(-40, 41))
    # The bits are fair coins that do not depend on the records at all.
    assert np.array_equal(a.included, draw_inclusion(200, seed=7))
    bits = draw_inclusion(4000, seed=0)
    assert 0.46 < bits.mean() < 0.54


class _Replay(nn.Module):
    """A generator that memorised its training set perfectly: every sample is a member."""

    def __init__(self, members: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("members", torch.from_numpy(members).float())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The latent picks which member comes out; no noise, so every member reappears.
        index = (z[:, 0].abs() * 1e6).long() % len(self.members)
        return self.members[index].unsqueeze(1)


class _NearestMember(nn.Module):
    """A discriminator that memorised too: its logit is minus the distance to the nearest member."""

    def __init__(self, members: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("members", torch.from_numpy(members).float())

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return -torch.cdist(x.flatten(1), self.members.flatten(1)).min(dim=1).values


@pytest.fixture(scope="module")
def memorising(pools):
    """The case where an audit *must* detect leakage, by construction rather than by training
    luck: the released generator and discriminator reproduce the included canaries exactly."""
    canaries, _, _ = pools
    members, _ = canaries.included_records()
    return GanPair(generator=_Replay(members), discriminator=_NearestMember(members), latent_dim=32,
                   num_classes=2)


def test_overfit_non_private_gan_is_caught(pools, overfit):
    canaries, reference, reference_synthetic = pools
    gan, epsilon = overfit
    audits = _audit(gan, canaries, reference, reference_synthetic, epsilon)

    # The trained GAN memorises enough for the discriminator attack to separate members; the
    # size of the one-run bound depends on how well it memorised, which varies with the
    # numerical libraries, so it is only required to be a valid bound here (a positive one
    # is required below, where leakage is certain).
    logan = audits["logan"]
    assert logan.result.auc > 0.7 and logan.result.auc_ci_low > 0.5
    assert all(a.lower_bound.epsilon_lb >= 0.0 for a in audits.values() if a.lower_bound)
    assert all(a.verdict == "consistent" for a in audits.values() if a.result)  # inf: no DP
    assert set(audits) == set(DEFAULT_ATTACKS) and all(a.error is None for a in audits.values())


def test_a_memorising_gan_gives_every_attack_auc_1_and_a_positive_bound(pools, memorising):
    canaries, reference, reference_synthetic = pools
    audits = _audit(memorising, canaries, reference, reference_synthetic, math.inf)

    for name in ("logan", "gan_leaks"):
        assert audits[name].result.auc > 0.99, name
    best = max(a.lower_bound.epsilon_lb for a in audits.values() if a.lower_bound)
    assert best > 0.5  # certified from one run, with every guess right
    assert not has_violation(audits)  # no DP claimed: nothing to violate


def test_a_bound_above_the_accountant_epsilon_is_a_loud_violation(pools, memorising, caplog):
    canaries, reference, reference_synthetic = pools
    with caplog.at_level(logging.ERROR):
        # Pretend the accountant claimed epsilon = 0.01 for this memorising GAN.
        audits = _audit(memorising, canaries, reference, reference_synthetic, accountant_epsilon=0.01)

    assert has_violation(audits)
    assert any(a.verdict == VIOLATION for a in audits.values())
    assert any("VIOLATION" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    metrics = audit_metrics(audits)
    assert max(v for k, v in metrics.items() if k.endswith("-violation")) == 1.0


def test_metrics_are_scalars_with_fixed_keys_even_when_an_attack_cannot_run(pools):
    canaries, reference, _ = pools
    gan = create_gan("dcgan1d", latent_dim=32, num_classes=2)
    c = canaries
    audits = audit_generator(
        gan=gan, members=c.records[:30], member_labels=c.labels[:30], non_members=c.records[30:],
        non_member_labels=c.labels[30:], reference=reference, reference_labels=np.zeros(len(reference)),
        attacks=("logan", "gan_leaks_calibrated"), n_synthetic=200, n_resamples=50,
    )

    assert audits["gan_leaks_calibrated"].error and "reference_synthetic" in audits["gan_leaks_calibrated"].error
    metrics = audit_metrics(audits)
    assert set(metrics) == {f"{a}-{k}" for a in ("logan", "gan_leaks_calibrated")
                            for k in ("auc", "auc-ci-low", "auc-ci-high", "tpr-at-1pct-fpr", "tpr-at-01pct-fpr")
                            } | {"num-members", "num-non-members"}
    assert metrics["num-members"] == 30 and metrics["num-non-members"] == NUM_CANARIES - 30
    assert math.isnan(metrics["gan_leaks_calibrated-auc"]) and 0 <= metrics["logan-auc"] <= 1
    assert all(isinstance(v, float) for v in metrics.values())


def test_unknown_attack_is_rejected_with_the_known_names(pools):
    canaries, reference, _ = pools
    with pytest.raises(ValueError, match="known attacks: .*domias"):
        audit_generator(gan=create_gan("dcgan1d"), members=canaries.records, member_labels=canaries.labels,
                        non_members=reference, non_member_labels=np.zeros(len(reference)),
                        reference=reference, reference_labels=np.zeros(len(reference)), attacks=("logn",))
