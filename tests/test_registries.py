"""Extension points: an attack, a metric, a GAN variant or a modality is one file plus a
registration, and what registers is then used everywhere without further edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgan_core.config import RunConfig
from medgan_core.data.labelled import LabelledSet
from medgan_core.errors import ConfigError
from medgan_core.metrics import registry as metric_registry
from medgan_core.metrics.names import METRICS, SET_METRICS, metric
from medgan_core.modalities import base as modality_base
from medgan_core.modalities import get_modality, register_modality
from medgan_core.modalities.ecg import EcgModality
from privacy.audit import attacks as attack_registry
from privacy.audit.base import MembershipAttack


@pytest.fixture
def scratch_metric():
    """Registers ``test_mean_gap`` (|mean candidate - mean real|, sample units) for one test."""

    def mean_gap(candidate, real, *, settings, seed):
        return float((candidate.samples.mean() - real.samples.mean()).abs()) * settings.physical_scale

    metric_registry.register_metric("test_mean_gap", mean_gap, label="mean gap", unit="sample",
                                    lower_is_better=True, applies_to=("ecg",))
    yield "test_mean_gap"
    del metric_registry._REGISTERED["test_mean_gap"]
    del METRICS["test_mean_gap"]


def _beats(offset: float) -> LabelledSet:
    samples = torch.linspace(-1, 1, 8 * 32).reshape(8, 1, 32).sin() + offset
    return LabelledSet(samples, torch.zeros(8, dtype=torch.long))


def test_a_registered_metric_is_scored_and_labelled(scratch_metric):
    from medgan_core.evaluation.scoring import score_against_real
    from medgan_core.metrics.encoder import EncoderConfig, build_encoder

    ecg = get_modality("ecg")
    settings = ecg.evaluation_settings(dtw_samples=3)
    encoder = build_encoder(EncoderConfig(backbone="signal", input_shape=(1, 32), num_classes=2))
    scores = score_against_real(_beats(0.1), _beats(0.0), modality=ecg, encoder=encoder, settings=settings,
                                bandwidth=1.0, seed=0)
    # 0.1 model units apart everywhere = 0.1 * 5 mV.
    assert scores[scratch_metric] == pytest.approx(0.1 * ecg.physical_scale, rel=1e-4)
    assert metric_registry.set_metric_keys() == SET_METRICS + (scratch_metric,)
    assert metric(scratch_metric).label_in(ecg.sample_unit) == "mean gap (mV)"


def test_a_registered_metric_only_scores_the_modalities_it_applies_to(scratch_metric):
    assert metric_registry.registered_metric_keys("ecg") == (scratch_metric,)
    assert metric_registry.registered_metric_keys("xray") == ()
    scores = metric_registry.registered_metric_scores(_beats(0.0), _beats(0.0), modality="xray",
                                                      settings=get_modality("xray").evaluation_settings(), seed=0)
    assert scores == {}


def test_a_registered_metric_gets_a_row_in_report_md(scratch_metric):
    from simulations.report_markdown import _final_metrics_md

    final = {"N": {"fd": 1.0, scratch_metric: 0.25}}
    report = {"final_metrics": final, "reference_metrics": {"N": {"fd": 0.5, scratch_metric: 0.125}},
              "encoder": {"path": "encoder.pt", "feature_dim": 8, "backbone": "ecg", "epochs": 1, "seed": 0,
                          "trained_on": ["a"], "mmd_bandwidth": 1.0},
              "settings": {}, "holdout_patients": ["b"], "synthetic_per_class": 4}
    lines = _final_metrics_md(report, get_modality("ecg"))
    assert "| mean gap (mV) | 0.250 | 0.125 |" in lines


def test_registering_a_metric_key_twice_fails_clearly(scratch_metric):
    with pytest.raises(ValueError, match="metric 'test_mean_gap' is already registered"):
        metric_registry.register_metric(scratch_metric, lambda *a, **k: 0.0, label="again")
    with pytest.raises(ValueError, match="metric 'fd' is already registered"):  # built-ins are taken too
        metric_registry.register_metric("fd", lambda *a, **k: 0.0, label="FD again")


class _NearestL1(MembershipAttack):
    """Minus the L1 distance to the nearest synthetic sample."""

    def __init__(self, *, synthetic: np.ndarray) -> None:
        self._synthetic = synthetic.reshape(len(synthetic), -1)

    def score(self, candidates: np.ndarray) -> np.ndarray:
        flat = candidates.reshape(len(candidates), -1)
        return -np.abs(flat[:, None, :] - self._synthetic[None]).sum(axis=2).min(axis=1)


@pytest.fixture
def scratch_attack():
    attack_registry.register_attack("test_nearest_l1", _NearestL1)
    yield "test_nearest_l1"
    del attack_registry._ATTACKS["test_nearest_l1"]


def test_a_registered_attack_is_parsed_and_run_with_only_its_inputs(scratch_attack):
    """The audit builds it from ``synthetic`` alone (its declared default input), without a
    reference generator, and it fires on a generator that copies its training records."""
    from medgan_core.audit import parse_attacks
    from privacy.audit.runner import audit_generator

    assert parse_attacks(f"logan {scratch_attack}") == ["logan", scratch_attack]
    assert not attack_registry.attacks_need([scratch_attack], "reference_synthetic")
    rng = np.random.default_rng(0)
    members = rng.normal(size=(40, 1, 16)).astype(np.float32)

    class _Copier(torch.nn.Module):  # emits training record i for latent draws, ignoring the class
        def forward(self, z, y):
            return torch.from_numpy(members)[torch.randint(0, 40, (len(z),))]

    gan = type("Gan", (), {"generator": _Copier(), "discriminator": torch.nn.Identity(), "latent_dim": 2})()
    audits = audit_generator(gan=gan, members=members, member_labels=np.zeros(40),
                             non_members=rng.normal(size=(40, 1, 16)), non_member_labels=np.zeros(40),
                             reference=rng.normal(size=(20, 1, 16)), reference_labels=np.zeros(20),
                             attacks=[scratch_attack], n_synthetic=400, n_resamples=50)
    assert audits[scratch_attack].error is None and audits[scratch_attack].result.auc > 0.95


def test_an_unknown_attack_is_a_config_error_listing_the_known_ones(scratch_attack):
    from medgan_core.audit import parse_attacks

    with pytest.raises(ConfigError, match=f"known attacks: .*{scratch_attack}"):
        parse_attacks("logan knn")


def test_an_attack_declares_inputs_an_audit_can_supply():
    class NeedsTheWeights(_NearestL1):
        inputs = ("synthetic", "training_weights")

    with pytest.raises(ValueError, match="training_weights.*declare one or more of synthetic, reference"):
        attack_registry.register_attack("test_needs_weights", NeedsTheWeights)
    assert "test_needs_weights" not in attack_registry.available_attacks()
    assert attack_registry.attack_inputs("gan_leaks_calibrated") == ("synthetic", "reference_synthetic")
    assert attack_registry.attacks_need(["logan", "gan_leaks_calibrated"], "reference_synthetic")


def test_a_gan_variant_registered_later_is_accepted_by_the_run_config(tmp_path):
    from medgan_core.models import registry as gan_registry
    from medgan_core.models.ecg import build_dcgan1d

    with pytest.raises(ConfigError, match="model = 'test_gan' is not a registered GAN; use one of .*dcgan1d"):
        RunConfig(model="test_gan").validate()
    gan_registry.register_gan("test_gan", build_dcgan1d)
    try:
        RunConfig(model="test_gan").validate()
        with pytest.raises(ValueError, match="GAN variant 'test_gan' is already registered"):
            gan_registry.register_gan("test_gan", build_dcgan1d)
    finally:
        del gan_registry._GAN_REGISTRY["test_gan"]


class _HalfEcg(EcgModality):
    name = "test-half-ecg"


@pytest.fixture
def scratch_modality():
    """``_HalfEcg`` registered with the decorator, as a new modality file does at import."""
    assert register_modality(_HalfEcg) is _HalfEcg  # the decorator hands the class back
    yield _HalfEcg.name
    del modality_base._MODALITIES[_HalfEcg.name]


def test_a_modality_registered_by_decorator_is_accepted_by_the_run_config(scratch_modality):
    assert isinstance(get_modality(scratch_modality), _HalfEcg)
    run = RunConfig(modality=scratch_modality)
    run.validate()
    assert run.unit == "record"


def test_an_unknown_modality_is_a_config_error_listing_the_registered_ones(scratch_modality):
    with pytest.raises(ConfigError, match=r"modality = 'mri' is invalid; use one of the registered modalities: "
                                          r"ecg, ecg12, xray, test-half-ecg"):
        RunConfig.from_mapping({"modality": "mri"})


def test_registering_a_modality_twice_fails_clearly(scratch_modality):
    with pytest.raises(ValueError, match="modality 'test-half-ecg' is already registered"):
        register_modality(_HalfEcg())
    with pytest.raises(ValueError, match="is not a Modality"):
        register_modality(object())  # type: ignore[type-var]
