"""Run every membership-inference attack on one generator and one candidate set.

:func:`audit_generator` is the one entry point the federation's audit drivers use (the
ServerApp's central audit, a site's ``query.audit`` handler, ``medgan audit``). Every
attack scores exactly the same members and non-members, so their AUCs and TPRs compare.
No Flower and no run directory here: a GAN (any object with ``generator``,
``discriminator``, ``latent_dim``), arrays in, :class:`AttackAudit` objects out.

When membership was decided by independent fair coins (canaries), the same scores also
give the one-run empirical epsilon lower bound, compared with the accountant's epsilon.
When the coin decides a whole unit (a patient canary: k records in or out together), the
audit is per unit and a unit's score is the *mean* of its records' scores: any label-blind
function keeps the bound valid, and with canary records that share one signature the mean
averages the per-record noise k-fold where the max would add the noisiest record's error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from privacy.audit.attacks import attack_inputs, available_attacks, create_attack
from privacy.audit.canaries import mean_by_group
from privacy.audit.logan import torch_discriminator_score
from privacy.audit.metrics import AuditResult, evaluate_attack_scores, roc_curve
from privacy.audit.one_run import VIOLATION, LowerBoundResult, compare_with_accountant, epsilon_lower_bound

__all__ = [
    "DEFAULT_ATTACKS",
    "AttackAudit",
    "audit_generator",
    "audit_metrics",
    "has_violation",
    "sample_generator",
]

logger = logging.getLogger(__name__)

DEFAULT_ATTACKS: tuple[str, ...] = ("logan", "gan_leaks", "gan_leaks_calibrated", "domias")

# The ROC kept per attack: every point of the low-FPR end plus an even thinning of the rest.
_ROC_HEAD, _ROC_POINTS = 100, 400


class _Gan(Protocol):
    generator: Any
    discriminator: Any
    latent_dim: int


@dataclass(frozen=True)
class AttackAudit:
    """One attack's outcome on one candidate set.

    Attributes:
        attack: registry name.
        result: AUC with CI, TPR at 1% / 0.1% FPR and counts; ``None`` if the attack failed.
        fpr, tpr: ROC points (thinned to a few hundred); ``None`` if the attack failed.
        lower_bound: one-run epsilon lower bound; only when inclusion was randomized.
        accountant_epsilon: the accountant's epsilon it is compared with (``inf``: no DP).
        verdict: :data:`~privacy.audit.one_run.CONSISTENT` or the VIOLATION string; ``None``
            without a lower bound.
        error: why the attack could not run (e.g. a mode-collapsed generator), else ``None``.
    """

    attack: str
    result: AuditResult | None
    fpr: np.ndarray | None = None
    tpr: np.ndarray | None = None
    lower_bound: LowerBoundResult | None = None
    accountant_epsilon: float | None = None
    verdict: str | None = None
    error: str | None = None

    @property
    def violation(self) -> bool:
        return self.verdict == VIOLATION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: scalars, ROC points as lists (NaN / inf left for the writer to map)."""
        return {
            "attack": self.attack,
            "result": self.result.to_dict() if self.result else None,
            "roc": None if self.fpr is None or self.tpr is None else {"fpr": self.fpr.tolist(),
                                                                     "tpr": self.tpr.tolist()},
            "lower_bound": self.lower_bound.to_dict() if self.lower_bound else None,
            "accountant_epsilon": self.accountant_epsilon,
            "verdict": self.verdict,
            "violation": self.violation,
            "error": self.error,
        }


def sample_generator(gan: _Gan, labels: np.ndarray, *, seed: int, batch: int = 512) -> np.ndarray:
    """Samples of ``gan.generator`` for the given class labels, channel axis kept.

    Args:
        gan: object with ``generator`` (``(z, y) -> (B, C, ...)``) and ``latent_dim``.
        labels: ``(N,)`` class index per sample.
        seed: seed of the latent draws.
        batch: samples per forward pass.

    Returns:
        ``(N, C, ...)`` float32 samples in model units.
    """
    import torch

    rng = torch.Generator().manual_seed(seed)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    was_training = gan.generator.training
    gan.generator.eval()
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, len(y_all), batch):
                y = y_all[start:start + batch]
                outputs.append(gan.generator(torch.randn(len(y), gan.latent_dim, generator=rng), y))
    finally:
        gan.generator.train(was_training)
    return torch.cat(outputs).numpy()


