"""2-D conditional GANs for chest X-rays: DP-compatible, registered, and trained by the
same DP-SGD step as ECG (BCE and Wasserstein losses)."""

import pytest
import torch
from opacus.validators import ModuleValidator

from medgan_core.errors import ConfigError
from medgan_core.models.registry import GanPair, available_gans, create_gan
from medgan_core.models.xray import BinomialLowPass2d, Critic2D, XrayGanConfig
from medgan_core.training import dp_gan
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, WassersteinLoss, train_local_gan

VARIANTS = ("dcgan2d", "dcgan2d_lowpass", "dcgan2d_smooth", "wgan2d")


def _images(n=96, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1, torch.randint(0, 2, (n,), generator=g)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("size", [64, 128])
def test_generator_output_is_a_conditional_image_in_tanh_range(name, size):
    torch.manual_seed(0)
    gan = create_gan(name, image_size=size)
    z = torch.randn(4, gan.latent_dim)
    normal = gan.generator(z, torch.zeros(4, dtype=torch.long))
    pneumonia = gan.generator(z, torch.ones(4, dtype=torch.long))
    assert normal.shape == (4, 1, size, size)
    assert normal.abs().max() <= 1.0
    # Same noise, other class: a different image (the label reaches the generator).
    assert (normal - pneumonia).abs().mean() > 1e-4
    scores = gan.discriminator(normal, torch.zeros(4, dtype=torch.long))
    assert scores.shape == (4,)
    # The class projection makes the score depend on the label given with the image.
    assert not torch.allclose(scores, gan.discriminator(normal, torch.ones(4, dtype=torch.long)))


@pytest.mark.parametrize("size", [8, 48, 96])
def test_image_size_must_be_four_times_a_power_of_two(size):
    with pytest.raises(ValueError, match="image_size"):
        XrayGanConfig(image_size=size)


@pytest.mark.parametrize("name", VARIANTS)
def test_discriminator_is_valid_for_opacus_and_has_no_batchnorm(name):
    discriminator = create_gan(name).discriminator
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in discriminator.modules())
    assert ModuleValidator.validate(discriminator, strict=False) == []


def test_registry_knows_the_variants_and_their_losses():
    assert {"dcgan2d", "dcgan2d_smooth", "wgan2d"} <= set(available_gans())
    assert create_gan("dcgan2d").loss == create_gan("dcgan2d_smooth").loss == "bce"
    assert create_gan("wgan2d").loss == "wasserstein"
    with pytest.raises(ValueError, match="wgan2d"):
        create_gan("wgan-2d")


def test_wasserstein_loss_is_minus_score_for_real_and_score_for_fake():
    scores, targets = torch.tensor([2.0, -1.0, 3.0]), torch.tensor([1.0, 1.0, 0.0])
    # Per sample: -2 (real), +1 (real), +3 (fake).
    assert torch.equal(WassersteinLoss(reduction="none")(scores, targets), torch.tensor([-2.0, 1.0, 3.0]))
    assert WassersteinLoss(reduction="sum")(scores, targets).item() == pytest.approx(2.0)
    assert WassersteinLoss()(scores, targets).item() == pytest.approx(2.0 / 3.0)


@pytest.mark.parametrize("name, mode", [("dcgan2d", "hooks"), ("wgan2d", "ghost")])
def test_dp_training_of_2d_gan_accounts_exactly_the_discriminator_steps(name, mode):
    x, y = _images()
    gan = create_gan(name, image_size=32)
    before = [p.clone() for p in gan.generator.parameters()]
    result = train_local_gan(gan=gan, beats=x, labels=y, config=LocalTrainingConfig(local_steps=3, batch_size=16),
                             dp=DPSettings(noise_multiplier=1.0, grad_sample_mode=mode))
    assert result.dp_history == [(1.0, 16 / 96, 3)]
    assert all(torch.isfinite(torch.tensor([result.d_loss, result.g_loss])))
    assert any(not torch.equal(b, a) for b, a in zip(before, gan.generator.parameters()))
    # The plain discriminator comes back, trainable and free of Opacus hooks.
    assert all(p.requires_grad for p in gan.discriminator.parameters())
    assert not hasattr(gan.discriminator, "_module")


def test_wgan_critic_weights_stay_clipped_through_dp_training():
    x, y = _images()
    gan = create_gan("wgan2d", image_size=32, weight_clip=0.01)
    # A large learning rate: Adam's first step alone moves each weight by about lr.
    train_local_gan(gan=gan, beats=x, labels=y,
                    config=LocalTrainingConfig(local_steps=3, batch_size=16, learning_rate_d=0.1),
                    dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))
    largest = max(p.abs().max().item() for p in gan.discriminator.parameters())
    assert largest == pytest.approx(0.01)  # at the bound: the clip was active and held


def test_wgan_generator_step_leaves_the_critic_untouched(monkeypatch):
    seen = []
    original = dp_gan._generator_step

    def spy(gan, discriminator, optimizer, *args, **options):
        before = [(p.clone(), None if p.grad is None else p.grad.clone()) for p in gan.discriminator.parameters()]
        loss = original(gan, discriminator, optimizer, *args, **options)
        after = [(p, p.grad) for p in gan.discriminator.parameters()]
        seen.append(all(torch.equal(w0, w1) and ((g0 is None and g1 is None) or torch.equal(g0, g1))
                        for (w0, g0), (w1, g1) in zip(before, after)))
        return loss

    monkeypatch.setattr(dp_gan, "_generator_step", spy)
    x, y = _images()
    train_local_gan(gan=create_gan("wgan2d", image_size=32), beats=x, labels=y,
                    config=LocalTrainingConfig(local_steps=2, batch_size=16),
                    dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))
    assert seen == [True, True]


