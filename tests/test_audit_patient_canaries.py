"""The one-run audit follows the DP unit: under patient-level DP a canary is a whole
synthetic patient (k records, one id, one coin), scored as the mean of its records, and
the bound is stated per patient; record-level canaries are exactly what they always were."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from medgan_core.audit import audit_federation, simulation_canaries
from medgan_core.errors import ConfigError
from medgan_core.models import GanPair, build_gan
from medgan_core.models.state import gan_state
from medgan_core.run_dir import RunDirectory
from medgan_core.site import SiteConfig, training_records
from medgan_core.site.data import site_training_data
from privacy.audit.canaries import CanarySet, craft_canaries, mean_by_group
from privacy.audit.runner import audit_generator

K = 3


@pytest.fixture
def patient_run(small_run):
    return replace(small_run, privacy_unit="patient", records_per_patient=K, canaries=40,
                   audit_attacks="logan gan_leaks")


def _pool() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(50, 1, 16)).astype(np.float32)


def test_record_canaries_are_bit_for_bit_those_of_before_grouping():
    c = craft_canaries(_pool(), num_canaries=10, num_classes=3, seed=5, max_shift=4)

    # Golden digest of records, labels, bits and sources, taken from the code before this change.
    digest = hashlib.sha256(c.records.tobytes() + c.labels.tobytes() + c.included.tobytes()
                            + c.source_indices.tobytes()).hexdigest()
    assert digest == "4731664c00c9e200bd9814446e05582c89d5957c1ef550f83ccfda519d1940da"
    assert c.records.shape == (10, 1, 16) and np.array_equal(c.record_groups, np.arange(10))


def test_a_patient_canary_is_k_distinct_records_with_one_transform_label_and_coin():
    pool = _pool()
    c = craft_canaries(pool, num_canaries=10, num_classes=3, seed=5, max_shift=4, records_per_canary=K)

    assert len(c) == 10 and c.records.shape == (30, 1, 16)
    assert len(set(c.source_indices.tolist())) == 30  # no pool record serves twice
    assert np.array_equal(c.included, craft_canaries(pool, num_canaries=10, num_classes=3, seed=5).included)
    for g in range(10):
        rows = np.flatnonzero(c.record_groups == g)
        assert len(rows) == K and len(set(c.labels[rows].tolist())) == 1
        # One (sign, shift) explains every record of the canary: its shared signature.
        assert any(all(np.allclose(c.records[r], s * np.roll(pool[c.source_indices[r]], k, axis=-1)) for r in rows)
                   for s in (1.0, -1.0) for k in range(-4, 5))
    records, _ = c.included_records()
    assert len(records) == K * int(c.included.sum())
    assert np.array_equal(c.included_groups(), np.repeat(np.flatnonzero(c.included), K))


def test_the_audited_site_gets_whole_canary_patients_under_one_id(patient_run):
    canaries = simulation_canaries(patient_run)
    site0 = SiteConfig.for_simulation(patient_run, 0)

    data, own = site_training_data(site0, patient_run), training_records(site0, patient_run)

    ids = data.patient_ids[len(own.samples):]
    added = data.samples[len(own.samples):].numpy()
    assert len(canaries) == 40 and len(added) == K * int(canaries.included.sum()) > 0
    # Included canaries only, all k records each, under the canary's own id.
    assert ids == tuple(f"canary-{g}" for g in np.repeat(np.flatnonzero(canaries.included), K))
    np.testing.assert_allclose(added, canaries.records[canaries.record_included], atol=1e-6)


def test_record_level_sites_keep_one_record_canaries(small_run):
    run = replace(small_run, canaries=40)
    canaries = simulation_canaries(run)

    assert run.unit == "record" and len(canaries.records) == len(canaries) == 40
    data = site_training_data(SiteConfig.for_simulation(run, 0), run)
    assert data.patient_ids[-int(canaries.included.sum()):] == tuple(
        f"canary-{i}" for i in np.flatnonzero(canaries.included))


def test_unit_scores_are_means_and_a_split_unit_is_refused():
    groups, means = mean_by_group(np.array([1.0, 3.0, 10.0, 0.0]), np.array([1, 1, 0, 0]))
    assert groups.tolist() == [0, 1] and means.tolist() == [5.0, 2.0]

    x = np.random.default_rng(1).normal(size=(4, 1, 8)).astype(np.float32)
    gan = GanPair(generator=_Replay(x), discriminator=_NearestMember(x), latent_dim=4, num_classes=2)
    with pytest.raises(ValueError, match="both member and non-member"):
        audit_generator(gan=gan, members=x[:2], member_labels=np.zeros(2), non_members=x[2:],
                        non_member_labels=np.zeros(2), reference=x, reference_labels=np.zeros(4),
                        attacks=["gan_leaks"], n_synthetic=8, member_groups=np.array([0, 1]),
                        non_member_groups=np.array([1, 2]))


class _Replay(nn.Module):
    """A generator that memorised its training records (the included canary patients)."""

    def __init__(self, members: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("members", torch.from_numpy(members).float())  # (n, 1, L)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.members[(z[:, 0].abs() * 1e6).long() % len(self.members)]


class _NearestMember(nn.Module):
    """A discriminator that memorised too: minus the distance to the nearest member."""

    def __init__(self, members: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("members", torch.from_numpy(members).float())

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return -torch.cdist(x.flatten(1), self.members.flatten(1)).min(dim=1).values


def test_the_patient_level_bound_fires_on_a_generator_that_memorised_the_canary_patients(patient_run):
    canaries = simulation_canaries(patient_run)
    members, _ = canaries.included_records()
    gan = GanPair(generator=_Replay(members), discriminator=_NearestMember(members), latent_dim=8, num_classes=2)

    scopes = audit_federation(run=patient_run, gan=gan, reference_gan=None, attacks=["logan", "gan_leaks"],
                              n_synthetic=1500, seed=0)

    audits = scopes["site-0-canaries"]
    for audit in audits.values():
        # One guess per canary patient, not per record.
        assert audit.lower_bound.num_canaries == 40
        assert audit.result.num_members == int(canaries.included.sum())
        assert audit.result.auc > 0.99
    assert max(a.lower_bound.epsilon_lb for a in audits.values()) > 0.5


def _saved_run(run) -> RunDirectory:
    directory = RunDirectory(run.run_dir)
    directory.write_json("config.json", run.to_mapping())
    torch.manual_seed(run.seed)
    directory.save_checkpoint(1, gan_state(build_gan(run)), meta={})
    return directory


def test_the_manifest_round_trips_grouped_canaries_and_catches_a_regrouping(patient_run):
    from simulations.audit import CANARY_FILE, _check_manifest, write_canary_manifest

    path = write_canary_manifest(patient_run)
    stored, expected = CanarySet.load(path), simulation_canaries(patient_run)

    assert path == RunDirectory(patient_run.run_dir).root / CANARY_FILE
    for field in ("records", "labels", "included", "source_indices", "record_groups"):
        assert np.array_equal(getattr(stored, field), getattr(expected, field)), field
    _check_manifest(patient_run)  # the run's own manifest passes
    # The same config audited at record level would pair other canaries with these bits.
    with pytest.raises(ConfigError, match="does not match"):
        _check_manifest(replace(patient_run, privacy_unit="record"))


def test_the_table_and_json_state_the_unit_of_the_bound(patient_run, capsys):
    from medgan_cli.main import main

    run = replace(patient_run, canaries=16)
    directory = _saved_run(run)

    assert main(["audit", "--run-dir", run.run_dir, "--n-synthetic", "200"]) == 0

    report = json.loads((directory.root / "audit" / "audit.json").read_text())
    assert report["unit"] == "patient" and {s["unit"] for s in report["scopes"].values()} == {"patient"}
    assert report["split"]["canary_records"] == K
    assert report["scopes"]["site-0-canaries"]["attacks"]["logan"]["lower_bound"]["num_canaries"] == 16
    out = capsys.readouterr().out
    assert "| epsilon lower bound (per patient) | accountant epsilon (per patient) |" in out


def _report(units: list[str | None]) -> dict:
    result = {"auc": 0.5, "auc_ci_low": 0.4, "auc_ci_high": 0.6, "tpr_at_1pct_fpr": 0.01,
              "tpr_at_01pct_fpr": 0.0, "num_members": 8, "num_non_members": 8}
    audit = {"result": result, "lower_bound": {"epsilon_lb": 0.25}, "untrained_auc": 0.5,
             "violation": False, "verdict": "consistent"}
    return {"scopes": {f"site-{i}": {"accountant_epsilon": 4.0, "attacks": {"logan": audit},
                                     **({"unit": u} if u else {})} for i, u in enumerate(units)}}


def test_the_table_names_the_record_word_and_a_unit_per_row_when_scopes_differ():
    from simulations.audit import format_table

    assert "| epsilon lower bound (per beat) | accountant epsilon (per beat) |" in format_table(
        _report(["beat", "beat"]))
    mixed = format_table(_report(["image", "patient"]))
    assert "| epsilon lower bound | accountant epsilon |" in mixed
    assert "| 0.250 per image | 4.000 per image |" in mixed and "| 0.250 per patient | 4.000 per patient |" in mixed
    # A report written before scopes recorded their unit still renders, without one.
    assert "| 0.250 | 4.000 |" in format_table(_report([None]))
