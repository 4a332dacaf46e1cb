"""The membership audit on chest X-rays: held-out patients and canaries come from the
modality, attacks score flattened images, and ``medgan audit`` runs on an X-ray run.

A small copy of the bundled Kermany images (whole files, names keep their patient ids)
keeps every test to seconds."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from medgan_core.audit import audit_pools, simulation_canaries, site_audit
from medgan_core.config import RunConfig
from medgan_core.data.xray import patient_id_from_filename
from medgan_core.models import GanPair, build_gan
from medgan_core.models.state import gan_state
from medgan_core.modalities import get_modality
from medgan_core.run_dir import RunDirectory
from medgan_core.site import SiteConfig, training_records
from medgan_core.site.data import site_training_data
from privacy.audit.runner import audit_generator
from server.central import central_audit_fn

PER_CLASS = 60
SIZE = 32


@pytest.fixture(scope="module")
def small_xray_dir(tmp_path_factory, xray_data_dir):
    root = tmp_path_factory.mktemp("kermany_small")
    for name in ("NORMAL", "PNEUMONIA"):
        (root / name).mkdir()
        for png in sorted((xray_data_dir / name).glob("*.png"))[:PER_CLASS]:
            shutil.copy(png, root / name / png.name)
    return root


@pytest.fixture
def xray_run(tmp_path, small_xray_dir) -> RunConfig:
    return RunConfig.from_mapping({
        "modality": "xray", "model": "dcgan2d", "site-records": "1|1|1", "holdout-records": "1",
        "data-root": str(small_xray_dir), "run-dir": str(tmp_path / "run"), "image-size": SIZE,
        "canaries": 4, "audit-attacks": "logan gan_leaks domias", "batch-size": 16,
    })


def _holdout_patients(run: RunConfig) -> set[str]:
    simulated = get_modality("xray").simulated_site(run, 0)
    data = get_modality("xray").load(simulated.audit_paths, image_size=SIZE, patient_share=simulated.audit_share)
    return set(data.patient_ids)


def test_held_out_patients_are_the_holdout_group_split_in_disjoint_halves(xray_run):
    pools = audit_pools(xray_run)

    non_members, reference = set(pools.non_member_patients), set(pools.reference_patients)
    assert non_members and reference and not non_members & reference
    assert non_members | reference == _holdout_patients(xray_run)
    # No site trains on a held-out patient.
    for k in range(3):
        assert not set(training_records(SiteConfig.for_simulation(xray_run, k), xray_run).patient_ids) & (
            non_members | reference)
    # Images keep the model's layout; the canaries' source images left the reference pool.
    assert pools.non_members.shape[1:] == pools.reference.shape[1:] == (1, SIZE, SIZE)
    assert len(pools.non_members) == len(pools.non_member_labels)
    simulated = get_modality("xray").simulated_site(xray_run, 0)
    _, whole_reference = get_modality("xray").audit_holdout(
        simulated.audit_paths, image_size=SIZE, audit_share=simulated.audit_share)
    # X-ray's unit is the patient: 4 canary patients of records-per-patient = 2 images each.
    assert pools.canaries is not None and len(pools.canaries) == 4 and len(pools.canaries.records) == 8
    assert len(pools.reference) == len(whole_reference.labels) - 8


def test_canaries_are_images_offered_to_site_zero_only(xray_run):
    canaries = simulation_canaries(xray_run)
    site0, site1 = SiteConfig.for_simulation(xray_run, 0), SiteConfig.for_simulation(xray_run, 1)

    assert canaries.records.shape == (8, 1, SIZE, SIZE)  # 4 canary patients of 2 images
    data, own = site_training_data(site0, xray_run), training_records(site0, xray_run)
    added = data.samples[len(own.samples):].numpy()
    np.testing.assert_allclose(added, canaries.records[canaries.record_included], atol=1e-6)
    included = np.flatnonzero(canaries.included)
    assert data.patient_ids[len(own.samples):] == tuple(f"canary-{g}" for g in np.repeat(included, 2))
    assert len(site_training_data(site1, xray_run).samples) == len(training_records(site1, xray_run).samples)
    # Each canary is a reference image shifted along its rows and possibly negated.
    _, reference = get_modality("xray").audit_holdout(
        site0.audit_paths, image_size=SIZE, audit_share=site0.audit_share)
    pool = reference.samples.numpy()
    for record, source in zip(canaries.records, canaries.source_indices):
        assert any(np.allclose(record, s * np.roll(pool[source], k, axis=-1))
                   for s in (1, -1) for k in range(-40, 41))


class _ReplayImages(nn.Module):
    """A generator that memorised its training images: every sample is a member."""

    def __init__(self, members: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("members", torch.from_numpy(members).float())  # (m, 1, H, W)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.members[(z[:, 0].abs() * 1e6).long() % len(self.members)]


class _NearestImage(nn.Module):
    """A discriminator that memorised too: minus the distance to the nearest member."""

    def __init__(self, members: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("members", torch.from_numpy(members).float())

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return -torch.cdist(x.flatten(1), self.members.flatten(1)).min(dim=1).values


def test_the_image_audit_fires_on_a_memorising_generator(xray_run):
    pools = audit_pools(replace(xray_run, canaries=12, privacy_unit="record"))
    c = pools.canaries
    members = c.records[c.included]
    gan = GanPair(generator=_ReplayImages(members), discriminator=_NearestImage(members), latent_dim=8,
                  num_classes=2)

    audits = audit_generator(
        gan=gan, members=members, member_labels=c.labels[c.included], non_members=c.records[~c.included],
        non_member_labels=c.labels[~c.included], reference=pools.reference, reference_labels=pools.reference_labels,
        attacks=["logan", "gan_leaks"], n_synthetic=400, seed=0, delta=1e-5, accountant_epsilon=float("inf"),
        randomized_inclusion=True, n_resamples=100)

    assert audits["logan"].result.auc > 0.99 and audits["gan_leaks"].result.auc > 0.99
    assert max(a.lower_bound.epsilon_lb for a in audits.values()) > 0.0


def test_medgan_audit_runs_on_an_xray_run(xray_run, capsys):
    from simulations.audit import CANARY_FILE, write_canary_manifest
    from medgan_cli.main import main

    directory = RunDirectory(xray_run.run_dir)
    directory.write_json("config.json", xray_run.to_mapping())
    torch.manual_seed(xray_run.seed)
    directory.save_checkpoint(1, gan_state(build_gan(xray_run)), meta={})
    write_canary_manifest(xray_run)
    assert (directory.root / CANARY_FILE).exists()

    assert main(["audit", "--run-dir", xray_run.run_dir, "--n-synthetic", "200"]) == 0

    report = json.loads((directory.root / "audit" / "audit.json").read_text())
    assert set(report["scopes"]) == {"site-0", "site-1", "site-2", "site-0-canaries"}
    split = report["split"]
    assert set(split["non_member_patients"]) | set(split["reference_patients"]) == _holdout_patients(xray_run)
    assert not set(split["members"]["site-0"]) & set(split["non_member_patients"])
    for scope, entry in report["scopes"].items():
        for name, audit in entry["attacks"].items():
            assert audit["error"] is None and 0.0 <= audit["result"]["auc"] <= 1.0, (scope, name)
    assert report["scopes"]["site-0-canaries"]["attacks"]["logan"]["lower_bound"]["num_canaries"] == 4
    assert all((directory.root / f).stat().st_size > 5_000 for f in report["figures"])
    assert "| site-0-canaries | domias |" in capsys.readouterr().out


def test_the_central_audit_runs_for_xray_where_the_images_are(xray_run, tmp_path):
    assert central_audit_fn(replace(xray_run, audit_every=1)) is not None
    assert central_audit_fn(replace(xray_run, audit_every=1, data_root=str(tmp_path / "elsewhere"))) is None


def test_a_deployed_xray_site_audits_on_its_own_held_out_folder(xray_run, small_xray_dir, tmp_path):
    # The site's images of patients it trains on, and a folder of patients it holds out.
    files = sorted(small_xray_dir.glob("*/*.png"))
    patients = sorted({patient_id_from_filename(p.name) for p in files})
    held_out = {p for p in files if patient_id_from_filename(p.name) in patients[::3]}
    for name, chosen in (("train", [p for p in files if p not in held_out]), ("holdout", sorted(held_out))):
        for p in chosen:
            (tmp_path / name / p.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, tmp_path / name / p.parent.name / p.name)
    site = SiteConfig(site_id="site-x", modality="xray", data_paths=(str(tmp_path / "train"),),
                      ledger_path=tmp_path / "state" / "privacy_ledger.json", target_epsilon=4.0, target_delta=1e-5,
                      audit_paths=(str(tmp_path / "holdout"),))
    weights = {k: v.numpy() for k, v in gan_state(build_gan(xray_run)).items()}

    audits = site_audit(site=site, run=xray_run, weights=weights, attacks=["logan", "gan_leaks"], n_synthetic=200)

    pools = audit_pools(xray_run, site.audit_paths)
    assert audits["logan"].result.num_members == len(training_records(site, xray_run).labels)
    assert audits["logan"].result.num_non_members == len(pools.non_members)
    assert 0 < len(pools.non_members) < len(held_out)