def test_wasserstein_pair_without_a_lipschitz_constraint_is_refused():
    gan = create_gan("dcgan2d", image_size=32)
    unconstrained = GanPair(gan.generator, gan.discriminator, gan.latent_dim, gan.num_classes, loss="wasserstein")
    x, y = _images()
    with pytest.raises(ConfigError, match="enforce_lipschitz"):
        train_local_gan(gan=unconstrained, beats=x, labels=y, config=LocalTrainingConfig(local_steps=1, batch_size=16),
                        dp=None)


def test_critic_starts_within_its_clip():
    critic = Critic2D(XrayGanConfig(image_size=32, weight_clip=0.02))
    assert max(p.abs().max().item() for p in critic.parameters()) <= 0.02


def _checkerboard_energy(images: torch.Tensor) -> float:
    """Share of the images' spectral energy at the (pi, pi) corner, where a stride-2 transposed
    convolution's uneven kernel overlap puts its checkerboard (the image's mean removed)."""
    spectrum = torch.fft.fft2(images - images.mean(dim=(-2, -1), keepdim=True)).abs().pow(2)  # (B, 1, S, S)
    side = images.shape[-1]
    return float(spectrum[..., side // 2, side // 2].sum() / spectrum.sum())


def test_smooth_generator_draws_no_checkerboard_and_keeps_the_plain_discriminator():
    """dcgan2d_smooth: nearest upsampling + 3x3 convolutions. Checked at initialisation, where
    the transposed convolutions' pattern is already there and nothing trained could remove it:
    the generator draws at half the side, so the pattern sits at (pi/2, pi/2) of the output
    and a 2x area-average brings it to the (pi, pi) corner."""
    plain_energy, smooth_energy = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        plain, smooth = create_gan("dcgan2d", image_size=64), create_gan("dcgan2d_smooth", image_size=64)
        z, labels = torch.randn(16, plain.latent_dim), torch.arange(2).repeat(8)
        with torch.no_grad():
            for gan, energies in ((plain, plain_energy), (smooth, smooth_energy)):
                half = torch.nn.functional.avg_pool2d(gan.generator(z, labels), 2)  # (16, 1, 32, 32)
                energies.append(_checkerboard_energy(half))
    assert max(smooth_energy) < 0.2 * min(plain_energy)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in smooth.generator.modules())
    assert [k for k in smooth.discriminator.state_dict()] == [k for k in plain.discriminator.state_dict()]
    with pytest.raises(ValueError, match="generator_upsampling"):
        XrayGanConfig(generator_upsampling="bilinear")


def test_binomial_low_pass_keeps_the_mean_and_removes_the_pixel_checkerboard():
    lowpass = BinomialLowPass2d()
    assert list(lowpass.parameters()) == [] and "kernel" in lowpass.state_dict()
    constant = torch.full((2, 1, 16, 16), 0.3)
    assert torch.allclose(lowpass(constant), constant, atol=1e-6)  # unit DC gain, no edge effect
    index = torch.arange(16)
    checkerboard = ((-1.0) ** (index.view(-1, 1) + index)).expand(2, 1, 16, 16)
    assert lowpass(checkerboard)[..., 1:-1, 1:-1].abs().max() < 1e-6  # zero gain at Nyquist
    ramp = index.float().expand(1, 1, 16, 16)
    assert torch.allclose(lowpass(ramp)[..., 1:-1], ramp[..., 1:-1], atol=1e-5)  # smooth content passes


def test_low_pass_generator_cannot_draw_texture_at_its_own_pixel_scale():
    """The last convolution set to copy its first channel, fed a checkerboard at the half side:
    the smooth generator's image carries it (bilinear doubling keeps half its amplitude), the
    low-pass generator's does not (only its corners, where padding replicates, keep a trace)."""
    torch.manual_seed(0)
    with_lowpass, without = (create_gan(name, image_size=64).generator for name in ("dcgan2d_lowpass", "dcgan2d_smooth"))
    copy_first_channel = with_lowpass.to_image[0]
    with torch.no_grad():
        copy_first_channel.weight.zero_()
        copy_first_channel.bias.zero_()
        copy_first_channel.weight[0, 0, 1, 1] = 1.0
    without.to_image[0].load_state_dict(copy_first_channel.state_dict())
    index = torch.arange(32)
    checkerboard = ((-1.0) ** (index.view(-1, 1) + index)).expand(2, copy_first_channel.in_channels, 32, 32)

    def amplitude_at_nyquist(generator):  # |DFT| at (pi, pi) of the image averaged back to 32x32
        with torch.no_grad():
            half = torch.nn.functional.avg_pool2d(generator.to_image(checkerboard), 2)  # (2, 1, 32, 32)
        return float(torch.fft.fft2(half)[..., 16, 16].abs().max())

    assert amplitude_at_nyquist(without) > 0.2 * 32 * 32  # half the amplitude on each axis: 0.25
    assert amplitude_at_nyquist(with_lowpass) < 0.01 * amplitude_at_nyquist(without)  # corners: 0.002
