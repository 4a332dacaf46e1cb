"""dcgan1d_smooth: nearest upsampling + GroupNorm, replicate padding and a fixed low-pass
on the generator's output; the discriminator (what DP-SGD trains) is dcgan1d's."""

import math

import pytest
import torch

from medgan_core.models.ecg import LowPass1d
from medgan_core.models.registry import create_gan, gan_spec


def _tone(cycles_per_sample: float, length: int = 512) -> torch.Tensor:
    return torch.sin(2 * math.pi * cycles_per_sample * torch.arange(length, dtype=torch.float32)).view(1, 1, -1)


def test_low_pass_keeps_a_beats_band_and_removes_jitter():
    lowpass = LowPass1d(0.45)  # of Nyquist: 40.5 Hz at the ECG model rate of 180 Hz
    gain = {f: float(lowpass(_tone(f))[..., 50:-50].std() / _tone(f)[..., 50:-50].std()) for f in (0.05, 0.1, 0.4)}
    assert gain[0.05] == pytest.approx(1.0, abs=0.01)  # 9 Hz: P/T waves, the QRS's main energy
    assert gain[0.1] == pytest.approx(1.0, abs=0.02)  # 18 Hz
    assert gain[0.4] < 0.01  # 72 Hz: jitter no beat has
    constant = torch.full((2, 1, 64), 0.3)
    assert torch.allclose(lowpass(constant), constant, atol=1e-6)  # unit DC gain, no edge effect


def test_low_pass_is_a_fixed_buffer_not_a_parameter():
    lowpass = LowPass1d(0.45, channels=3)
    assert list(lowpass.parameters()) == []
    assert "kernel" in lowpass.state_dict()
    assert lowpass(torch.randn(4, 3, 128)).shape == (4, 3, 128)
    with pytest.raises(ValueError, match="cutoff"):
        LowPass1d(1.2)


def test_smooth_generator_has_no_batch_statistics_and_the_plain_discriminator():
    torch.manual_seed(0)
    smooth, plain = create_gan("dcgan1d_smooth"), create_gan("dcgan1d")
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in smooth.generator.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in smooth.generator.modules())
    assert [k for k in smooth.discriminator.state_dict()] == [k for k in plain.discriminator.state_dict()]
    assert gan_spec("dcgan1d_smooth").touches_real_data == ("discriminator",)
    smooth.generator.eval()
    with torch.no_grad():
        beats = smooth.generator(torch.randn(64, smooth.latent_dim), torch.arange(2).repeat(32))
    assert beats.shape == (64, 1, 128) and beats.abs().max() < 1
    # The output's first difference is small next to the beat itself: no sample-to-sample jitter.
    first_difference = beats.diff(dim=-1).pow(2).mean().sqrt()
    assert first_difference < 0.5 * beats.std()
