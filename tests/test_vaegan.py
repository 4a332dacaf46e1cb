"""VAE-GAN (vaegan1d, vaegan2d): E, G and D for both modalities; the VAE part's DP-SGD step on
the same Poisson sample as D's; the ledger charges both mechanisms, composed as one Gaussian
mechanism with sigma / sqrt(2); the encoder travels with the model update."""

import json
import math

import pytest
import torch
from opacus.accountants import RDPAccountant

from medgan_cli.main import main
from medgan_core.errors import ConfigError
from medgan_core.models import build_gan, create_gan, gan_spec
from medgan_core.models.state import gan_state, load_gan_state
from medgan_core.site import SiteConfig, train_round
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan
from medgan_core.training.patient_dp import PatientDPSettings
from medgan_core.training.vae_dp import DPVaeStep, PlainVaeStep, dp_mechanisms
from privacy.accounting import epsilon_from_history, joint_noise_multiplier, per_mechanism_noise_multiplier


def _beats(n=96, channels=1, length=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, length, generator=g) * 2 - 1, torch.randint(0, 2, (n,), generator=g)


# ---- models ------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 12])
def test_vaegan1d_encodes_reconstructs_and_generates_beats(channels):
    torch.manual_seed(0)
    gan = create_gan("vaegan1d", channels=channels)
    x, y = _beats(n=4, channels=channels)

    mu, logvar = gan.encoder(x, y)
    fake = gan.generator(torch.randn(4, gan.latent_dim), y)
    reconstruction = gan.generator(mu, y)

    assert mu.shape == logvar.shape == (4, gan.latent_dim)
    assert fake.shape == reconstruction.shape == (4, channels, 128)
    assert fake.abs().max() <= 1.0
    assert gan.discriminator(fake, y).shape == (4,)


@pytest.mark.parametrize("image_size", [32, 64])
def test_vaegan2d_encodes_reconstructs_and_generates_images(image_size):
    torch.manual_seed(0)
    gan = create_gan("vaegan2d", image_size=image_size)
    images = torch.rand(3, 1, image_size, image_size) * 2 - 1
    labels = torch.tensor([0, 1, 0])

    mu, logvar = gan.encoder(images, labels)
    fake = gan.generator(mu, labels)

    assert mu.shape == logvar.shape == (3, gan.latent_dim)
    assert fake.shape == (3, 1, image_size, image_size)
    assert gan.discriminator(fake, labels).shape == (3,)


def test_no_vaegan_network_has_batchnorm():
    for name in ("vaegan1d", "vaegan2d"):
        gan = create_gan(name)
        for network in (gan.encoder, gan.generator, gan.discriminator):
            assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in network.modules()), name
    with pytest.raises(ValueError, match="nearest"):
        create_gan("vaegan1d", generator_upsampling="transpose")


def test_the_encoder_is_part_of_the_model_state_and_a_plain_gan_refuses_it():
    torch.manual_seed(0)
    gan = create_gan("vaegan1d")
    state = gan_state(gan)
    assert any(k.startswith("encoder.") for k in state)
    assert {k.split(".")[0] for k in state} == {"generator", "discriminator", "encoder"}

    other = create_gan("vaegan1d")
    load_gan_state(other, state)
    assert all(torch.equal(a, b) for a, b in zip(gan.encoder.state_dict().values(),
                                                 other.encoder.state_dict().values()))
    with pytest.raises(KeyError, match="encoder"):
        load_gan_state(create_gan("dcgan1d"), state)


def test_medgan_models_lists_encoder_discriminator_and_reconstruction_as_touching_real_data(capsys):
    expected = ("encoder", "discriminator", "generator (reconstruction)")
    assert gan_spec("vaegan1d").touches_real_data == gan_spec("vaegan2d").touches_real_data == expected

    assert main(["models", "--json"]) == 0
    rows = {(r["model"], r["modality"]): r for r in json.loads(capsys.readouterr().out)}
    assert rows["vaegan1d", "ecg"]["touches_real_data"] == list(expected)
    assert rows["vaegan2d", "xray"]["encoder_parameters"] > 0
    assert rows["dcgan1d", "ecg"]["encoder_parameters"] == 0
    assert ("vaegan2d", "ecg") not in rows and ("vaegan1d", "xray") not in rows

    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "| vaegan1d | ecg | signal |" in table
    assert "encoder, discriminator, generator (reconstruction) |" in table


