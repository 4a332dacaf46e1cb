"""Membership-inference audits of synthetic data: attacks, metrics, one-run epsilon bounds.

numpy/scipy/scikit-learn/torch/matplotlib; never imports Flower, the client or the server,
so an audit can be rerun offline on saved samples and scores.
"""

from privacy.audit.attacks import (
    MembershipAttack,
    available_attacks,
    create_attack,
    register_attack,
)
from privacy.audit.domias import DomiasAttack, PcaEmbedding
from privacy.audit.gan_leaks import GanLeaksAttack, GanLeaksCalibratedAttack, min_l2_distances
from privacy.audit.logan import LoganAttack, torch_discriminator_score
from privacy.audit.metrics import (
    AuditResult,
    bootstrap_auc_ci,
    delong_auc_se,
    evaluate_attack_scores,
    hanley_mcneil_auc_se,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from privacy.audit.one_run import (
    CONSISTENT,
    VIOLATION,
    LowerBoundResult,
    compare_with_accountant,
    default_guess_candidates,
    epsilon_from_guesses,
    epsilon_lower_bound,
    p_value_dp_audit,
)
from privacy.audit.plotting import plot_roc

__all__ = [
    "CONSISTENT",
    "VIOLATION",
    "AuditResult",
    "DomiasAttack",
    "GanLeaksAttack",
    "GanLeaksCalibratedAttack",
    "LoganAttack",
    "LowerBoundResult",
    "MembershipAttack",
    "PcaEmbedding",
    "available_attacks",
    "bootstrap_auc_ci",
    "compare_with_accountant",
    "create_attack",
    "default_guess_candidates",
    "delong_auc_se",
    "epsilon_from_guesses",
    "epsilon_lower_bound",
    "evaluate_attack_scores",
    "hanley_mcneil_auc_se",
    "min_l2_distances",
    "p_value_dp_audit",
    "plot_roc",
    "register_attack",
    "roc_auc",
    "roc_curve",
    "torch_discriminator_score",
    "tpr_at_fpr",
]
