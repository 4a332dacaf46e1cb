"""The Conv1d per-sample gradient sampler against per-sample autograd and Opacus's own."""

from __future__ import annotations

import pytest
import torch
from opacus import GradSampleModule
from opacus.grad_sample.conv import compute_conv_grad_sample
from torch import nn

from medgan_core.training.grad_samplers import compute_conv1d_grad_sample


@pytest.mark.parametrize("in_ch,out_ch,kernel,stride,padding,dilation,bias", [
    (1, 8, 7, 2, 3, 1, True), (4, 6, 5, 2, 2, 1, True), (3, 5, 3, 1, 0, 1, False), (2, 4, 3, 3, 4, 2, True),
])
def test_matches_per_sample_autograd(in_ch, out_ch, kernel, stride, padding, dilation, bias):
    torch.manual_seed(0)
    layer = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias)
    inputs = torch.randn(5, in_ch, 40)
    backprops = torch.randn_like(layer(inputs))
    grads = compute_conv1d_grad_sample(layer, [inputs], backprops)
    for n in range(len(inputs)):  # the definition: the gradient of sample n's term alone
        layer.zero_grad()
        (layer(inputs[n:n + 1]) * backprops[n:n + 1]).sum().backward()
        assert torch.allclose(grads[layer.weight][n], layer.weight.grad, atol=1e-5)
        if bias:
            assert torch.allclose(grads[layer.bias][n], layer.bias.grad, atol=1e-5)
    reference = compute_conv_grad_sample(layer, [inputs], backprops)
    assert all(torch.allclose(grads[p], reference[p], atol=1e-5) for p in reference)


def test_registered_for_conv1d_and_used_by_opacus():
    assert GradSampleModule.GRAD_SAMPLERS[nn.Conv1d] is compute_conv1d_grad_sample


def test_grouped_and_same_padded_convolutions_fall_back_to_opacus():
    torch.manual_seed(0)
    for layer in (nn.Conv1d(4, 4, 3, groups=2, padding=1), nn.Conv1d(2, 3, 3, padding="same")):
        inputs = torch.randn(3, layer.in_channels, 20)
        backprops = torch.randn_like(layer(inputs))
        ours = compute_conv1d_grad_sample(layer, [inputs], backprops)
        reference = compute_conv_grad_sample(layer, [inputs], backprops)
        assert all(torch.equal(ours[p], reference[p]) for p in reference)
