"""Modalities: one implementation per kind of data, found by name (see :mod:`.base`).

Importing the package registers the built-in modalities: each module decorates its class
with ``@register_modality``, so a new modality is one file plus one import line here.
"""

from medgan_core.modalities.base import (
    Modality,
    SimulatedSite,
    available_modalities,
    get_modality,
    register_modality,
)
from medgan_core.modalities import ecg as _ecg  # noqa: F401  (registers "ecg")
from medgan_core.modalities import ecg12 as _ecg12  # noqa: F401  (registers "ecg12")
from medgan_core.modalities import xray as _xray  # noqa: F401  (registers "xray")

__all__ = ["Modality", "SimulatedSite", "available_modalities", "get_modality", "register_modality"]
