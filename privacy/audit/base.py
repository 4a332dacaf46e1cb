"""The contract every membership-inference attack follows, and array helpers they share.

Attacks see records as plain arrays so that one implementation serves both modalities:
ECG beats arrive as ``(N, L)`` (or ``(N, 1, L)``), chest X-rays as ``(N, H, W)`` (or
``(N, 1, H, W)``). Distance- and density-based attacks flatten each record to a vector.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

__all__ = ["ATTACK_INPUTS", "MembershipAttack", "as_flat_samples", "check_scores", "record_shape"]

#: What an audit can build an attack from (keyword arguments of the attack's constructor):
#: samples of the audited generator, real records disjoint from the candidates, samples of a
#: reference generator trained without the candidates, and the audited discriminator's score.
ATTACK_INPUTS: tuple[str, ...] = ("synthetic", "reference", "reference_synthetic", "discriminator_score")


class MembershipAttack(ABC):
    """A membership-inference attack: one score per candidate record.

    Subclasses take everything they need (synthetic samples, a discriminator, a reference
    set) in their constructor, so that :meth:`score` is a pure function of the candidates
    and an audit can compare attacks on exactly the same candidate set.

    Class attributes:
        inputs: The :data:`ATTACK_INPUTS` the constructor takes; an audit passes exactly
            these, and builds the costly ones (a reference generator) only when a chosen
            attack names them.
    """

    inputs: ClassVar[tuple[str, ...]] = ("synthetic",)

    @abstractmethod
    def score(self, candidates: np.ndarray) -> np.ndarray:
        """Score each candidate; higher means "more likely a training member".

        Args:
            candidates: records of shape ``(N, ...)`` with the same per-record shape as
                the data the attack was built with.

        Returns:
            Finite float64 scores of shape ``(N,)``.

        Raises:
            ValueError: if the candidates are malformed or their shape does not match.
        """


def record_shape(x: np.ndarray) -> tuple[int, ...]:
    """Per-record shape of a batch without size-1 axes: ``(N, 1, L)`` and ``(N, L)`` agree."""
    return tuple(d for d in np.shape(x)[1:] if d != 1)


def as_flat_samples(x: np.ndarray, *, name: str, like: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as a finite float64 matrix ``(N, D)``, one flattened record per row.

    Args:
        x: a batch of records, shape ``(N, ...)`` with at least one per-record axis.
        name: what ``x`` is, used in error messages.
        like: if given, the required :func:`record_shape`; comparing shapes rather than
            flattened sizes catches an ``(N, 64)`` beat passed where ``(N, 8, 8)`` images
            are expected.

    Returns:
        The records as a ``(N, D)`` float64 array (a copy only when needed).

    Raises:
        ValueError: if ``x`` is empty, not batched, non-finite, or of the wrong size.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must be a batch of records with shape (N, ...), got shape {arr.shape}; "
            "add a leading batch axis, e.g. x[None]"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one record")
    if like is not None and record_shape(arr) != like:
        raise ValueError(
            f"{name} records have shape {record_shape(arr)} (batch shape {arr.shape}) but the "
            f"attack was built with records of shape {like}; pass records of the same modality"
        )
    flat = arr.reshape(arr.shape[0], -1)
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"{name} contains NaN or infinite values; clean or drop those records")
    return flat


def check_scores(scores: np.ndarray, *, num_candidates: int, source: str) -> np.ndarray:
    """Validate attack scores: one finite value per candidate.

    Args:
        scores: raw scores, shape ``(N,)`` or ``(N, 1)``.
        num_candidates: ``N``, the number of candidates that were scored.
        source: who produced the scores, used in error messages.

    Returns:
        The scores as a float64 vector ``(N,)``.

    Raises:
        ValueError: if the count is wrong or any score is NaN or infinite.
    """
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (num_candidates,):
        raise ValueError(
            f"{source} returned scores of shape {arr.shape}; expected ({num_candidates},), "
            "one score per candidate"
        )
    if not np.all(np.isfinite(arr)):
        # A NaN score would silently sort to one end and bias AUC and the epsilon audit.
        raise ValueError(f"{source} returned NaN or infinite scores; check its inputs")
    return arr
