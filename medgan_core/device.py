"""Where a site trains and evaluates: the ``device`` setting, checked and resolved once.

The run config and a site's TOML spell a device as ``"auto"`` (CUDA when PyTorch sees a
GPU, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. :data:`DEVICE_RULE` checks the
spelling where the value is read (any machine, GPU or not); :func:`resolve_device` turns
it into a ``torch.device`` on the machine that does the work, and refuses a CUDA device
that machine does not have.
"""

from __future__ import annotations

import re

import torch

from medgan_core.errors import ConfigError
from medgan_core.schema import Rule

__all__ = ["DEVICE_CHOICES", "DEVICE_RULE", "is_device_name", "resolve_device"]

#: The spellings of the ``device`` setting, as error messages list them.
DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...)"
_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def is_device_name(name: str) -> bool:
    """Whether ``name`` is one of :data:`DEVICE_CHOICES` (spelling only; no GPU is asked)."""
    return _NAME.fullmatch(name) is not None


DEVICE_RULE = Rule(str, is_device_name, DEVICE_CHOICES)


def resolve_device(name: str, *, where: str = "run-config", key: str = "device") -> torch.device:
    """The ``torch.device`` that ``name`` means on this machine.

    Args:
        name: ``"auto"`` (``cuda`` when ``torch.cuda.is_available()``, else ``cpu``),
            ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        where: Where the value came from (``run-config``, a site), for the message; ``""``
            when the caller prefixes its own (the command line).
        key: The setting's name as the user writes it.

    Returns:
        ``torch.device("cpu")``, ``torch.device("cuda")`` or ``torch.device("cuda", N)``.

    Raises:
        ConfigError: a spelling not in :data:`DEVICE_CHOICES`, CUDA asked for on a machine
            where PyTorch sees no GPU, or ``cuda:N`` past the last visible GPU.
    """
    at = f"{where}: " if where else ""
    if not isinstance(name, str) or not is_device_name(name):
        raise ConfigError(f"{at}{key} = {name!r} is invalid; use {DEVICE_CHOICES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{at}{key} = {name!r} asks for CUDA, but PyTorch sees no GPU on this machine "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); fix: set {key} = 'cpu' "
            f"or 'auto', or install a CUDA build of PyTorch on a machine with an NVIDIA GPU and its driver"
        )
    device = torch.device(name)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(f"{at}{key} = {name!r} but this machine has {count} visible CUDA device(s) "
                          f"(cuda:0 to cuda:{count - 1}); fix: pick one of them, or 'cuda'")
    return device
