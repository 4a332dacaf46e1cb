"""Privacy math: golden numbers, a closed form, and properties of the noise search."""

import math

import numpy as np
import pytest

from privacy.accounting import (
    ACCOUNTANT,
    OPTIMISTIC_ACCOUNTANTS,
    epsilon_from_history,
    noise_multiplier_for_target,
)


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


def test_gdp_under_reports_against_rdp_golden():
    """Why the ledger is fixed to RDP: GDP's CLT approximation says 2.245 where RDP says 2.873."""
    history = [(1.0, 0.015, 800)]
    assert epsilon_from_history(history, delta=1e-5) == pytest.approx(2.8729297429452045, abs=1e-9)
    assert epsilon_from_history(history, delta=1e-5, accountant="gdp") == pytest.approx(2.245112432412941, abs=1e-9)
    assert ACCOUNTANT == "rdp" and set(OPTIMISTIC_ACCOUNTANTS) == {"gdp", "prv"}


@pytest.mark.parametrize("entry", [
    (math.nan, 0.02, 10),  # hung Opacus's RDP series forever
    (math.inf, 0.02, 10), (-1.0, 0.02, 10), (0.0, 0.02, 10), (1e-300, 0.5, 1), (1e300, 0.5, 1),
    (1.0, math.nan, 10), (1.0, 0.0, 10), (1.0, 1.0001, 10), (1.0, -0.5, 10),
    (1.0, 0.02, -100000),  # gave epsilon -2751111
    (1.0, 0.02, 0), (1.0, 0.02, 10.0), (1.0, 0.02, True), ("1.0", 0.02, 10), (1.0, 0.02),
])
def test_invalid_history_raises_at_once(entry):
    with pytest.raises(ValueError, match=r"history\[0\]"):
        epsilon_from_history([entry], delta=1e-5)


@pytest.mark.parametrize("delta", [math.nan, math.inf, 0.0, 1.0, -1e-5, 2.0])
def test_invalid_delta_raises(delta):
    with pytest.raises(ValueError, match="delta"):
        epsilon_from_history([(1.0, 0.02, 10)], delta=delta)


def test_unknown_accountant_raises():
    with pytest.raises(ValueError, match="unknown accountant"):
        epsilon_from_history([(1.0, 0.02, 10)], delta=1e-5, accountant="moments")


def test_epsilon_is_never_negative():
    """A large delta makes Opacus's RDP conversion negative; 0 is still a valid bound."""
    assert epsilon_from_history([(1.0, 0.02, 100)], delta=0.999999) == 0.0


@pytest.mark.parametrize("overrides, message", [
    ({"target_epsilon": math.nan}, "target_epsilon"), ({"target_epsilon": math.inf}, "target_epsilon"),
    ({"target_epsilon": 0.0}, "target_epsilon"), ({"target_epsilon": -1.0}, "target_epsilon"),
    ({"delta": math.nan}, "delta"), ({"delta": 0.0}, "delta"),
    ({"sample_rate": math.nan}, "sample_rate"), ({"sample_rate": 0.0}, "sample_rate"),
    ({"sample_rate": 1.5}, "sample_rate"), ({"steps": 0}, "steps"), ({"steps": -5}, "steps"),
    ({"history": [(math.nan, 0.02, 10)]}, "noise_multiplier"), ({"history": [(1.0, 0.02, -10)]}, "steps"),
    ({"tolerance": 0.0}, "tolerance"),  # would bisect forever
    ({"tolerance": math.nan}, "tolerance"),
])
def test_noise_search_rejects_invalid_inputs_before_searching(overrides, message):
    arguments = {"target_epsilon": 3.0, "delta": 1e-5, "sample_rate": 0.02, "steps": 100, **overrides}
    with pytest.raises(ValueError, match=message):
        noise_multiplier_for_target(**arguments)
