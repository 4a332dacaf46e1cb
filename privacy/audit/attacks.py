"""Membership-inference attacks by name: ``create_attack("gan_leaks", synthetic=...)``.

A new attack is one file: a :class:`MembershipAttack` subclass that declares the
``inputs`` it is built from, and a :func:`register_attack` call; plus one import line in
``privacy/audit/__init__.py`` (``from privacy.audit import my_attack as _my_attack  # noqa: F401``).
Audit drivers only ever see names and keyword arguments, and ask :func:`attacks_need`
whether to build a costly input.
"""

from __future__ import annotations

from typing import Any, Sequence

from privacy.audit.base import ATTACK_INPUTS, MembershipAttack
from privacy.audit.domias import DomiasAttack
from privacy.audit.gan_leaks import GanLeaksAttack, GanLeaksCalibratedAttack
from privacy.audit.logan import LoganAttack

__all__ = ["MembershipAttack", "attack_inputs", "attacks_need", "available_attacks", "create_attack",
           "register_attack"]

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
        ValueError: if ``name`` is taken (and not ``force``), ``cls`` is not an attack, or
            it declares an input no audit supplies.
    """
    if not (isinstance(cls, type) and issubclass(cls, MembershipAttack)):
        raise ValueError(f"{cls!r} is not a subclass of MembershipAttack")
    unknown = [i for i in cls.inputs if i not in ATTACK_INPUTS]
    if unknown or not cls.inputs:
        raise ValueError(f"{cls.__name__}.inputs = {cls.inputs!r}: declare one or more of {', '.join(ATTACK_INPUTS)}")
    if name in _ATTACKS and not force:
        raise ValueError(f"attack {name!r} is already registered; pass force=True to replace it")
    _ATTACKS[name] = cls


def available_attacks() -> list[str]:
    """Names accepted by :func:`create_attack`, sorted."""
    return sorted(_ATTACKS)


def attack_inputs(name: str) -> tuple[str, ...]:
    """The inputs (:data:`~privacy.audit.base.ATTACK_INPUTS`) the attack ``name`` is built from.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the known names.
    """
    _check_known(name)
    return _ATTACKS[name].inputs


def attacks_need(names: Sequence[str], item: str) -> bool:
    """Whether any of the attacks ``names`` is built from ``item`` (e.g. ``"reference_synthetic"``)."""
    return any(item in attack_inputs(name) for name in names)


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
    _check_known(name)
    return _ATTACKS[name](**kwargs)


def _check_known(name: str) -> None:
    if name not in _ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(available_attacks())}")
