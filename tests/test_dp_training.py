"""DP-SGD on the discriminator only: the generator's step never touches D's per-sample
gradients or the accountant, and the accountant counts exactly the D steps."""

import torch

from medgan_core.models.registry import available_gans, create_gan
from medgan_core.training import dp_gan
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan


def _data(n=256, length=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, length, generator=g) * 2 - 1, torch.randint(0, 2, (n,), generator=g)


def test_accountant_counts_only_discriminator_steps():
    x, y = _data()
    result = train_local_gan(gan=create_gan("dcgan1d"), beats=x, labels=y,
                             config=LocalTrainingConfig(local_steps=7, batch_size=32),
                             dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))
    assert result.dp_history == [(1.0, 32 / 256, 7)]


def test_generator_step_leaves_discriminator_gradients_untouched(monkeypatch):
    seen = []
    original = dp_gan._generator_step

    def snapshot(discriminator):
        return [(None if getattr(p, "grad_sample", None) is None else p.grad_sample.clone(),
                 None if p.grad is None else p.grad.clone()) for p in discriminator.parameters()]

    def spy(gan, discriminator, optimizer, count, prior, rng):
        before = snapshot(discriminator)
        loss = original(gan, discriminator, optimizer, count, prior, rng)
        seen.append((before, snapshot(discriminator)))
        return loss

    monkeypatch.setattr(dp_gan, "_generator_step", spy)
    x, y = _data()
    train_local_gan(gan=create_gan("dcgan1d"), beats=x, labels=y,
                    config=LocalTrainingConfig(local_steps=3, batch_size=32),
                    dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))
    assert len(seen) == 3
    def same(a, b):
        return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))

    for before, after in seen:
        # Whatever the D step left (per-sample gradients, the noised gradient), the G step
        # neither adds to it nor replaces it.
        assert all(same(gs0, gs1) and same(g0, g1) for (gs0, g0), (gs1, g1) in zip(before, after))


def test_discriminator_is_trainable_again_after_generator_step():
    x, y = _data()
    gan = create_gan("dcgan1d")
    train_local_gan(gan=gan, beats=x, labels=y, config=LocalTrainingConfig(local_steps=2, batch_size=32),
                    dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))
    assert all(p.requires_grad for p in gan.discriminator.parameters())


def test_non_private_training_records_no_dp_history():
    x, y = _data()
    result = train_local_gan(gan=create_gan("dcgan1d"), beats=x, labels=y,
                             config=LocalTrainingConfig(local_steps=2, batch_size=32), dp=None)
    assert result.dp_history == []


def test_discriminator_has_no_batchnorm():
    for name in available_gans():
        gan = create_gan(name)
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in gan.discriminator.modules())


def test_unknown_variant_lists_the_known_ones():
    import pytest

    with pytest.raises(ValueError, match="dcgan1d"):
        create_gan("no-such-gan")
