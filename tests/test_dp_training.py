"""DP-SGD on the discriminator only: the generator's step never touches D's per-sample
gradients or the accountant, and the accountant counts exactly the D steps."""

import pytest
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


@pytest.mark.parametrize("mode_seeking_weight", [0.0, 1.0])
def test_generator_step_leaves_discriminator_gradients_untouched(monkeypatch, mode_seeking_weight):
    seen = []
    original = dp_gan._generator_step

    def snapshot(discriminator):
        return [(None if getattr(p, "grad_sample", None) is None else p.grad_sample.clone(),
                 None if p.grad is None else p.grad.clone()) for p in discriminator.parameters()]

    def spy(gan, discriminator, optimizer, count, prior, rng, **options):
        assert options == {"mode_seeking_weight": mode_seeking_weight}
        before = snapshot(discriminator)
        loss = original(gan, discriminator, optimizer, count, prior, rng, **options)
        seen.append((before, snapshot(discriminator)))
        return loss

    monkeypatch.setattr(dp_gan, "_generator_step", spy)
    x, y = _data()
    train_local_gan(gan=create_gan("dcgan1d"), beats=x, labels=y,
                    config=LocalTrainingConfig(local_steps=3, batch_size=32, mode_seeking_weight=mode_seeking_weight),
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


def _one_discriminator_step(private: bool, real: torch.Tensor, real_labels: torch.Tensor) -> dict:
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    gan = create_gan("dcgan1d")
    discriminator = gan.discriminator
    optimizer = torch.optim.SGD(discriminator.parameters(), lr=1e-2)
    criterion = torch.nn.BCEWithLogitsLoss()
    if private:  # no noise, no effective clipping: DP-SGD must reduce to the plain gradient
        loader = DataLoader(TensorDataset(real, real_labels), batch_size=len(real))
        discriminator, optimizer, _ = PrivacyEngine().make_private(
            module=discriminator, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0,
            max_grad_norm=1e9, poisson_sampling=True)
    prior = torch.tensor([0.5, 0.5])
    dp_gan._discriminator_step(gan, discriminator, optimizer, criterion, real, real_labels,
                               fake_count=len(real), prior=prior, rng=torch.Generator().manual_seed(1))
    return {k.removeprefix("_module."): v.detach().clone() for k, v in discriminator.state_dict().items()}


def test_private_step_is_the_plain_step_without_noise_or_clipping():
    # With sigma = 0 and C -> inf, DP-SGD on the real + fake batch must be the plain SGD
    # update, scaled by (real + fake) / expected real batch = 2: Opacus divides the summed
    # per-sample gradients by the expected batch size, the plain loss is a mean over all.
    torch.manual_seed(3)
    real = torch.tanh(torch.randn(32, 1, 128))
    real_labels = torch.randint(0, 2, (32,))
    torch.manual_seed(0)
    initial = create_gan("dcgan1d").discriminator.state_dict()
    plain = _one_discriminator_step(False, real, real_labels)
    private = _one_discriminator_step(True, real, real_labels)
    assert plain.keys() == private.keys()
    for name in plain:
        plain_update, private_update = plain[name] - initial[name], private[name] - initial[name]
        assert plain_update.abs().max() > 0, name
        assert torch.allclose(private_update, 2 * plain_update, rtol=1e-4, atol=1e-6), name  # float32 ulp of O(1) weights



def test_mode_seeking_penalty_punishes_collapse():
    latents = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    diverse = torch.randn(64, 1, 128, generator=torch.Generator().manual_seed(1))
    collapsed = diverse[:1].expand(64, 1, 128) + 1e-3 * diverse
    # The value by hand: 1 / (mean over pairs of mean|dG| / mean|dz|).
    half = 32
    ratio = ((diverse[:half] - diverse[half:]).abs().flatten(1).mean(1)
             / (latents[:half] - latents[half:]).abs().mean(1)).mean()
    assert torch.isclose(dp_gan.mode_seeking_penalty(diverse, latents), 1 / (ratio + 1e-5))
    assert dp_gan.mode_seeking_penalty(collapsed, latents) > 100 * dp_gan.mode_seeking_penalty(diverse, latents)


def test_mode_seeking_changes_the_generator_but_not_the_privacy_spend():
    x, y = _data()
    results, generators = [], []
    for weight in (0.0, 5.0):
        torch.manual_seed(0)
        gan = create_gan("dcgan1d")
        results.append(train_local_gan(gan=gan, beats=x, labels=y,
                                       config=LocalTrainingConfig(local_steps=4, batch_size=32,
                                                                  mode_seeking_weight=weight),
                                       dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks")))
        generators.append(torch.cat([p.detach().flatten() for p in gan.generator.parameters()]))
    assert results[0].dp_history == results[1].dp_history == [(1.0, 32 / 256, 4)]
    assert not torch.equal(generators[0], generators[1])


def test_negative_mode_seeking_weight_is_refused():
    from medgan_core.errors import ConfigError

    with pytest.raises(ConfigError, match="mode_seeking_weight"):
        LocalTrainingConfig(mode_seeking_weight=-1.0)


def _weights(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_generator_average_is_released_and_changes_nothing_else(monkeypatch):
    """The released generator is the running average of its iterates; the discriminator,
    which only ever met the raw iterates, and the privacy spend are exactly as without it."""
    x, y = _data()
    original = dp_gan._generator_step
    runs = {}
    for decay in (0.0, 0.5):
        torch.manual_seed(0)
        gan = create_gan("dcgan1d")
        start = {k: v.clone() for k, v in gan.generator.state_dict().items()}
        iterates = []

        def spy(*args, _gan=gan, _iterates=iterates, **kwargs):
            loss = original(*args, **kwargs)
            _iterates.append({k: v.clone() for k, v in _gan.generator.state_dict().items()})
            return loss

        monkeypatch.setattr(dp_gan, "_generator_step", spy)
        result = train_local_gan(gan=gan, beats=x, labels=y,
                                 config=LocalTrainingConfig(local_steps=3, batch_size=32, generator_ema=decay, seed=0),
                                 dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))
        runs[decay] = (result, gan, start, iterates)
    (plain, plain_gan, _, plain_iterates), (averaged, averaged_gan, start, averaged_iterates) = runs[0.0], runs[0.5]
    assert plain.dp_history == averaged.dp_history == [(1.0, 32 / 256, 3)]
    assert torch.equal(_weights(plain_gan.discriminator), _weights(averaged_gan.discriminator))
    assert all(torch.equal(v, plain_iterates[-1][k]) for k, v in plain_gan.generator.state_dict().items())
    # By hand: a_0 = w_0 (the starting weights), a_t = 0.5 a_{t-1} + 0.5 w_t.
    expected = {k: v for k, v in start.items() if v.is_floating_point()}
    for iterate in averaged_iterates:
        expected = {k: 0.5 * v + 0.5 * iterate[k] for k, v in expected.items()}
    released = averaged_gan.generator.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(released[k], v)
    assert not torch.equal(released["project.weight"], averaged_iterates[-1]["project.weight"])


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_generator_average_decay_outside_0_1_is_refused(decay):
    from medgan_core.errors import ConfigError

    with pytest.raises(ConfigError, match="generator_ema"):
        LocalTrainingConfig(generator_ema=decay)


def _released_discriminator(config: LocalTrainingConfig) -> torch.Tensor:
    x, y = _data()
    torch.manual_seed(0)  # the same initial weights in every call
    gan = create_gan("dcgan1d")
    train_local_gan(gan=gan, beats=x, labels=y, config=config,
                    dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))
    return _weights(gan.discriminator)


def test_dp_randomness_is_secret_by_default_and_replayable_only_with_an_explicit_seed():
    # Same data, same initial weights, same configuration: without a seed the noise and the
    # sampling are fresh secrets, so the released discriminators differ ...
    secret = LocalTrainingConfig(local_steps=2, batch_size=32)
    assert not torch.equal(_released_discriminator(secret), _released_discriminator(secret))
    # ... and the global torch seed (known to anyone with the config) does not pin them either.
    torch.manual_seed(123)
    a = _released_discriminator(secret)
    torch.manual_seed(123)
    assert not torch.equal(a, _released_discriminator(secret))
    # An explicit seed (tests only) makes the round bit-for-bit replayable.
    seeded = LocalTrainingConfig(local_steps=2, batch_size=32, seed=5)
    assert torch.equal(_released_discriminator(seeded), _released_discriminator(seeded))


def test_sampling_rate_and_averaging_use_the_public_size_not_the_count(monkeypatch):
    x, y = _data(n=256)
    seen = {}
    original = dp_gan._discriminator_step

    def spy(gan, discriminator, optimizer, *args):
        seen["expected_batch_size"] = optimizer.expected_batch_size
        return original(gan, discriminator, optimizer, *args)

    monkeypatch.setattr(dp_gan, "_discriminator_step", spy)
    result = train_local_gan(gan=create_gan("dcgan1d"), beats=x, labels=y,
                             config=LocalTrainingConfig(local_steps=3, batch_size=32, public_dataset_size=300),
                             dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))
    assert result.dp_history == [(1.0, 32 / 300, 3)]  # the accountant's q is the sampler's q
    assert result.sample_rate == 32 / 300
    assert seen["expected_batch_size"] == 32  # q * N' = batch size, whatever len(x) is


def test_public_size_below_the_batch_is_refused():
    from medgan_core.errors import ConfigError

    with pytest.raises(ConfigError, match="public_dataset_size"):
        LocalTrainingConfig(batch_size=64, public_dataset_size=10)


@pytest.mark.parametrize("patient_level,local_steps,n_d,generator_steps",
                         [(False, 9, 3, 3), (True, 9, 3, 3), (False, 10, 3, 4), (False, 2, 5, 1)])
def test_several_discriminator_steps_per_generator_step_are_charged_as_discriminator_steps(
        monkeypatch, patient_level, local_steps, n_d, generator_steps):
    from medgan_core.training import patient_dp, steps
    from medgan_core.training.patient_dp import PatientDPSettings

    x, y = _data()
    calls = []
    original = steps.generator_step

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(dp_gan, "_generator_step", counted)
    monkeypatch.setattr(patient_dp.steps, "generator_step", counted)
    config = LocalTrainingConfig(local_steps=local_steps, batch_size=32, discriminator_steps=n_d, seed=0)
    if patient_level:
        dp = PatientDPSettings(noise_multiplier=1.0, public_patient_count=64, expected_patients_per_step=8,
                               records_per_patient=2, grad_sample_mode="hooks")
        result = train_local_gan(gan=create_gan("dcgan1d"), beats=x, labels=y, config=config, dp=dp,
                                 patient_ids=[i // 4 for i in range(len(x))])
        assert result.dp_history == [(1.0, 8 / 64, local_steps)]
    else:
        result = train_local_gan(gan=create_gan("dcgan1d"), beats=x, labels=y, config=config,
                                 dp=DPSettings(noise_multiplier=1.0))
        assert result.dp_history == [(1.0, 32 / 256, local_steps)]
    # The generator steps after every n_D-th discriminator step and after the round's last.
    assert len(calls) == generator_steps
    assert result.g_loss == result.g_loss  # not NaN: its tail is over the generator's own steps


def test_discriminator_steps_below_1_is_refused():
    from medgan_core.errors import ConfigError

    with pytest.raises(ConfigError, match="discriminator_steps"):
        LocalTrainingConfig(local_steps=9, discriminator_steps=0)
