"""The fused DP step is Opacus's DP-SGD step, computed differently.

Compared with Opacus's own optimizer (per-sample gradients from its hooks, clipping,
noise from the same generator, averaging over the expected batch size) on every
discriminator family, and checked for the property the privacy proof needs: one sample
moves the clipped sum by at most C.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from medgan_core.errors import ConfigError
from medgan_core.models.registry import create_gan
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan
from medgan_core.training.fused_dp import FusedDPGradients, supports_fused
from medgan_core.training.steps import adversarial_loss

CASES = [("dcgan1d", {}, (1, 128)), ("wgan1d", {}, (1, 128)), ("mlp1d", {}, (1, 128)),
         ("bilstm_dcgan1d", {}, (1, 128)), ("dcgan2d", {"image_size": 32}, (1, 32, 32)),
         ("wgan2d", {"image_size": 32}, (1, 32, 32)), ("mlp2d", {"image_size": 32}, (1, 32, 32))]


def _batch(shape: tuple[int, ...], n: int = 48, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, *shape, generator=g), torch.randint(0, 2, (n,), generator=g),
            (torch.rand(n, generator=g) > 0.5).float())


def _opacus_grads(module: nn.Module, loss_kind: str, x, y, t, *, sigma: float, clip: float, ebs: int, seed: int):
    gsm = GradSampleModule(copy.deepcopy(module))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.1), noise_multiplier=sigma,
                                max_grad_norm=clip, expected_batch_size=ebs,
                                generator=torch.Generator().manual_seed(seed))
        adversarial_loss(loss_kind)(gsm(x, y), t).backward()
        optimizer.pre_step()
    return [p.grad.clone() for p in gsm.parameters()]


def _fused_grads(module: nn.Module, loss_kind: str, x, y, t, *, sigma: float, clip: float, ebs: int, seed: int):
    module = copy.deepcopy(module)
    fused = FusedDPGradients(module, noise_multiplier=sigma, max_grad_norm=clip, expected_batch_size=ebs,
                             noise_generator=torch.Generator().manual_seed(seed))
    with fused.capture():
        scores = module(x, y)
    fused.backward(adversarial_loss(loss_kind, reduction="none")(scores, t))
    fused.close()
    return [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("name,kwargs,shape", CASES)
@pytest.mark.parametrize("sigma", [0.0, 0.8])
def test_fused_step_equals_opacus(name, kwargs, shape, sigma):
    torch.manual_seed(0)
    gan = create_gan(name, **kwargs)
    x, y, t = _batch(shape)
    # Some samples clipped, some not: a clip norm near the median per-sample norm.
    args = dict(sigma=sigma, clip=0.5, ebs=24, seed=11)
    expected = _opacus_grads(gan.discriminator, gan.loss, x, y, t, **args)
    got = _fused_grads(gan.discriminator, gan.loss, x, y, t, **args)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,kwargs,shape", CASES[:1] + CASES[4:5])
def test_one_sample_moves_the_clipped_sum_by_at_most_c(name, kwargs, shape):
    torch.manual_seed(0)
    gan = create_gan(name, **kwargs)
    x, y, t = _batch(shape, n=17)
    clip = 0.3
    with_all = _fused_grads(gan.discriminator, gan.loss, x, y, t, sigma=0.0, clip=clip, ebs=1, seed=0)
    without = _fused_grads(gan.discriminator, gan.loss, x[1:], y[1:], t[1:], sigma=0.0, clip=clip, ebs=1, seed=0)
    moved = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(with_all, without)))
    assert 0.0 < float(moved) <= clip * (1 + 1e-4)


def test_local_training_matches_opacus_hooks():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 1, 128, generator=g).clamp(-1, 1)
    y = (torch.rand(300, generator=g) < 0.3).long()
    runs = {}
    for mode in ("hooks", "fused"):
        torch.manual_seed(0)
        gan = create_gan("dcgan1d")
        result = train_local_gan(gan=gan, beats=x, labels=y, dp=DPSettings(noise_multiplier=1.0, grad_sample_mode=mode),
                                 config=LocalTrainingConfig(local_steps=3, batch_size=32, seed=3))
        runs[mode] = (gan, result)
    (hooks_gan, hooks), (fused_gan, fused) = runs["hooks"], runs["fused"]
    assert fused.dp_history == hooks.dp_history  # same accounting
    assert fused.d_loss == pytest.approx(hooks.d_loss, rel=1e-5)
    for a, b in zip(hooks_gan.discriminator.state_dict().values(), fused_gan.discriminator.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    # The discriminator is a plain module again: no hooks left behind.
    assert not fused_gan.discriminator.features[0]._forward_hooks


def test_unsupported_layers_are_refused_with_the_fix():
    module = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 1))
    assert not supports_fused(module)
    with pytest.raises(ConfigError, match="LayerNorm.*grad-sample-mode='hooks'"):
        FusedDPGradients(module, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4, noise_generator=None)


def test_batch_statistics_are_refused_even_without_parameters():
    # BatchNorm mixes a batch's samples: per-sample clipping would not bound one record.
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False), nn.Linear(4, 1))
    assert not supports_fused(module)
    with pytest.raises(ConfigError, match="BatchNorm1d: batch statistics mix samples"):
        FusedDPGradients(module, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4, noise_generator=None)
