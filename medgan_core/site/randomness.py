"""Where a site's DP randomness and noise level come from: secret, and budget-derived."""

from __future__ import annotations

import secrets

import torch

from medgan_core.config import RunConfig
from privacy.accounting import noise_multiplier_for_target
from privacy.ledger import PrivacyBudgetExceeded, PrivacyLedger

__all__ = ["derive_noise", "secret_generator"]


def secret_generator() -> torch.Generator:
    """A generator seeded from the OS's CSPRNG, anew at every call."""
    # DP noise must not be predictable from anything the coordinator knows.
    return torch.Generator().manual_seed(secrets.randbits(63))


def derive_noise(ledger: PrivacyLedger, *, run: RunConfig, server_round: int, sample_rate: float,
                 local_steps: int) -> float:
    """Noise so that the planned remaining rounds end at (not above) the site's budget."""
    remaining_rounds = max(1, run.num_server_rounds - server_round + 1)
    try:
        return noise_multiplier_for_target(
            target_epsilon=ledger.target_epsilon, delta=ledger.target_delta, sample_rate=sample_rate,
            steps=remaining_rounds * local_steps, history=ledger.history,
        )
    except ValueError as exc:
        raise PrivacyBudgetExceeded(f"site budget epsilon={ledger.target_epsilon:g} is spent: {exc}") from exc