# ---- accounting ----------------------------------------------------------------------------

def test_composed_epsilon_is_opacus_rdp_at_sigma_over_sqrt2_and_exceeds_d_alone():
    sigma, q, steps, delta = 1.0, 0.02, 500, 1e-5
    gan = create_gan("vaegan1d")
    assert dp_mechanisms(gan) == 2 and dp_mechanisms(create_gan("dcgan1d")) == 1

    joint = joint_noise_multiplier(sigma, mechanisms=dp_mechanisms(gan))
    composed = epsilon_from_history([(joint, q, steps)], delta=delta)
    d_alone = epsilon_from_history([(sigma, q, steps)], delta=delta)

    reference = RDPAccountant()
    reference.history = [(sigma / math.sqrt(2), q, steps)]
    assert joint == pytest.approx(0.7071067811865476, rel=1e-15)
    assert composed == pytest.approx(reference.get_epsilon(delta=delta), rel=1e-12)
    assert composed == pytest.approx(GOLDEN_COMPOSED_EPSILON, rel=1e-6)
    assert d_alone == pytest.approx(GOLDEN_D_ALONE_EPSILON, rel=1e-6)
    assert composed > d_alone
    assert per_mechanism_noise_multiplier(joint, mechanisms=2) == pytest.approx(sigma, rel=1e-15)


# Opacus 1.6 RDP, sigma 1 per mechanism, q 0.02, 500 steps, delta 1e-5. Two separate
# (1.0, 0.02, 500) entries would give 4.324: they assume independent samples, which the two
# mechanisms do not have, and would under-count this step (docs/privacy.md).
GOLDEN_COMPOSED_EPSILON = 7.454249120329526
GOLDEN_D_ALONE_EPSILON = 3.1442564752172406


