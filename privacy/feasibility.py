"""Can a site train with patient-level DP at all? The noise a target (epsilon, delta) needs.

With patient-level (user-level) DP-SGD (``medgan_core.training.patient_dp``) each step
samples patients at rate ``q = m / P`` (``m`` expected patients per step, ``P`` patients
at the site), clips each sampled patient's combined gradient to ``C``, adds
``N(0, sigma^2 C^2)`` and divides by ``m``. The clipped signal of one step is at most
``m * C`` (every sampled patient's clipped gradient pointing the same way); the noise has
std ``sigma * C`` along every direction. Their ratio,

    noise_to_signal = sigma / m,

is the *effective noise* of DP-SGD: the std of the noise on the averaged update in units
of ``C`` (in DP-FedAvg, McMahan et al. 2018, the noise on the average update is
``z S / (q W)``, i.e. ``sigma / m`` in units of the clip ``S``). At a fixed
epsilon and a large ``sigma``, ``sigma`` grows about in proportion to ``q``, so the ratio is
about ``sigma_1 / P`` (``sigma_1``: the noise at ``q = 1``): it is set by the number of
patients, not by how they are batched.

**Criterion.** A setting is *feasible* when ``noise_to_signal <= MAX_NOISE_TO_SIGNAL``
(0.05). The anchor is this project's record-level training, which already learns rare
classes poorly (README, "The study"): the bundled federation (4 rounds x 200 steps,
batch 64, epsilon 10, delta 1e-5) runs at ``sigma / B`` = 0.0097 on an ECG site of about
4,300 beats and 0.016 on an X-ray site of about 1,300 images. 0.05 allows about three
times the X-ray sites' noise; above it we call training infeasible (a verdict, not a
proof: nothing here measures utility). ``P = 3`` at epsilon 10 over 800 steps needs
``sigma = 15`` with ``q = 1``: the noise is 5x the largest possible signal of the whole
site in every step. Verdict sentences call a ratio of ten times the limit or more
hopeless ("no useful training is possible") and one between the limit and that
"infeasible by this project's limit".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from privacy.accounting import HistoryEntry, noise_multiplier_for_target

__all__ = [
    "MAX_NOISE_TO_SIGNAL",
    "PatientFeasibility",
    "feasibility_table",
    "format_feasibility_table",
    "patient_level_feasibility",
]

#: The largest ``sigma / m`` called feasible; see the module docstring for the anchor.
MAX_NOISE_TO_SIGNAL = 0.05

# At 10x the limit (0.5 by default: noise std at least half the largest possible signal of
# the whole step) the verdict sentence says that no useful training is possible.
_HOPELESS = 10.0

# Record-level sigma / B of the bundled federation (ECG site, X-ray site), for the verdicts.
_RECORD_LEVEL_REFERENCE = (0.0097, 0.016)


@dataclass(frozen=True)
class PatientFeasibility:
    """The noise one site needs for patient-level DP, and whether training is useful.

    Attributes:
        patients: Patients at the site (``P``).
        expected_patients_per_step: ``m`` as used: the requested one, at most ``P``.
        sample_rate: ``q = m / P``.
        steps: Steps over all rounds.
        target_epsilon: Target epsilon, over everything in ``history`` and ``steps``.
        delta: Target delta.
        noise_multiplier: The smallest ``sigma`` that stays within the target.
        noise_to_signal: ``sigma / m``: per-step noise std over the largest clipped
            signal of the sampled patients.
        feasible: ``noise_to_signal <= max_noise_to_signal``.
        patients_needed: When infeasible, about how many patients (same ``m``, steps,
            target) bring the ratio to the limit; ``None`` when feasible.
        verdict: One sentence for a person.
    """

    patients: int
    expected_patients_per_step: int
    sample_rate: float
    steps: int
    target_epsilon: float
    delta: float
    noise_multiplier: float
    noise_to_signal: float
    feasible: bool
    patients_needed: int | None
    verdict: str


def patient_level_feasibility(
    *,
    patients: int,
    expected_patients_per_step: int,
    local_steps: int,
    rounds: int,
    target_epsilon: float,
    delta: float,
    history: Sequence[HistoryEntry] = (),
    max_noise_to_signal: float = MAX_NOISE_TO_SIGNAL,
) -> PatientFeasibility:
    """The noise multiplier a site with ``patients`` needs, and a verdict on it.

    Args:
        patients: Patients at the site (the public count, when the site uses one).
        expected_patients_per_step: ``m``; more than ``patients`` is treated as
            ``patients`` (``q = 1``: every patient in every step).
        local_steps: DP steps per round.
        rounds: Rounds the site will train.
        target_epsilon: Target epsilon for everything, ``history`` included.
        delta: Target delta.
        history: Patient-level releases already made (e.g. the patient-count release).
        max_noise_to_signal: The feasibility limit on ``sigma / m``.

    Returns:
        A :class:`PatientFeasibility`.

    Raises:
        ValueError: a non-positive count, or a target ``history`` already spends.
    """
    for name, value in (("patients", patients), ("expected_patients_per_step", expected_patients_per_step),
                        ("local_steps", local_steps), ("rounds", rounds)):
        if value < 1:
            raise ValueError(f"{name}={value} must be at least 1")
    if max_noise_to_signal <= 0:
        raise ValueError(f"max_noise_to_signal={max_noise_to_signal} must be positive")
    m = min(expected_patients_per_step, patients)
    steps = local_steps * rounds
    sigma, ratio = _noise(patients, m, steps, target_epsilon, delta, history)
    feasible = ratio <= max_noise_to_signal
    needed = None if feasible else _patients_needed(patients, ratio, expected_patients_per_step, steps,
                                                    target_epsilon, delta, history, max_noise_to_signal)
    result = PatientFeasibility(
        patients=patients, expected_patients_per_step=m, sample_rate=m / patients, steps=steps,
        target_epsilon=target_epsilon, delta=delta, noise_multiplier=sigma, noise_to_signal=ratio,
        feasible=feasible, patients_needed=needed, verdict="",
    )
    return _with_verdict(result, max_noise_to_signal)


def _noise(patients: int, m: int, steps: int, target_epsilon: float, delta: float,
           history: Sequence[HistoryEntry]) -> tuple[float, float]:
    sigma = noise_multiplier_for_target(target_epsilon=target_epsilon, delta=delta, sample_rate=m / patients,
                                        steps=steps, history=history)
    return sigma, sigma / m


def _patients_needed(patients: int, ratio: float, m: int, steps: int, target_epsilon: float, delta: float,
                     history: Sequence[HistoryEntry], limit: float) -> int:
    """About the smallest site that meets ``limit``, with the requested ``m`` (not capped at ``patients``).

    The ratio falls about as ``1 / P`` (module docstring), so ``P * ratio / limit`` is
    the first guess; it is optimistic where ``sigma`` is already small, so each guess is
    checked with the accountant and scaled up until it passes.
    """
    guess = patients
    for _ in range(8):
        guess = max(guess + 1, math.ceil(guess * ratio / limit))
        _, ratio = _noise(guess, min(m, guess), steps, target_epsilon, delta, history)
        if ratio <= limit:
            break
    return guess


def _with_verdict(r: PatientFeasibility, limit: float) -> PatientFeasibility:
    sampling = ("q = 1.0: every patient in every step, no amplification by sampling" if r.sample_rate >= 1
                else f"q = {r.sample_rate:.3g}")
    head = (f"{r.patients} patients, {r.expected_patients_per_step} expected per step ({sampling}): reaching "
            f"epsilon {r.target_epsilon:g} (delta {r.delta:g}) over {r.steps} steps needs sigma = "
            f"{r.noise_multiplier:.3g}, i.e. per-step noise {r.noise_to_signal:.3g}x the largest clipped "
            f"signal of all sampled patients together (limit {limit:g}x)")
    low, high = _RECORD_LEVEL_REFERENCE
    if r.feasible:
        tail = (f": feasible; this project's record-level DP-SGD runs at {low:g}-{high:g}x, so expect "
                "utility of that order")
    else:
        verdict = ("no useful training is possible" if r.noise_to_signal >= _HOPELESS * limit
                   else "infeasible by this project's limit, expect the GAN to learn little")
        tail = (f": {verdict}; a site needs on the order of {_round(r.patients_needed)} patients at these "
                "settings")
    return PatientFeasibility(**{**r.__dict__, "verdict": head + tail})


def _round(count: int | None) -> str:
    """Two significant digits, rounded up: an order of magnitude, never an understatement."""
    assert count is not None
    scale = 10 ** max(0, len(str(count)) - 2)
    return f"{math.ceil(count / scale) * scale:,}"


def feasibility_table(
    *,
    patient_counts: Sequence[int] = (3, 10, 30, 100, 300, 1000, 3000),
    expected_patients_per_step: int = 64,
    local_steps: int = 200,
    rounds: int = 4,
    target_epsilon: float = 10.0,
    delta: float = 1e-5,
) -> list[PatientFeasibility]:
    """:func:`patient_level_feasibility` for each site size (defaults: the bundled run)."""
    return [patient_level_feasibility(patients=p, expected_patients_per_step=expected_patients_per_step,
                                      local_steps=local_steps, rounds=rounds, target_epsilon=target_epsilon,
                                      delta=delta) for p in patient_counts]


def format_feasibility_table(rows: Sequence[PatientFeasibility]) -> str:
    """A Markdown table: patients, m, q, sigma, sigma / m, verdict, patients needed."""
    lines = ["| patients | m | q | sigma | noise / signal (sigma / m) | verdict |",
             "|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        verdict = "feasible" if r.feasible else f"infeasible (needs ~{_round(r.patients_needed)})"
        lines.append(f"| {r.patients:,} | {r.expected_patients_per_step} | {r.sample_rate:.3g} | "
                     f"{r.noise_multiplier:.3g} | {r.noise_to_signal:.3g} | {verdict} |")
    return "\n".join(lines)
