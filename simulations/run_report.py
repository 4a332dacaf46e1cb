"""Which function writes a run's report: the one its modality names.

Each :class:`~medgan_core.modalities.base.Modality` names its report function as
``"module:function"`` (the simulations layer), so ``medgan_core`` never imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from medgan_core.modalities import get_modality

__all__ = ["report_function"]


def report_function(modality: str) -> Callable[..., dict]:
    """The function writing a run's report for ``modality`` (``Modality.report_function``).

    Raises:
        ConfigError: ``modality`` is not registered.
    """
    module, name = get_modality(modality).report_function.split(":")
    return getattr(importlib.import_module(module), name)