def test_the_calculator_plans_two_mechanisms_at_the_joint_multiplier(capsys):
    common = ["--dataset-size", "4000", "--batch-size", "64", "--rounds", "4", "--local-steps", "200"]
    assert main(["privacy", "epsilon", *common, "--noise-multiplier", "1.0", "--mechanisms", "2"]) == 0
    spent = json.loads(capsys.readouterr().out)
    assert spent["epsilon"] == pytest.approx(epsilon_from_history([(1 / math.sqrt(2), 0.016, 800)], delta=1e-5))

    assert main(["privacy", "noise", *common, "--epsilon", "10", "--mechanisms", "2"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["noise_multiplier"] == pytest.approx(planned["joint_noise_multiplier"] * math.sqrt(2))
    assert planned["epsilon_at_that_noise"] <= 10.0


def test_a_vaegan_round_records_one_joint_entry():
    x, y = _beats()
    result = train_local_gan(gan=create_gan("vaegan1d"), beats=x, labels=y,
                             config=LocalTrainingConfig(local_steps=3, batch_size=32, seed=0),
                             dp=DPSettings(noise_multiplier=1.2, grad_sample_mode="hooks"))
    assert result.dp_history == [(pytest.approx(1.2 / math.sqrt(2), rel=1e-15), 32 / 96, 3)]


def test_a_seeded_dp_round_trains_vaegan2d_encoder_generator_and_discriminator():
    torch.manual_seed(0)
    gan = create_gan("vaegan2d", image_size=16)
    before = {k: v.clone() for k, v in gan_state(gan).items()}
    images = torch.rand(24, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.arange(24) % 2

    result = train_local_gan(gan=gan, beats=images, labels=labels,
                             config=LocalTrainingConfig(local_steps=2, batch_size=8, seed=0),
                             dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))

    after = gan_state(gan)
    for prefix in ("encoder.", "generator.", "discriminator."):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(prefix)), prefix
    assert result.dp_history == [(pytest.approx(1 / math.sqrt(2), rel=1e-15), 8 / 24, 2)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_vaegan_trains_on_cuda_and_returns_cpu_networks():
    x, y = _beats(n=64)
    gan = create_gan("vaegan1d")
    result = train_local_gan(gan=gan, beats=x, labels=y, dp=DPSettings(noise_multiplier=1.0),
                             config=LocalTrainingConfig(local_steps=2, batch_size=16, seed=0, device="cuda"))
    assert all(v.device.type == "cpu" for v in gan_state(gan).values())
    assert result.dp_history == [(pytest.approx(1 / math.sqrt(2), rel=1e-15), 16 / 64, 2)]


def test_training_a_vaegan_on_device_cpu_equals_the_default_bit_for_bit():
    x, y = _beats(n=64)
    states = []
    for device in (None, "cpu"):
        torch.manual_seed(0)
        gan = create_gan("vaegan1d")
        extra = {} if device is None else {"device": device}
        train_local_gan(gan=gan, beats=x, labels=y, dp=DPSettings(noise_multiplier=1.0),
                        config=LocalTrainingConfig(local_steps=2, batch_size=16, seed=0, **extra))
        states.append(gan_state(gan))
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


# ---- the DP VAE step ---------------------------------------------------------------------

def _one_vae_step(private: bool, real: torch.Tensor, labels: torch.Tensor) -> dict:
    torch.manual_seed(0)
    gan = create_gan("vaegan1d")
    options = {"batch_size": len(real), "learning_rate": 1e-3, "betas": (0.5, 0.999),
               "latent_rng": torch.Generator().manual_seed(1)}
    if private:  # no noise, no clipping: the DP step must reduce to the plain one
        step = DPVaeStep(gan, noise_multiplier=0.0, max_grad_norm=math.inf, noise_rng=torch.Generator(), **options)
    else:
        step = PlainVaeStep(gan, **options)
    # Plain SGD, as in the discriminator's test: Adam's first step is ~lr * sign(grad), which
    # hides the gradient it is given.
    step.optimizer = torch.optim.SGD(step.params, lr=1e-2)
    step(real, labels)
    return {**{f"encoder.{k}": v.clone() for k, v in gan.encoder.state_dict().items()},
            **{f"generator.{k}": v.clone() for k, v in gan.generator.state_dict().items()}}


def test_private_vae_step_is_the_plain_step_without_noise_or_clipping():
    torch.manual_seed(3)
    real, labels = _beats(n=16, seed=3)
    torch.manual_seed(0)
    start = create_gan("vaegan1d")
    initial = {**{f"encoder.{k}": v for k, v in start.encoder.state_dict().items()},
               **{f"generator.{k}": v for k, v in start.generator.state_dict().items()}}

    plain = _one_vae_step(False, real, labels)
    private = _one_vae_step(True, real, labels)

    assert plain.keys() == private.keys() == initial.keys()
    moved = 0
    for name in plain:
        plain_update, private_update = plain[name] - initial[name], private[name] - initial[name]
        moved += int(plain_update.abs().max() > 0)
        assert torch.allclose(private_update, plain_update, rtol=1e-4, atol=1e-6), name
    assert moved == len([p for p in start.encoder.parameters()]) + len([p for p in start.generator.parameters()])


def test_the_clipped_sum_of_the_vae_step_is_bounded_by_c_per_record(monkeypatch):
    real, labels = _beats(n=8, seed=5)
    gan = create_gan("vaegan1d")
    step = DPVaeStep(gan, noise_multiplier=0.0, max_grad_norm=0.1, batch_size=8, learning_rate=1e-3,
                     betas=(0.5, 0.999), noise_rng=torch.Generator(), latent_rng=torch.Generator().manual_seed(0))
    grads: list[list[torch.Tensor]] = []
    monkeypatch.setattr(step.optimizer, "step", lambda: grads.append([p.grad.clone() for p in step.params]))

    step(real[:1], labels[:1])  # one record: the released sum is that record's clipped gradient

    norm = torch.stack([g.norm() for g in grads[0]]).norm() * 8  # p.grad = sum / batch_size
    assert 0.09 < norm <= 0.1 + 1e-6  # the raw gradient is far larger than C, so it was clipped to C


def test_patient_level_dp_is_refused_for_a_vaegan():
    x, y = _beats(n=40)
    dp = PatientDPSettings(noise_multiplier=1.0, public_patient_count=None, expected_patients_per_step=2,
                           records_per_patient=4, grad_sample_mode="hooks")
    with pytest.raises(ConfigError, match="privacy-unit='record'"):
        train_local_gan(gan=create_gan("vaegan1d"), beats=x, labels=y, dp=dp,
                        config=LocalTrainingConfig(local_steps=1, batch_size=8), patient_ids=[i // 4 for i in range(40)])


# ---- a site and a federation ---------------------------------------------------------------

def _vaegan_run(tmp_path, **extra):
    from simulations.federation import resolve_run_config

    return resolve_run_config({"run-dir": str(tmp_path / "run"), "model": "vaegan1d", "local-steps": 3,
                               "batch-size": 32, "num-server-rounds": 1, **extra})


def _weights(run):
    torch.manual_seed(run.seed)
    return {k: v.numpy() for k, v in gan_state(build_gan(run)).items()}


def test_a_site_charges_the_composed_epsilon_and_never_exceeds_its_budget(tmp_path):
    run = _vaegan_run(tmp_path)
    site = SiteConfig.for_simulation(run, 0)

    state, reply = train_round(site=site, run=run, run_id="t", server_round=1, weights=_weights(run))

    entries = json.loads(site.ledger_path.read_text())["entries"]
    assert [e["purpose"] for e in entries] == ["label-prior", "dp-sgd"]
    charged = entries[1]
    # Each mechanism adds sigma = sqrt(2) x the charged (joint) multiplier.
    assert reply["noise-multiplier"] == pytest.approx(charged["noise_multiplier"] * math.sqrt(2), rel=1e-12)
    history = [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in entries]
    composed = epsilon_from_history(history, delta=run.target_delta)
    d_alone = epsilon_from_history([history[0], (reply["noise-multiplier"], charged["sample_rate"], 3)],
                                   delta=run.target_delta)
    assert reply["epsilon"] == pytest.approx(composed)
    assert d_alone < composed <= site.target_epsilon
    assert composed >= 0.97 * site.target_epsilon  # the planned round ends at the budget, not above
    assert any(k.startswith("encoder.") for k in state)


def test_an_explicit_noise_multiplier_is_charged_at_its_joint_value(tmp_path):
    run = _vaegan_run(tmp_path, **{"noise-multiplier": 1.5})
    site = SiteConfig.for_simulation(run, 1)

    _, reply = train_round(site=site, run=run, run_id="t", server_round=1, weights=_weights(run))

    charged = json.loads(site.ledger_path.read_text())["entries"][1]
    assert reply["noise-multiplier"] == 1.5
    assert charged["noise_multiplier"] == pytest.approx(1.5 / math.sqrt(2), rel=1e-12)


def test_the_run_config_refuses_a_vaegan_at_patient_level():
    from medgan_core.config import RunConfig

    with pytest.raises(ConfigError, match=r"vaegan2d.*privacy-unit = 'record'"):
        RunConfig(modality="xray", model="vaegan2d").validate()  # X-ray defaults to the patient
    RunConfig(modality="xray", model="vaegan2d", privacy_unit="record").validate()
    RunConfig(modality="ecg", model="vaegan1d").validate()


def test_a_patient_level_site_refuses_a_vaegan_before_spending_anything(tmp_path):
    from dataclasses import replace

    run = _vaegan_run(tmp_path)
    site = replace(SiteConfig.for_simulation(run, 0), privacy_unit="patient")
    with pytest.raises(ConfigError, match="privacy-unit='record'"):
        train_round(site=site, run=run, run_id="t", server_round=1, weights=_weights(run))
    assert not site.ledger_path.exists()


def test_a_one_round_federation_trains_and_averages_vaegan1d(tmp_path):
    from simulations.inprocess import initial_weights, run_inprocess_federation

    run = _vaegan_run(tmp_path)
    sites = [SiteConfig.for_simulation(run, k) for k in (0, 1)]
    start = initial_weights(run)

    result = run_inprocess_federation(run, sites=sites, rounds=1)

    assert list(result.weights) == list(gan_state(build_gan(run)))
    for key in ("encoder.mu.weight", "generator.project.weight", "discriminator.head.weight"):
        assert not torch.equal(torch.as_tensor(result.weights[key]), torch.as_tensor(start[key])), key
    assert all(0 < eps <= run.target_epsilon for eps in result.epsilon.values())