def audit_generator(
    *,
    gan: _Gan,
    members: np.ndarray,
    member_labels: np.ndarray,
    non_members: np.ndarray,
    non_member_labels: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    reference_synthetic: np.ndarray | None = None,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    n_synthetic: int = 2000,
    seed: int = 0,
    delta: float | None = None,
    accountant_epsilon: float | None = None,
    randomized_inclusion: bool = False,
    beta: float = 0.05,
    n_resamples: int = 1000,
    member_groups: np.ndarray | None = None,
    non_member_groups: np.ndarray | None = None,
) -> dict[str, AttackAudit]:
    """Score the same members and non-members with every attack.

    Synthetic samples (``n_synthetic``) are drawn with class labels in the proportions of
    ``reference_labels``: a property of the non-member population, so the class mix of the
    members never leaks into the synthetic set, and DOMIAS's synthetic and reference
    densities describe the same class mix.

    Args:
        gan: the audited GAN (its discriminator for LOGAN, its generator for the rest).
        members: ``(N1, ...)`` training records, with or without the channel axis.
        member_labels: ``(N1,)`` class indices (LOGAN's discriminator is conditional).
        non_members: ``(N0, ...)`` records of the same population never trained on.
        non_member_labels: ``(N0,)``.
        reference: ``(R, ...)`` real records disjoint from both (DOMIAS's reference density).
        reference_labels: ``(R,)``.
        reference_synthetic: samples of a reference generator trained without any
            candidate; required by attacks whose ``inputs`` name it (``gan_leaks_calibrated``).
        attacks: registry names to run.
        n_synthetic: samples drawn from ``gan``.
        seed: seed of sampling, bootstrap and the label-blind tie-break of the bound.
        delta: delta of the audited guarantee; required with ``randomized_inclusion``.
        accountant_epsilon: the accountant's epsilon (``math.inf`` for non-private
            training; ``None`` or NaN when unknown, e.g. no ledger: no verdict); with a
            lower bound, a bound above it is a VIOLATION (ERROR log).
        randomized_inclusion: members and non-members were split by independent fair
            coins (canaries); only then is the one-run lower bound valid and computed.
            Each attack's bound is tested at ``beta / len(attacks)`` so that the largest
            of them still holds with confidence ``1 - beta``.
        beta: significance level of the lower bound.
        n_resamples: bootstrap resamples of the AUC interval.
        member_groups, non_member_groups: ``(N1,)`` and ``(N0,)`` unit (patient) of each
            candidate, e.g. a patient canary's index; both or neither. Given, the audit is
            per unit: a unit's score is the mean of its records' scores, and AUC, ROC and
            the lower bound (one guess per unit) are computed on units. A unit's records
            must all be members or all non-members.

    Returns:
        Attack name -> :class:`AttackAudit`, in the order of ``attacks``. An attack that
        cannot run on these inputs (e.g. a degenerate KDE) carries ``error``.

    Raises:
        ValueError: unknown attack names, mismatched shapes or labels, or a randomized
            audit without ``delta``.
    """
    unknown = [a for a in attacks if a not in available_attacks()]
    if unknown or not attacks:
        raise ValueError(f"unknown or no attacks {unknown or list(attacks)}; known attacks: "
                         f"{', '.join(available_attacks())}")
    if randomized_inclusion and delta is None:
        raise ValueError("randomized_inclusion needs delta (the accountant's delta) for the lower bound")
    rng = np.random.default_rng(seed)
    _, yr = _records(reference, reference_labels, "reference", None)
    classes, counts = np.unique(yr, return_counts=True)
    synthetic_labels = rng.choice(classes, n_synthetic, p=counts / counts.sum())
    synthetic = sample_generator(gan, synthetic_labels, seed=seed)  # (N, C, ...): the generator's layout
    x1, y1 = _records(members, member_labels, "members", synthetic.shape[1:])
    x0, y0 = _records(non_members, non_member_labels, "non_members", synthetic.shape[1:])
    xr, yr = _records(reference, reference_labels, "reference", synthetic.shape[1:])
    if reference_synthetic is not None:
        reference_synthetic, _ = _records(reference_synthetic, np.zeros(len(reference_synthetic)),
                                          "reference_synthetic", synthetic.shape[1:])
    candidates = np.concatenate([x1, x0])  # (N1 + N0, ...)
    candidate_labels = np.concatenate([y1, y0])
    is_member = np.r_[np.ones(len(x1), bool), np.zeros(len(x0), bool)]
    units = _candidate_units(member_groups, non_member_groups, len(x1), len(x0))
    if units is not None:
        unit_ids, unit_member = mean_by_group(is_member.astype(float), units)
        if np.any((unit_member > 0) & (unit_member < 1)):
            raise ValueError("a unit (group) has both member and non-member records; its records "
                             "must be included or excluded together")
        is_member = unit_member == 1.0  # (units,), sorted by unit id

    inputs: dict[str, Any] = {
        "synthetic": synthetic,
        "reference": xr,
        "reference_synthetic": reference_synthetic,
        "discriminator_score": torch_discriminator_score(gan.discriminator, labels=candidate_labels,
                                                         add_channel_dim=False),
    }
    # A label-blind random order: the bound breaks score ties by index, and with members
    # listed first an index tie-break would peek at membership.
    order = rng.permutation(len(is_member))
    audits: dict[str, AttackAudit] = {}
    for name in attacks:
        try:
            scores = _score(name, inputs, candidates, gan)
            if units is not None:
                scores = mean_by_group(scores, units)[1]  # one score per unit: see module doc
        except ValueError as err:
            logger.warning("audit: attack %s could not run: %s", name, err)
            audits[name] = AttackAudit(attack=name, result=None, error=str(err))
            continue
        result = evaluate_attack_scores(name, scores, is_member, n_resamples=n_resamples, seed=seed)
        fpr, tpr, _ = roc_curve(scores, is_member)
        bound, verdict = None, None
        if randomized_inclusion and delta is not None:  # checked above: delta is given
            bound = epsilon_lower_bound(scores[order], is_member[order], delta=float(delta),
                                        beta=beta / len(attacks))
            if accountant_epsilon is not None and not math.isnan(accountant_epsilon):
                verdict = compare_with_accountant(bound.epsilon_lb, accountant_epsilon)
        audits[name] = AttackAudit(attack=name, result=result, fpr=_thin(fpr), tpr=_thin(tpr),
                                   lower_bound=bound, accountant_epsilon=accountant_epsilon, verdict=verdict)
    return audits


