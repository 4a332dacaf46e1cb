"""Modalities: one implementation per kind of data, found by name (see :mod:`.base`)."""

from medgan_core.modalities.base import (
    Modality,
    SimulatedSite,
    available_modalities,
    get_modality,
    register_modality,
)
from medgan_core.modalities.ecg import EcgModality
from medgan_core.modalities.ecg12 import Ecg12Modality
from medgan_core.modalities.xray import XrayModality

register_modality(EcgModality())
register_modality(Ecg12Modality())
register_modality(XrayModality())

__all__ = ["Modality", "SimulatedSite", "available_modalities", "get_modality", "register_modality"]
