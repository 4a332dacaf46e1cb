"""LOGAN white-box attack (Hayes et al., "LOGAN: Membership inference attacks against
generative models", PoPETs 2019).

An overfitted discriminator assigns higher "real" confidence to records it was trained
on, so its output on a candidate is the membership score. Any monotone transform of the
output (logit or sigmoid probability) gives the same ranking, hence the same AUC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from privacy.audit.base import MembershipAttack, check_scores

if TYPE_CHECKING:
    from torch import nn

__all__ = ["LoganAttack", "torch_discriminator_score"]

DiscriminatorScore = Callable[[np.ndarray], np.ndarray]


class LoganAttack(MembershipAttack):
    """Score = the discriminator's output on the candidate.

    Args:
        discriminator_score: maps a batch of records ``(N, ...)`` to ``(N,)`` "real"
            scores; see :func:`torch_discriminator_score` to wrap a torch module.
    """

    inputs = ("discriminator_score",)

    def __init__(self, *, discriminator_score: DiscriminatorScore) -> None:
        if not callable(discriminator_score):
            raise ValueError("discriminator_score must be a callable (N, ...) -> (N,)")
        self._discriminator_score = discriminator_score

    def score(self, candidates: np.ndarray) -> np.ndarray:
        candidates = np.asarray(candidates)
        if candidates.ndim < 1 or candidates.shape[0] == 0:
            raise ValueError(f"candidates must be a non-empty batch (N, ...), got {candidates.shape}")
        raw = self._discriminator_score(candidates)
        return check_scores(raw, num_candidates=candidates.shape[0], source="discriminator_score")


def torch_discriminator_score(
    discriminator: nn.Module,
    *,
    labels: np.ndarray | None = None,
    batch_size: int = 256,
    add_channel_dim: bool = True,
) -> DiscriminatorScore:
    """Wrap a torch discriminator as a ``discriminator_score`` callable for :class:`LoganAttack`.

    Args:
        discriminator: module mapping ``(B, C, ...)`` (and class labels ``(B,)`` when it is
            conditional) to ``(B,)`` or ``(B, 1)`` logits.
        labels: class label per candidate for a conditional discriminator, aligned with
            the candidates later passed to the callable; ``None`` for unconditional ones.
        batch_size: candidates per forward pass, to bound memory.
        add_channel_dim: insert the channel axis, ``(N, L) -> (N, 1, L)`` for ECG and
            ``(N, H, W) -> (N, 1, H, W)`` for X-rays.

    Returns:
        A callable ``(N, ...) -> (N,)`` returning float64 logits.

    Raises:
        ValueError: if ``batch_size`` is not positive.
    """
    # torch is imported here, not at module level, so that array-only audits (GAN-Leaks,
    # DOMIAS, the epsilon lower bound) do not pay for importing it.
    import torch

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    def score_fn(candidates: np.ndarray) -> np.ndarray:
        if labels is not None and len(labels) != len(candidates):
            raise ValueError(
                f"got {len(candidates)} candidates but {len(labels)} labels; the labels "
                "must be aligned with the candidates being scored"
            )
        params = list(discriminator.parameters())
        device = params[0].device if params else torch.device("cpu")
        outputs = []
        # no_grad: scoring must not touch per-sample gradients (Opacus hooks skip
        # activation capture when grad is disabled) nor change the module's train mode.
        with torch.no_grad():
            for start in range(0, len(candidates), batch_size):
                x = torch.as_tensor(candidates[start : start + batch_size], dtype=torch.float32)
                x = x.unsqueeze(1).to(device) if add_channel_dim else x.to(device)  # (B, 1, ...)
                if labels is None:
                    out = discriminator(x)
                else:
                    y = torch.as_tensor(labels[start : start + batch_size], dtype=torch.long)
                    out = discriminator(x, y.to(device))
                outputs.append(out.reshape(len(x), -1)[:, 0].double().cpu().numpy())  # (B,)
        return np.concatenate(outputs)

    return score_fn
