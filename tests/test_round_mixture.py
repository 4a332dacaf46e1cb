"""benchmarks/round_mixture.py: each generator of a mixture gives an equal, seeded share of every class."""

import importlib.util
from pathlib import Path

import torch

from medgan_core.evaluation.scoring import sample_with_labels
from medgan_core.models import build_gan
from simulations.federation import resolve_run_config

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("round_mixture", ROOT / "benchmarks" / "round_mixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mixture_takes_an_equal_seeded_share_of_each_class_from_each_generator(tmp_path):
    run = resolve_run_config({"run-dir": str(tmp_path)})
    torch.manual_seed(0)
    first, second = build_gan(run), build_gan(run)

    mixed = _benchmark().sample_mixture([first, second], num_classes=2, per_class=10, seed=3)

    assert mixed.labels.tolist() == [0] * 5 + [1] * 5 + [0] * 5 + [1] * 5
    own = sample_with_labels(second, torch.arange(2).repeat_interleave(5), seed=3001)
    assert torch.equal(mixed.samples[10:], own.samples)
    assert not torch.equal(mixed.samples[:10], mixed.samples[10:])
