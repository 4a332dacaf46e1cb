"""Everything a site may send to the coordinator, declared key by key with its category.

A reply key that is not declared here cannot leave a site: the ClientApp checks every
reply against these tables before sending it (:func:`check_reply`), and the tests check
real replies of every message type against them. Categories:

* ``PUBLIC``: data-independent. A function of the run configuration, the site's own
  declared settings, and values already released (the ledger's entries are themselves
  public or charged).
* ``DP``: a differentially private release charged to the site's ledger, or
  post-processing of one (no further cost).
* ``SITE_OPT_IN``: sent only where the site's own configuration allows it, with noise,
  and then charged to the ledger like any release.

Nothing here imports Flower or ``medgan_core``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum

__all__ = ["AUDIT_REPLY_SUFFIX", "EVALUATE_REPLY", "ReleaseCategory", "TRAIN_REPLY", "UndeclaredRelease",
           "audit_reply_keys", "check_reply"]


class ReleaseCategory(str, Enum):
    PUBLIC = "public"
    DP = "dp"
    SITE_OPT_IN = "site-opt-in"


class UndeclaredRelease(RuntimeError):
    """A reply holds a key that is not declared here, or a site-opt-in key it did not opt into."""


_P, _DP, _OPT = ReleaseCategory.PUBLIC, ReleaseCategory.DP, ReleaseCategory.SITE_OPT_IN

#: The train reply's scalars (its ArrayRecord holds the GAN weights: the discriminator is
#: the output of DP-SGD, the generator post-processing of it).
TRAIN_REPLY: Mapping[str, tuple[ReleaseCategory, str]] = {
    "num-examples": (_DP, "the site's public size N', the sum of its charged noisy class counts; "
                          "the FedAvg weight"),
    "epsilon": (_P, "epsilon spent per record, recomputed from the ledger's (sigma, q, steps) entries"),
    "d-loss-fake": (_DP, "the discriminator's loss on the round's fakes: privatised weights on "
                         "data-independent inputs"),
    "g-loss": (_DP, "the generator's loss: privatised discriminator on generator outputs"),
    "noise-multiplier": (_P, "derived from the budget, the ledger and the public sampling rate"),
    "local-steps": (_P, "min(run's local-steps, site's max-local-steps)"),
}

#: The evaluate reply: a site evaluates nothing on its data (see medgan_core.site.evaluate_round).
EVALUATE_REPLY: Mapping[str, tuple[ReleaseCategory, str]] = {
    "num-examples": (_P, "a constant 1: equal aggregation weights"),
    "epsilon": (_P, "epsilon spent per record, from the ledger"),
}

#: The audit reply: each attack's AUC with Gaussian noise, only where the site opted in
#: (``[release] audit = true``), charged; otherwise one constant saying the result was kept.
AUDIT_REPLY_SUFFIX = "-auc-noised"
_AUDIT_KEPT = {"audit-kept-at-site": (_P, "1: the audit ran and its results stayed in the site's directory")}


def audit_reply_keys(attacks: Iterable[str]) -> dict[str, tuple[ReleaseCategory, str]]:
    keys = {f"{a}{AUDIT_REPLY_SUFFIX}": (_OPT, "the attack's AUC plus Gaussian noise, charged") for a in attacks}
    return {**_AUDIT_KEPT, **keys}


def check_reply(keys: Iterable[str], declared: Mapping[str, tuple[ReleaseCategory, str]], *,
                site_opt_in: bool = False) -> None:
    """Raise :class:`UndeclaredRelease` unless every key is declared and allowed.

    Args:
        keys: the reply's metric keys.
        declared: the table for this message type.
        site_opt_in: whether the site's configuration allows its ``SITE_OPT_IN`` keys.
    """
    for key in keys:
        if key not in declared:
            raise UndeclaredRelease(f"reply key {key!r} is not a declared release")
        if declared[key][0] is ReleaseCategory.SITE_OPT_IN and not site_opt_in:
            raise UndeclaredRelease(f"reply key {key!r} needs the site's opt-in")
