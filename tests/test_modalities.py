"""The modality interface: no code outside a modality asks which modality it is, and a new
modality is one class plus a registration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.modalities import available_modalities, get_modality, register_modality
from medgan_core.modalities import base as modality_base
from medgan_core.modalities.ecg import EcgModality

REPO = Path(__file__).resolve().parents[1]
_BRANCH = re.compile(r"""modality\s*[!=]=|==\s*["'](ecg|xray)["']|["'](ecg|xray)["']\s+if\s""")


def test_no_modality_branch_outside_the_modality_implementations():
    offenders = []
    for package in ("medgan_core", "privacy", "client", "server", "simulations", "medgan_cli"):
        for path in (REPO / package).rglob("*.py"):
            if "modalities" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if _BRANCH.search(line.split("#")[0]):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_an_unknown_modality_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown modality 'mri'; use one of ecg, ecg12, xray"):
        get_modality("mri")


class _TwinEcg(EcgModality):
    """A toy second modality: ECG under another name, as a new one would be added."""

    name = "twin-ecg"
    record_word = "twin beat"


def test_a_new_modality_is_one_class_and_a_registration(tmp_path):
    from medgan_core.models import build_gan
    from medgan_core.site import SiteConfig, load_site_data

    register_modality(_TwinEcg())
    try:
        assert "twin-ecg" in available_modalities()
        run = RunConfig.from_mapping({"modality": "twin-ecg", "run-dir": str(tmp_path / "run"),
                                      "data-root": str(REPO / "data" / "ecg"),
                                      "site-records": "mitdb/106|mitdb/105"})
        site = SiteConfig.for_simulation(run, 1)
        data = load_site_data(site.modality, site.data_paths, run.image_size, site.patient_share)
        assert data.samples.shape[1:] == (1, 128) and data.num_patients == 1 and run.unit == "record"
        gan = build_gan(run, len(data.class_names))
        assert gan.generator(*_latents(gan)).shape[1:] == (1, 128)
    finally:
        del modality_base._MODALITIES["twin-ecg"]


def _latents(gan):
    import torch

    return torch.randn(2, gan.latent_dim), torch.tensor([0, 1])


def test_each_modality_supplies_its_sample_metrics_in_its_unit():
    import torch

    from medgan_core.data.labelled import LabelledSet

    zeros = torch.zeros(6, dtype=torch.long)
    beats = torch.linspace(-1, 1, 6 * 32).reshape(6, 1, 32).sin()
    shifted = LabelledSet(beats + 0.01, zeros)
    ecg = get_modality("ecg")
    scores = ecg.sample_metrics(shifted, LabelledSet(beats, zeros), settings=ecg.evaluation_settings(dtw_samples=3),
                                seed=0)
    # Signals get DTW; every nearest-neighbour offset is 0.01 model units = 0.05 mV.
    assert {"dtw_syn_to_real", "dtw_real_to_syn", "rmse", "ssim"} <= set(scores)
    assert scores["rmse"] == pytest.approx(0.05, rel=1e-4)
    images = torch.linspace(-1, 1, 6 * 144).reshape(6, 1, 12, 12)
    xray = get_modality("xray")
    scores = xray.sample_metrics(LabelledSet(images + 0.01, zeros), LabelledSet(images, zeros),
                                 settings=xray.evaluation_settings(), seed=0)
    # Images: no DTW; 0.01 model units = 0.005 in intensity [0, 1].
    assert "dtw_syn_to_real" not in scores and scores["rmse"] == pytest.approx(0.005, rel=1e-4)
    assert xray.sample_unit == "intensity [0, 1]" and ecg.sample_unit == "mV"
