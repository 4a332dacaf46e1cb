"""Membership-inference attacks by name: ``create_attack("gan_leaks", synthetic=...)``.

A new attack is one :class:`MembershipAttack` subclass plus one :func:`register_attack`
call; audit drivers only ever see names and keyword arguments.
"""

from __future__ import annotations

from typing import Any

from privacy.audit.base import MembershipAttack
from privacy.audit.domias import DomiasAttack
from privacy.audit.gan_leaks import GanLeaksAttack, GanLeaksCalibratedAttack
from privacy.audit.logan import LoganAttack

__all__ = ["MembershipAttack", "available_attacks", "create_attack", "register_attack"]

_ATTACKS: dict[str, type[MembershipAttack]] = {
    "logan": LoganAttack,
    "gan_leaks": GanLeaksAttack,
    "gan_leaks_calibrated": GanLeaksCalibratedAttack,
    "domias": DomiasAttack,
}


def register_attack(name: str, cls: type[MembershipAttack], force: bool = False) -> None:
    """Register an attack class under ``name``.

    Args:
        name: registry key used by :func:`create_attack`.
        cls: a subclass of :class:`MembershipAttack`.
        force: overwrite an existing registration instead of raising.

    Raises:
        ValueError: if ``name`` is taken (and not ``force``) or ``cls`` is not an attack.
    """
    if not (isinstance(cls, type) and issubclass(cls, MembershipAttack)):
        raise ValueError(f"{cls!r} is not a subclass of MembershipAttack")
    if name in _ATTACKS and not force:
        raise ValueError(f"attack {name!r} is already registered; pass force=True to replace it")
    _ATTACKS[name] = cls


def available_attacks() -> list[str]:
    """Names accepted by :func:`create_attack`, sorted."""
    return sorted(_ATTACKS)


def create_attack(name: str, **kwargs: Any) -> MembershipAttack:
    """Build the attack registered as ``name`` with keyword arguments ``kwargs``.

    Args:
        name: a registered attack name, e.g. ``"logan"``, ``"gan_leaks"``,
            ``"gan_leaks_calibrated"`` or ``"domias"``.
        **kwargs: the attack's constructor arguments.

    Returns:
        The attack instance.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the known names.
    """
    if name not in _ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(available_attacks())}")
    return _ATTACKS[name](**kwargs)
