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
    with pytest.raises(ConfigError, match="unknown modality 'mri'; use one of ecg, xray"):
        get_modality("mri")


class _TwinEcg(EcgModality):
    """A toy second modality: ECG under another name, as a new one would be added."""

    name = "twin-ecg"
    record_word = "twin beat"


def test_a_new_modality_is_one_class_and_a_registration(tmp_path):
    from medgan_core.site import SiteConfig, build_gan, load_site_data

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
