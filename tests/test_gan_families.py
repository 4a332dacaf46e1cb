"""GAN families (classic MLP, BiLSTM-DCGAN, WGAN for ECG): each builds for the modalities it
declares, trains its discriminator under the same Opacus DP step, and is listed by
``medgan models``."""

import json

import pytest
import torch

from medgan_cli.main import main
from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.models import available_gans, create_gan, gan_spec
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan

NEW_1D = ["mlp1d", "bilstm_dcgan1d", "wgan1d"]


def _beats(n=128, channels=1, length=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, length, generator=g) * 2 - 1, torch.randint(0, 2, (n,), generator=g)


def _sample(gan, count=4):
    torch.manual_seed(0)
    return gan.generator(torch.randn(count, gan.latent_dim), torch.arange(count) % gan.num_classes)


@pytest.mark.parametrize("name", NEW_1D)
@pytest.mark.parametrize("channels", [1, 12])
def test_a_1d_variant_generates_beats_of_every_lead_in_range(name, channels):
    torch.manual_seed(0)
    gan = create_gan(name, channels=channels)

    beats = _sample(gan)

    assert beats.shape == (4, channels, 128)
    assert beats.abs().max() <= 1.0
    assert gan.discriminator(beats, torch.tensor([0, 1, 0, 1])).shape == (4,)


def test_mlp2d_generates_images_of_the_run_size():
    torch.manual_seed(0)
    images = _sample(create_gan("mlp2d", image_size=32))
    assert images.shape == (4, 1, 32, 32)


@pytest.mark.parametrize("name", ["mlp1d", "mlp2d"])
def test_the_mlp_discriminator_is_conditional(name):
    torch.manual_seed(0)
    gan = create_gan(name)
    sample = _sample(gan, 1).detach()
    torch.nn.init.normal_(gan.discriminator.class_projection.weight)

    scores = gan.discriminator(torch.cat([sample, sample]), torch.tensor([0, 1]))

    assert scores[0] != scores[1]  # same sample, other class: another score


def test_the_bilstm_variant_reuses_the_dcgan1d_discriminator():
    from medgan_core.models.ecg import Discriminator1D

    torch.manual_seed(0)
    bilstm, dcgan = create_gan("bilstm_dcgan1d", channels=12), create_gan("dcgan1d", channels=12)
    assert type(bilstm.discriminator) is Discriminator1D
    assert ({k: v.shape for k, v in bilstm.discriminator.state_dict().items()}
            == {k: v.shape for k, v in dcgan.discriminator.state_dict().items()})
    assert isinstance(bilstm.generator.lstm, torch.nn.LSTM) and bilstm.generator.lstm.bidirectional


@pytest.mark.parametrize("name,channels", [("mlp1d", 1), ("mlp1d", 12), ("bilstm_dcgan1d", 12), ("wgan1d", 1)])
def test_the_discriminator_trains_under_the_dp_step(name, channels):
    torch.manual_seed(0)
    gan = create_gan(name, channels=channels)
    before = {k: v.clone() for k, v in gan.discriminator.state_dict().items()}
    x, y = _beats(channels=channels)

    result = train_local_gan(gan=gan, beats=x, labels=y,
                             config=LocalTrainingConfig(local_steps=3, batch_size=32, seed=0),
                             dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))

    assert result.dp_history == [(1.0, 32 / 128, 3)]  # every D step charged, nothing else
    after = gan.discriminator.state_dict()
    assert list(after) == list(before)  # unwrapped: the state loads into a fresh model
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_mlp2d_discriminator_trains_under_the_dp_step():
    torch.manual_seed(0)
    gan = create_gan("mlp2d", image_size=32)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 32, 32, generator=g) * 2 - 1, torch.randint(0, 2, (64,), generator=g)

    result = train_local_gan(gan=gan, beats=x, labels=y, config=LocalTrainingConfig(local_steps=2, batch_size=16, seed=0),
                             dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))

    assert result.dp_history == [(1.0, 16 / 64, 2)]