def audit_metrics(audits: dict[str, AttackAudit], *, prefix: str = "") -> dict[str, float]:
    """Scalars only, for a Flower MetricRecord: the same keys whatever the outcome.

    Per attack ``{prefix}{attack}-auc``, ``-auc-ci-low``, ``-auc-ci-high``,
    ``-tpr-at-1pct-fpr``, ``-tpr-at-01pct-fpr`` (NaN when unreachable or failed) and, for
    randomized audits, ``-epsilon-lb`` and ``-violation`` (0/1); plus
    ``{prefix}num-members`` and ``{prefix}num-non-members``.
    """
    out: dict[str, float] = {}
    counts = next((a.result for a in audits.values() if a.result is not None), None)
    randomized = any(a.lower_bound is not None for a in audits.values())
    for name, audit in audits.items():
        r = audit.result
        values = (r.auc, r.auc_ci_low, r.auc_ci_high, r.tpr_at_1pct_fpr, r.tpr_at_01pct_fpr) if r else (math.nan,) * 5
        for key, value in zip(("auc", "auc-ci-low", "auc-ci-high", "tpr-at-1pct-fpr", "tpr-at-01pct-fpr"), values):
            out[f"{prefix}{name}-{key}"] = float(value)
        if randomized:
            out[f"{prefix}{name}-epsilon-lb"] = float(audit.lower_bound.epsilon_lb) if audit.lower_bound else math.nan
            out[f"{prefix}{name}-violation"] = float(audit.violation)
    out[f"{prefix}num-members"] = float(counts.num_members) if counts else math.nan
    out[f"{prefix}num-non-members"] = float(counts.num_non_members) if counts else math.nan
    return out


def has_violation(audits: dict[str, AttackAudit]) -> bool:
    """Whether any attack's lower bound exceeded the accountant's epsilon."""
    return any(a.violation for a in audits.values())


def _records(x: np.ndarray, y: np.ndarray, name: str, shape: tuple[int, ...] | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Records in the generator's layout ``(N, *shape)``: ``(N, C, ...)``, a missing
    one-channel axis (``(N, L)`` beats, ``(N, H, W)`` images) inserted."""
    arr = np.asarray(x, dtype=np.float32)
    if shape is not None and arr.shape[1:] != tuple(shape) and (1, *arr.shape[1:]) == tuple(shape):
        arr = arr[:, None]
    labels = np.asarray(y).astype(np.int64)
    if (arr.ndim < 2 or len(arr) == 0 or labels.shape != (len(arr),)
            or (shape is not None and arr.shape[1:] != tuple(shape))):
        raise ValueError(f"{name}: need records (N, ...) with N >= 1 in the generator's layout (N, "
                         f"{', '.join(map(str, shape or ()))}) and labels (N,), got {arr.shape} and {labels.shape}")
    return arr, labels


def _score(name: str, inputs: dict[str, Any], candidates: np.ndarray, gan: _Gan) -> np.ndarray:
    needed = attack_inputs(name)  # declared by the attack class
    missing = [k for k in needed if inputs.get(k) is None]
    if missing:
        raise ValueError(f"{name} needs {', '.join(missing)} (e.g. samples of a reference generator "
                         "trained without the candidates)")
    discriminator = gan.discriminator
    was_training = discriminator.training
    discriminator.eval()
    try:
        return create_attack(name, **{k: inputs[k] for k in needed}).score(candidates)
    finally:
        discriminator.train(was_training)


def _candidate_units(member_groups: np.ndarray | None, non_member_groups: np.ndarray | None,
                     n1: int, n0: int) -> np.ndarray | None:
    if member_groups is None and non_member_groups is None:
        return None
    if member_groups is None or non_member_groups is None:
        raise ValueError("pass both member_groups and non_member_groups, or neither")
    units = np.concatenate([np.asarray(member_groups), np.asarray(non_member_groups)])
    if units.shape != (n1 + n0,):
        raise ValueError(f"groups {np.shape(member_groups)}, {np.shape(non_member_groups)} must match "
                         f"members ({n1}) and non_members ({n0})")
    return units


def _thin(points: np.ndarray) -> np.ndarray:
    if len(points) <= _ROC_POINTS:
        return points
    keep = np.unique(np.r_[np.arange(_ROC_HEAD), np.linspace(0, len(points) - 1, _ROC_POINTS - _ROC_HEAD).round()])
    return points[keep.astype(int)]
