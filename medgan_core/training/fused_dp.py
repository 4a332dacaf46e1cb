"""DP-SGD's clip-and-noise for a discriminator, fused into one backward pass ("fused").

What it computes is exactly Opacus's DP-SGD step: every sample's gradient is clipped to
``max_grad_norm`` (C) with Opacus's factor ``min(1, C / (||g_n|| + 1e-6))``, the clipped
gradients are summed, Gaussian noise of standard deviation ``noise_multiplier * C`` is
added to each parameter from the caller's (secret) generator, and the sum is divided by
the public expected batch size. Sensitivity, noise and accounting are unchanged; only
the arithmetic is reorganised (tests compare it with Opacus's ``hooks`` mode).

How it is faster (the "book-keeping" idea of Bu et al., 2023, with their mixed choice of
ghost norms): Opacus's hooks let autograd compute every ordinary weight gradient, then
materialise every per-sample gradient, then clip and sum them in the optimizer. Here
one ``torch.autograd.grad`` asks only for the gradients of each layer's *output*
(autograd then skips the weight-gradient kernels), and from each layer's input
activations and output gradients:

* the per-sample squared norm comes either from the materialised per-sample gradient
  (one batched matmul) or, where that is cheaper, from the "ghost" identity
  ``||B_n^T U_n||^2 = <B_n B_n^T, U_n U_n^T>`` over positions, without materialising it;
* the clipped sum is one ordinary matmul of the clip-scaled output gradients with the
  inputs (or a weighted sum of the materialised per-sample gradients).

Supported layers are those of the project's discriminators: ``Linear`` on (N, F) inputs,
``Conv1d``, ``Conv2d`` (no groups, zero padding) and ``Embedding`` with one index per
sample. The forward pass must treat samples independently, so BatchNorm (batch
statistics) is refused even without parameters. A module with any other parameterised
layer is refused with a clear error;
``grad-sample-mode='hooks'`` (Opacus) covers everything Opacus does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from medgan_core.errors import ConfigError
from medgan_core.training.steps import clip_factors, set_noisy_average

__all__ = ["FusedDPGradients", "supports_fused"]

_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)


def _unsupported(module: nn.Module) -> list[str]:
    found = []
    for name, layer in module.named_modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            # Batch statistics mix the samples of a batch: a record then changes every
            # sample's gradient and per-sample clipping no longer bounds its influence.
            # Refused with or without affine parameters, as Opacus's validator does.
            found.append(f"{name or '<root>'} ({type(layer).__name__}: batch statistics mix samples)")
        elif any(p.requires_grad for p in layer.parameters(recurse=False)) and type(layer) not in _SUPPORTED:
            found.append(f"{name or '<root>'} ({type(layer).__name__})")
        elif isinstance(layer, (nn.Conv1d, nn.Conv2d)) and (
                layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str)):
            found.append(f"{name} ({type(layer).__name__} with groups, string or non-zero padding)")
    return found


def supports_fused(module: nn.Module) -> bool:
    """Whether every trainable layer of ``module`` is one the fused step handles."""
    return not _unsupported(module)


@dataclass
class _Capture:
    layer: nn.Module
    inputs: torch.Tensor
    output: torch.Tensor
    # Filled by the backward pass: the per-sample view the norm and the sum are built from.
    grads: dict[str, torch.Tensor] = field(default_factory=dict)


class FusedDPGradients:
    """Writes DP-SGD's noisy, clipped, averaged gradient into ``p.grad`` of ``module``.

    Usage, one DP step::

        fused = FusedDPGradients(discriminator, noise_multiplier=..., max_grad_norm=...,
                                 expected_batch_size=..., noise_generator=secret_rng)
        with fused.capture():
            scores = discriminator(inputs, labels)
        fused.backward(per_sample_losses)   # (N,): loss of each sample, unreduced
        optimizer.step()

    Raises:
        ConfigError: ``module`` has a trainable layer the fused step does not handle.
    """

    def __init__(self, module: nn.Module, *, noise_multiplier: float, max_grad_norm: float,
                 expected_batch_size: int, noise_generator: torch.Generator | None) -> None:
        unsupported = _unsupported(module)
        if unsupported:
            raise ConfigError(f"grad-sample-mode='fused' does not handle {', '.join(unsupported)}; "
                              "use grad-sample-mode='hooks' (Opacus) for this model")
        self.module = module
        self.noise_multiplier = float(noise_multiplier)
        self.max_grad_norm = float(max_grad_norm)
        self.expected_batch_size = int(expected_batch_size)
        self.noise_generator = noise_generator
        self.layers = [m for m in module.modules() if isinstance(m, _SUPPORTED)
                       and any(p.requires_grad for p in m.parameters(recurse=False))]
        self._captures: list[_Capture] = []
        self._recording = False
        self._handles = [layer.register_forward_hook(self._record) for layer in self.layers]

    def close(self) -> None:
        """Remove the forward hooks (the module is then a plain module again)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _record(self, layer: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if self._recording:
            self._captures.append(_Capture(layer, args[0].detach(), output))

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Record each supported layer's input and output during the forward pass inside."""
        self._captures, self._recording = [], True
        try:
            yield
        finally:
            self._recording = False

    def backward(self, per_sample_loss: torch.Tensor) -> torch.Tensor:
        """Set ``p.grad`` for every trainable parameter; returns the per-sample norms (N,)."""
        captures, self._captures = self._captures, []
        if len({c.layer for c in captures}) != len(captures):
            raise RuntimeError("a layer ran twice in one forward pass; the fused DP step needs each "
                               "layer once per sample (use grad-sample-mode='hooks')")
        batch = per_sample_loss.shape[0]
        output_grads = torch.autograd.grad(per_sample_loss.sum(), [c.output for c in captures],
                                           allow_unused=True)
        squared = per_sample_loss.new_zeros(batch)
        for capture, output_grad in zip(captures, output_grads):
            if output_grad is None:
                output_grad = torch.zeros_like(capture.output)
            squared += _prepare(capture, output_grad.detach())
        norms = squared.sqrt()
        clip = clip_factors(norms, self.max_grad_norm)
        sums: dict[nn.Parameter, torch.Tensor] = {}
        for capture in captures:
            sums.update(_clipped_sum(capture, clip))
        params = [p for p in self.module.parameters() if p.requires_grad]
        # A layer that did not run this step contributes a zero clipped sum (noise only).
        set_noisy_average(params, [sums[p] if p in sums else torch.zeros_like(p) for p in params],
                          std=self.noise_multiplier * self.max_grad_norm, denominator=self.expected_batch_size,
                          generator=self.noise_generator)
        return norms.detach()


def _conv_windows(layer: nn.Conv1d | nn.Conv2d, inputs: torch.Tensor) -> torch.Tensor:
    """(N, T, I*K): each output position's input window, flattened like the weight."""
    if isinstance(layer, nn.Conv1d):
        # The windows of a 1-D convolution are a strided view of the padded input: one
        # copy into (N, T, I, K) instead of im2col plus a transpose.
        (padding,), (kernel,), (stride,), (dilation,) = layer.padding, layer.kernel_size, layer.stride, layer.dilation  # type: ignore[misc]
        span = dilation * (kernel - 1) + 1
        windows = F.pad(inputs, (padding, padding)).unfold(2, span, stride)  # (N, I, T, span), a view
        if dilation > 1:
            windows = windows[..., ::dilation]
        return windows.permute(0, 2, 1, 3).reshape(inputs.shape[0], windows.shape[2], -1)
    columns = F.unfold(inputs, kernel_size=layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                       stride=layer.stride)  # (N, I*K, T)
    return columns.transpose(1, 2)


def _prepare(capture: _Capture, output_grad: torch.Tensor) -> torch.Tensor:
    """This layer's part of each sample's squared gradient norm; stashes what the sum needs."""
    layer, inputs, grads = capture.layer, capture.inputs, capture.grads
    n = output_grad.shape[0]
    if isinstance(layer, nn.Embedding):
        if inputs.dim() != 1:
            raise RuntimeError("the fused DP step handles an Embedding with one index per sample; "
                               "use grad-sample-mode='hooks'")
        grads["backprop"] = output_grad  # (N, D): the gradient of row inputs[n] only
        return output_grad.square().sum(1)
    if isinstance(layer, nn.Linear):
        if inputs.dim() != 2:
            raise RuntimeError("the fused DP step handles Linear on (N, F) inputs; use grad-sample-mode='hooks'")
        grads["backprop"], grads["inputs"] = output_grad, inputs
        squared = output_grad.square().sum(1) * inputs.square().sum(1)
        if layer.bias is not None and layer.bias.requires_grad:
            squared = squared + output_grad.square().sum(1)
        return squared
    # Conv1d / Conv2d: B (N, O, T), U (N, T, I*K); the per-sample weight gradient is B @ U.
    backprop = output_grad.reshape(n, output_grad.shape[1], -1)
    windows = _conv_windows(layer, inputs)
    positions, out_channels, width = windows.shape[1], backprop.shape[1], windows.shape[2]
    grads["backprop"] = backprop
    if positions * (out_channels + width) < out_channels * width:
        # Ghost norm: <B^T B, U U^T> over position pairs, cheaper when positions are few.
        squared = (torch.bmm(backprop.transpose(1, 2), backprop) * torch.bmm(windows, windows.transpose(1, 2))).sum((1, 2))
        grads["output_grad"] = output_grad
    else:
        per_sample = torch.bmm(backprop, windows)  # (N, O, I*K)
        squared = per_sample.square().sum((1, 2))
        grads["per_sample"] = per_sample
    if layer.bias is not None and layer.bias.requires_grad:
        bias = backprop.sum(2)
        grads["bias"] = bias
        squared = squared + bias.square().sum(1)
    return squared


def _clipped_sum(capture: _Capture, clip: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    layer, inputs, grads = capture.layer, capture.inputs, capture.grads
    sums: dict[nn.Parameter, torch.Tensor] = {}
    if isinstance(layer, nn.Embedding):
        scaled = grads["backprop"] * clip[:, None]
        sums[layer.weight] = torch.zeros_like(layer.weight).index_add_(0, inputs, scaled.to(layer.weight.dtype))
        return sums
    if isinstance(layer, nn.Linear):
        scaled = grads["backprop"] * clip[:, None]  # (N, O)
        if layer.weight.requires_grad:
            sums[layer.weight] = scaled.t() @ grads["inputs"]
        if layer.bias is not None and layer.bias.requires_grad:
            sums[layer.bias] = scaled.sum(0)
        return sums
    weight_shape = layer.weight.shape
    assert isinstance(layer, (nn.Conv1d, nn.Conv2d))
    if layer.weight.requires_grad:
        if "per_sample" in grads:
            summed = torch.einsum("n,noj->oj", clip, grads["per_sample"])
            sums[layer.weight] = summed.reshape(weight_shape)
        else:
            # The clipped sum is the ordinary weight gradient for clip-scaled output
            # gradients: torch's own convolution weight-gradient kernel computes it.
            scaled = grads["output_grad"] * clip.view(-1, *([1] * (grads["output_grad"].dim() - 1)))
            weight_grad = torch.nn.grad.conv1d_weight if isinstance(layer, nn.Conv1d) else torch.nn.grad.conv2d_weight
            sums[layer.weight] = weight_grad(inputs, weight_shape, scaled, stride=layer.stride,
                                             padding=layer.padding, dilation=layer.dilation, groups=1)
    if layer.bias is not None and layer.bias.requires_grad:
        sums[layer.bias] = clip @ grads["bias"]
    return sums