def test_the_wgan1d_critic_stays_clipped_after_dp_steps():
    torch.manual_seed(0)
    gan = create_gan("wgan1d", weight_clip=0.01)
    x, y = _beats()

    train_local_gan(gan=gan, beats=x, labels=y, config=LocalTrainingConfig(local_steps=3, batch_size=32, seed=0,
                                                                           learning_rate_d=0.1),
                    dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))

    assert gan.loss == "wasserstein"
    assert max(p.abs().max().item() for p in gan.discriminator.parameters()) <= 0.01


def test_the_wgan1d_clip_fires_on_a_weight_outside_the_box():
    gan = create_gan("wgan1d", weight_clip=0.05)
    with torch.no_grad():
        gan.discriminator.head.weight.fill_(3.0)
    gan.discriminator.enforce_lipschitz()
    assert torch.all(gan.discriminator.head.weight == 0.05)
    with pytest.raises(ValueError, match="weight_clip"):
        create_gan("wgan1d", weight_clip=0.0)


def test_every_new_variant_declares_its_sample_kind_and_that_only_d_sees_real_data():
    kinds = {name: gan_spec(name).sample_kinds for name in available_gans()}
    assert {name: kinds[name] for name in [*NEW_1D, "mlp2d"]} == {
        "mlp1d": ("signal",), "bilstm_dcgan1d": ("signal",), "wgan1d": ("signal",), "mlp2d": ("image",)}
    # Only the VAE-GANs train more than D on real records (tests/test_vaegan.py).
    assert all(gan_spec(name).touches_real_data == ("discriminator",) for name in available_gans()
               if not name.startswith("vaegan"))


def test_the_run_config_refuses_a_model_of_another_sample_kind():
    RunConfig(modality="ecg", model="mlp1d").validate()
    with pytest.raises(ConfigError, match=r"model = 'mlp1d' does not generate image samples.*mlp2d"):
        RunConfig(modality="xray", model="mlp1d").validate()
    with pytest.raises(ConfigError, match=r"model = 'mlp2d' does not generate signal samples.*bilstm_dcgan1d"):
        RunConfig(modality="ecg12", model="mlp2d").validate()


def test_a_one_round_federation_trains_mlp1d(tmp_path):
    from medgan_core.models import build_gan
    from medgan_core.models.state import gan_state
    from medgan_core.site import SiteConfig
    from simulations.federation import resolve_run_config
    from simulations.inprocess import initial_weights, run_inprocess_federation

    run = resolve_run_config({"run-dir": str(tmp_path / "run"), "model": "mlp1d", "local-steps": 3,
                              "batch-size": 32, "num-server-rounds": 1})
    sites = [SiteConfig.for_simulation(run, k) for k in (0, 1)]
    start = initial_weights(run)

    result = run_inprocess_federation(run, sites=sites, rounds=1)

    assert list(result.weights) == list(gan_state(build_gan(run)))
    assert not torch.equal(result.weights["discriminator.head.weight"], start["discriminator.head.weight"])
    assert all(0 < eps <= run.target_epsilon for eps in result.epsilon.values())


def _hand_count_mlp1d_discriminator(sample_size, width=128):
    return (sample_size * width + width) + (width * width // 2 + width // 2) + (width // 2 + 1) + 2 * (width // 2)


def test_medgan_models_lists_every_variant_with_its_sizes(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)

    assert {row["model"] for row in rows} == set(available_gans())
    by_key = {(row["model"], row["modality"]): row for row in rows}
    assert ("mlp1d", "xray") not in by_key and ("mlp2d", "ecg") not in by_key
    assert by_key["mlp1d", "ecg"]["discriminator_parameters"] == _hand_count_mlp1d_discriminator(128)
    # ecg12 builds 12 leads by default: the MLP's first layer scales with them.
    assert by_key["mlp1d", "ecg12"]["model_kwargs"] == {"channels": 12}
    assert by_key["mlp1d", "ecg12"]["discriminator_parameters"] == _hand_count_mlp1d_discriminator(12 * 128)
    assert by_key["wgan1d", "ecg"]["loss"] == "wasserstein"
    assert all(row["touches_real_data"] == ["discriminator"] for row in rows if not row["model"].startswith("vaegan"))

    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert f"| mlp1d | ecg | signal | - | 215,488 | {_hand_count_mlp1d_discriminator(128):,} |" in table
    for name in available_gans():
        assert f"| {name} | " in table
