"""Attributions of one model output to the input samples, with captum: SHAP, LRP, LIME.

Every method takes a model whose forward maps ``(B, C, ...)`` samples to ``(B, K)`` scores
and a ``target`` index into ``K``, and returns an array of the inputs' shape. A
conditional discriminator ``D(x, y)`` is first turned into such a model for one class
with :func:`fold_discriminator`, which is exact, not an approximation.

LRP needs a propagation rule per layer; captum 0.9 ships default rules for ``Conv2d``,
``Linear``, pooling and ``BatchNorm2d`` and passes relevance through ``ReLU``, ``Tanh`` and
``Dropout``, but has none for ``Conv1d``, ``LeakyReLU`` or ``Flatten`` (the ECG
discriminator's layers) and none for ``Embedding`` (its class projection). :func:`lrp`
sets them explicitly on a copy of the model (see :func:`_attach_lrp_rules`), and the
embedding disappears in :func:`fold_discriminator`. Layers with batch or group statistics
(``BatchNorm1d``, ``GroupNorm``) are refused: none of the explained models has them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import LRP, GradientShap, Lime
from captum.attr._utils.lrp_rules import EpsilonRule, GammaRule
from torch import nn

__all__ = ["ATTRIBUTION_METHODS", "attribute", "block_feature_mask", "fold_discriminator", "gradient_shap",
           "lime", "lrp"]

#: Layers that are linear maps of their input (relevance is split by contribution)...
_LINEAR_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AvgPool1d,
                  nn.AvgPool2d)
#: ...and elementwise, positively homogeneous ones (f(x) = f'(x) x): with the epsilon rule
#: relevance passes through them unchanged, as captum does for ReLU. Flatten only reshapes.
_PASS_THROUGH_LAYERS = (nn.LeakyReLU, nn.Flatten, nn.Identity)


def fold_discriminator(discriminator: nn.Module, label: int) -> nn.Sequential:
    """The projection discriminator ``D(x, y) = head(h) + <embed(y), h>``, ``h = features(x)``,
    as a plain ``(B, C, ...) -> (B, 1)`` network for the fixed class ``label``.

    For a fixed ``y`` the class projection is a linear term in ``h``, so it folds into the
    head: ``head'(h) = (w + embed(y)) . h + b``. The result equals ``D(x, label)`` exactly and
    is an ``nn.Sequential`` of ordinary layers, which LRP can walk.

    Raises:
        ValueError: the module lacks ``features``, ``head`` (``nn.Linear`` with one output)
            or ``class_projection``, or ``label`` is not one of its classes.
    """
    features = getattr(discriminator, "features", None)
    head = getattr(discriminator, "head", None)
    projection = getattr(discriminator, "class_projection", None)
    if not (isinstance(features, nn.Module) and isinstance(head, nn.Linear) and head.out_features == 1
            and isinstance(projection, nn.Embedding)):
        raise ValueError(f"{type(discriminator).__name__}: not a projection discriminator (features, a one-output "
                         "Linear head and a class_projection Embedding); explain the TSTR classifier instead")
    if not 0 <= label < projection.num_embeddings:
        raise ValueError(f"label {label}: the discriminator has classes 0..{projection.num_embeddings - 1}")
    folded = nn.Linear(head.in_features, 1)
    with torch.no_grad():
        folded.weight.copy_(head.weight + projection.weight[label])
        folded.bias.copy_(head.bias)
    return nn.Sequential(copy.deepcopy(features), folded).eval()


def gradient_shap(model: nn.Module, inputs: torch.Tensor, *, target: int, baselines: torch.Tensor | None = None,
                  n_samples: int = 32, stdevs: float = 0.05, seed: int = 0) -> np.ndarray:
    """GradientShap (expected gradients): SHAP values approximated by gradients at random
    points between each input and baselines drawn from ``baselines`` (default: zeros).

    Args:
        model: ``(B, C, ...) -> (B, K)`` scores.
        inputs: ``(B, C, ...)`` samples.
        target: Index of the explained score.
        baselines: ``(M, C, ...)`` reference samples; zeros (flat line, mid-grey) if ``None``.
        n_samples: Random points per input.
        stdevs: Std of the Gaussian noise added to the inputs at each point.
        seed: Seeds the random points.

    Returns:
        ``(B, C, ...)`` attributions; per input they sum to about ``f(x) - E[f(baseline)]``.
    """
    torch.manual_seed(seed)
    reference = torch.zeros_like(inputs[:1]) if baselines is None else baselines
    explainer = GradientShap(model.eval())
    result = explainer.attribute(inputs, baselines=reference, target=target, n_samples=n_samples, stdevs=stdevs)
    return result.detach().numpy()


def lrp(model: nn.Module, inputs: torch.Tensor, *, target: int, epsilon: float = 1e-6, gamma: float = 0.25,
        baselines: torch.Tensor | None = None, seed: int = 0) -> np.ndarray:
    """Layer-wise relevance propagation (Bach et al. 2015) of ``model``'s score ``target``.

    Rules (Montavon et al. 2019, "Layer-wise relevance propagation: an overview"): the
    gamma rule on the first weighted layer (favours positive contributions, less noisy
    near the input), the epsilon rule on every other linear layer, relevance passed through
    activations and reshapes. With a small epsilon and no gamma this equals gradient x input
    on these piecewise-linear networks; the gamma rule is what makes it differ.

    ``baselines`` and ``seed`` are accepted for a common signature and unused: LRP is
    deterministic and explains the score itself, not a difference to a reference.

    Raises:
        ValueError: a layer without an LRP rule here (e.g. BatchNorm1d, GroupNorm, Embedding).
    """
    copied = _attach_lrp_rules(copy.deepcopy(model).eval(), epsilon=epsilon, gamma=gamma)
    result = LRP(copied).attribute(inputs.clone().requires_grad_(True), target=target)
    return result.detach().numpy()


def _attach_lrp_rules(model: nn.Module, *, epsilon: float, gamma: float) -> nn.Module:
    leaves = [m for m in model.modules() if not list(m.children())]
    first_weighted = next((m for m in leaves if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))), None)
    for layer in leaves:
        if layer is first_weighted and gamma > 0:
            layer.rule = GammaRule(gamma=gamma)  # type: ignore[assignment]
        elif isinstance(layer, _LINEAR_LAYERS):
            layer.rule = EpsilonRule(epsilon=epsilon)  # type: ignore[assignment]
        elif isinstance(layer, _PASS_THROUGH_LAYERS):
            # The epsilon rule on f with f(x) = f'(x) x passes relevance through unchanged.
            layer.rule = EpsilonRule(epsilon=1e-9)  # type: ignore[assignment]
        elif not isinstance(layer, (nn.ReLU, nn.Tanh, nn.Dropout)):  # captum's own pass-through layers
            raise ValueError(f"LRP: no propagation rule for {type(layer).__name__} ({layer}); the explained "
                             "models use Conv, Linear, pooling, (Leaky)ReLU and Flatten only")
    return model


def block_feature_mask(sample_shape: tuple[int, ...], *, block: int) -> torch.Tensor:
    """LIME's interpretable features: contiguous blocks of ``block`` samples along every
    spatial axis (windows of a beat, square patches of an image), shared by all channels.

    Args:
        sample_shape: ``(C, L)`` or ``(C, H, W)``.
        block: Side of a block in samples or pixels.

    Returns:
        ``(1, C, ...)`` long tensor of feature ids ``0..F-1``, row-major over the blocks.
    """
    if block < 1:
        raise ValueError(f"block={block}: must be at least 1 sample")
    spatial = sample_shape[1:]
    grid = [int(np.ceil(size / block)) for size in spatial]
    axes = np.meshgrid(*[np.arange(size) // block for size in spatial], indexing="ij")
    ids = np.ravel_multi_index(tuple(axes), grid) if axes else np.zeros((), dtype=np.int64)
    mask = np.broadcast_to(ids, sample_shape)[None]
    return torch.from_numpy(np.array(mask, dtype=np.int64))


def lime(model: nn.Module, inputs: torch.Tensor, *, target: int, block: int = 8, n_samples: int = 200,
         baselines: torch.Tensor | None = None, seed: int = 0) -> np.ndarray:
    """LIME (Ribeiro et al. 2016): per input, a ridge regression of the score on which
    blocks (:func:`block_feature_mask`) are kept; a removed block takes the baseline's
    values (default zeros: the isoelectric line for a beat, mid-grey for an image).

    Returns:
        ``(B, C, ...)``: every position holds its block's coefficient.
    """
    torch.manual_seed(seed)
    mask = block_feature_mask(tuple(inputs.shape[1:]), block=block)
    explainer = Lime(model.eval(), interpretable_model=SkLearnRidge(alpha=1.0))
    reference = 0.0 if baselines is None else baselines.mean(0, keepdim=True)
    rows = []
    for sample in inputs:  # LIME fits one surrogate per input
        rows.append(explainer.attribute(sample[None], target=target, feature_mask=mask, baselines=reference,
                                        n_samples=n_samples, perturbations_per_eval=min(n_samples, 100)))
    return torch.cat(rows).detach().numpy()


#: Method name -> attribution function (``model, inputs, *, target, baselines=..., seed=...``).
ATTRIBUTION_METHODS: dict[str, Callable[..., np.ndarray]] = {"shap": gradient_shap, "lrp": lrp, "lime": lime}


def attribute(method: str, model: nn.Module, inputs: torch.Tensor, *, target: int,
              baselines: torch.Tensor | None = None, seed: int = 0) -> np.ndarray:
    """Attributions by the named method (``shap``, ``lrp`` or ``lime``).

    Raises:
        ValueError: an unknown method; the message lists the known ones.
    """
    try:
        function = ATTRIBUTION_METHODS[method]
    except KeyError:
        raise ValueError(f"unknown attribution method {method!r}; use one of {', '.join(ATTRIBUTION_METHODS)}") from None
    return function(model, inputs, target=target, baselines=baselines, seed=seed)
