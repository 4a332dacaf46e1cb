"""Privacy math: golden numbers, a closed form, and properties of the noise search."""

import math

import numpy as np
import pytest

from privacy.accounting import epsilon_from_history, noise_multiplier_for_target


def _gaussian_epsilon_by_hand(sigma: float, steps: int, delta: float) -> float:
    """Full-batch Gaussian mechanism (q = 1): RDP(a) = steps * a / (2 sigma^2), converted
    with Balle et al. (2020), the conversion Opacus uses, minimised over Opacus's orders."""
    orders = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=float)
    rdp = steps * orders / (2 * sigma**2)
    eps = rdp - (math.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    return float(eps.min())


def test_full_batch_gaussian_matches_closed_form():
    assert epsilon_from_history([(2.0, 1.0, 10)], delta=1e-5) == pytest.approx(
        _gaussian_epsilon_by_hand(2.0, 10, 1e-5), rel=1e-9)


@pytest.mark.parametrize(
    ("history", "delta", "golden"),
    [
        # Abadi et al. MNIST setting: q = 256/60000, sigma = 1.1, 60 epochs.
        ([(1.1, 256 / 60000, 60 * 235)], 1e-5, 2.6003429386103023),
        ([(1.0, 0.01, 1000)], 1e-5, 2.1013652716430564),
        ([(2.0, 1.0, 10)], 1e-5, 8.079406222420491),
    ],
)
def test_golden_epsilons(history, delta, golden):
    assert epsilon_from_history(history, delta=delta) == pytest.approx(golden, abs=1e-6)


def test_empty_history_spends_nothing():
    assert epsilon_from_history([], delta=1e-5) == 0.0


def test_composition_across_rounds_equals_one_long_run():
    rounds = [(0.8, 0.015, 200)] * 5
    assert epsilon_from_history(rounds, delta=1e-5) == pytest.approx(
        epsilon_from_history([(0.8, 0.015, 1000)], delta=1e-5), rel=1e-9)


def test_epsilon_grows_monotonically_with_steps():
    values = [epsilon_from_history([(0.9, 0.02, n)], delta=1e-5) for n in (10, 100, 500, 1000, 5000)]
    assert all(a < b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("target", [1.0, 3.0, 10.0])
def test_derived_noise_never_overshoots_and_is_tight(target):
    sigma = noise_multiplier_for_target(target_epsilon=target, delta=1e-5, sample_rate=0.016, steps=1000)
    assert epsilon_from_history([(sigma, 0.016, 1000)], delta=1e-5) <= target
    # A little less noise would overshoot: the search is not wastefully conservative.
    assert epsilon_from_history([(sigma - 0.01, 0.016, 1000)], delta=1e-5) > target


def test_noise_accounts_for_what_was_already_spent():
    history = [(0.7, 0.016, 400)]
    sigma = noise_multiplier_for_target(target_epsilon=10.0, delta=1e-5, sample_rate=0.016, steps=600,
                                        history=history)
    total = epsilon_from_history([*history, (sigma, 0.016, 600)], delta=1e-5)
    assert total <= 10.0
    assert total > 9.9


def test_spent_budget_cannot_buy_more_steps():
    with pytest.raises(ValueError, match="already spent"):
        noise_multiplier_for_target(target_epsilon=1.0, delta=1e-5, sample_rate=0.05, steps=10,
                                    history=[(0.5, 0.05, 5000)])
