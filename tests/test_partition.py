"""Label-skewed simulated sites (run-config ``partition='dirichlet'``): the Dirichlet split of
each class's patients, and how the modalities use it."""

import logging
from pathlib import Path

import numpy as np
import pytest

from medgan_core.config import RunConfig
from medgan_core.data.partition import dirichlet_patient_partition, dirichlet_record_groups, patient_labels
from medgan_core.errors import ConfigError
from medgan_core.modalities import get_modality
from medgan_core.modalities.ecg12 import ecg12_split
from medgan_core.modalities.xray import split_xray_patients, xray_share_weights
from medgan_core.site import SiteConfig, load_site_data

ECG12_ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg12" / "cinc2021"


def _labels(num_patients: int = 3000, rare_share: float = 0.4, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    return {f"p{i:05d}": int(rng.random() < rare_share) for i in range(num_patients)}


def _max_class_share(labels: dict[str, int], sites: list[list[str]]) -> float:
    """Mean over sites of the largest class's share of the site's patients."""
    shares = []
    for site in sites:
        counts = np.bincount([labels[p] for p in site], minlength=2)
        shares.append(counts.max() / counts.sum())
    return float(np.mean(shares))


def test_the_split_is_a_function_of_the_seed_not_of_the_order():
    labels = _labels(600)
    reversed_labels = dict(reversed(list(labels.items())))
    first = dirichlet_patient_partition(labels, num_sites=3, alpha=0.5, seed=7)
    assert dirichlet_patient_partition(reversed_labels, num_sites=3, alpha=0.5, seed=7) == first
    assert dirichlet_patient_partition(labels, num_sites=3, alpha=0.5, seed=8) != first


@pytest.mark.parametrize("alpha", [0.05, 1.0, 100.0])
def test_every_patient_is_on_exactly_one_site(alpha):
    labels = _labels(900)
    sites = dirichlet_patient_partition(labels, num_sites=4, alpha=alpha, seed=3, min_patients=5)
    every = [p for site in sites for p in site]
    assert len(every) == len(set(every)) == len(labels)
    assert set(every) == set(labels)
    assert min(len(site) for site in sites) >= 5


def test_large_alpha_gives_every_site_about_the_overall_class_mix():
    labels = _labels(3000, rare_share=0.4)
    overall = np.mean(list(labels.values()))
    for seed in range(5):
        sites = dirichlet_patient_partition(labels, num_sites=3, alpha=100.0, seed=seed)
        for site in sites:
            assert abs(np.mean([labels[p] for p in site]) - overall) < 0.08
        assert abs(_max_class_share(labels, sites) - (1 - overall)) < 0.05


def test_small_alpha_gives_sites_dominated_by_one_class():
    labels = _labels(3000, rare_share=0.4)
    near_iid = np.mean([_max_class_share(labels, dirichlet_patient_partition(labels, num_sites=3, alpha=100.0,
                                                                              seed=s)) for s in range(10)])
    skewed = np.mean([_max_class_share(labels, dirichlet_patient_partition(labels, num_sites=3, alpha=0.1, seed=s))
                      for s in range(10)])
    # IID: the majority class's share, 0.6; Dir(0.1): most sites hold mostly one class.
    assert near_iid < 0.65 and skewed > 0.85


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_alpha_is_a_config_error(alpha):
    with pytest.raises(ConfigError, match="partition-alpha"):
        dirichlet_patient_partition(_labels(100), num_sites=3, alpha=alpha, seed=0)


def test_too_few_patients_is_a_config_error_naming_the_fix():
    with pytest.raises(ConfigError, match="partition='records'"):
        dirichlet_patient_partition(_labels(29), num_sites=3, alpha=1.0, seed=0, min_patients=10)


def test_a_split_that_cannot_fill_every_site_is_a_config_error():
    # 30 patients of one class, 3 sites of at least 10 each: only a draw within 1/30 of
    # (1/3, 1/3, 1/3) passes, which Dir(0.01) essentially never gives.
    one_class = {f"p{i:02d}": 0 for i in range(30)}
    with pytest.raises(ConfigError, match="larger partition-alpha"):
        dirichlet_patient_partition(one_class, num_sites=3, alpha=0.01, seed=0, min_patients=10)


def test_a_patient_counts_under_its_majority_class_a_tie_under_the_rarer():
    ids = ["a", "a", "a", "b", "b", "c", "c", "c", "c"]
    labels = [0, 0, 1, 0, 1, 0, 0, 0, 0]  # class 1 is rarer overall (2 of 9)
    assert patient_labels(ids, labels) == {"a": 0, "b": 1, "c": 0}


def test_record_groups_keep_every_record_of_a_patient_together():
    rng = np.random.default_rng(0)
    ids = [f"p{int(i)}" for i in rng.integers(0, 200, size=1000)]
    labels = [hash(pid) % 2 for pid in ids]
    groups = dirichlet_record_groups(ids, labels, num_sites=3, alpha=0.3, seed=1)
    assert sorted(np.concatenate(groups).tolist()) == list(range(1000))
    patient_sets = [{ids[i] for i in g} for g in groups]
    assert not (patient_sets[0] & patient_sets[1] or patient_sets[0] & patient_sets[2]
                or patient_sets[1] & patient_sets[2])


@pytest.mark.parametrize("overrides", [{"partition": "label"}, {"partition-alpha": 0},
                                       {"partition-alpha": -0.5}, {"partition-alpha": "nan"}])
def test_the_run_config_refuses_bad_partition_keys(overrides):
    with pytest.raises(ConfigError, match="partition"):
        RunConfig.from_mapping(overrides)


# ---- modalities ----

XRAY = {"modality": "xray", "model": "dcgan2d", "site-records": "1|1|1", "holdout-records": "1", "image-size": 32}


def _xray_run(xray_data_dir, tmp_path, **overrides) -> RunConfig:
    return RunConfig.from_mapping({**XRAY, "data-root": str(xray_data_dir), "run-dir": str(tmp_path / "run"),
                                   **overrides})


def test_records_partition_leaves_the_xray_sites_as_they_were(xray_data_dir, tmp_path):
    default = _xray_run(xray_data_dir, tmp_path)
    explicit = _xray_run(xray_data_dir, tmp_path, partition="records", **{"partition-alpha": 0.1})
    assert default.dirichlet_alpha is None and explicit.dirichlet_alpha is None
    for k in range(3):
        before, after = SiteConfig.for_simulation(default, k), SiteConfig.for_simulation(explicit, k)
        assert before.patient_share == after.patient_share and before.patient_share.alpha is None
        a = load_site_data(before.modality, before.data_paths, 32, before.patient_share)
        b = load_site_data(after.modality, after.data_paths, 32, after.patient_share)
        assert a.patient_ids == b.patient_ids


def test_dirichlet_xray_sites_are_skewed_disjoint_and_keep_the_holdout(xray_data_dir, tmp_path):
    run = _xray_run(xray_data_dir, tmp_path, partition="dirichlet", **{"partition-alpha": 0.1})
    sites, holdout = get_modality("xray").evaluation_data(run)
    records_sites, records_holdout = get_modality("xray").evaluation_data(_xray_run(xray_data_dir, tmp_path))
    assert set(holdout.patients) == set(records_holdout.patients)  # every alpha is scored on the same patients
    patient_sets = [set(site.patients) for site in sites]
    assert set().union(*patient_sets) == set().union(*(set(s.patients) for s in records_sites))
    assert sum(map(len, patient_sets)) == len(set().union(*patient_sets))  # no patient on two sites
    assert min(map(len, patient_sets)) >= 10
    max_share = np.mean([max(site.labels.float().mean().item(), 1 - site.labels.float().mean().item())
                         for site in sites])
    assert max_share > 0.8
    for k in range(3):  # what a site trains on is what the report calls its data
        config = SiteConfig.for_simulation(run, k)
        data = load_site_data(config.modality, config.data_paths, 32, config.patient_share)
        assert sorted(data.patient_ids) == sorted(sites[k].patients)
    audit_non_members, audit_reference = get_modality("xray").audit_holdout(
        config.audit_paths, image_size=32, audit_share=config.audit_share)
    assert set(audit_non_members.patient_ids) | set(audit_reference.patient_ids) == set(holdout.patients)


def test_the_run_config_minimum_reaches_the_xray_sites(xray_data_dir, tmp_path):
    run = _xray_run(xray_data_dir, tmp_path, partition="dirichlet",
                    **{"partition-alpha": 0.1, "partition-min-patients": 300})
    sites, _ = get_modality("xray").evaluation_data(run)
    assert min(len(set(site.patients)) for site in sites) >= 300
    with pytest.raises(ConfigError, match="partition-min-patients"):
        get_modality("xray").evaluation_data(_xray_run(xray_data_dir, tmp_path, partition="dirichlet",
                                                       **{"partition-min-patients": 800}))  # 3 x 800 > 2,122


def test_the_xray_split_function_needs_labels_for_a_dirichlet_split(xray_data_dir, tmp_path):
    run = _xray_run(xray_data_dir, tmp_path)
    with pytest.raises(ValueError, match="labels"):
        split_xray_patients(["a", "b", "c", "d"], weights=xray_share_weights(run), seed=0, alpha=1.0)


def test_bundled_mitbih_is_too_few_patients_for_a_dirichlet_split(tmp_path):
    run = RunConfig.from_mapping({"run-dir": str(tmp_path / "run"), "partition": "dirichlet"})
    with pytest.raises(ConfigError, match="partition='records'"):
        SiteConfig.for_simulation(run, 0)


def test_a_dirichlet_ecg_split_deals_whole_records_when_the_minimum_allows(tmp_path):
    records = {"run-dir": str(tmp_path / "run")}
    run = RunConfig.from_mapping({**records, "partition": "dirichlet", "partition-alpha": 100.0,
                                  "partition-min-patients": 2})
    sites = [[Path(p).name for p in SiteConfig.for_simulation(run, k).data_paths] for k in range(3)]
    assert sorted(r for site in sites for r in site) == sorted(["106", "100", "105", "123", "108", "121", "800"])
    assert all(len(site) >= 2 for site in sites)
    assert SiteConfig.for_simulation(run, 0).audit_paths == SiteConfig.for_simulation(
        RunConfig.from_mapping(records), 0).audit_paths  # the held-out patients are unchanged


def test_records_partition_leaves_the_ecg_sites_as_they_were(tmp_path):
    run = RunConfig.from_mapping({"run-dir": str(tmp_path / "run"), "partition": "records"})
    assert [[Path(p).name for p in SiteConfig.for_simulation(run, k).data_paths] for k in range(3)] == [
        ["106", "100"], ["105", "123"], ["108", "121", "800"]]


def test_dirichlet_ecg12_pools_the_institutions_and_keeps_the_holdout(tmp_path):
    base = {"modality": "ecg12", "data-root": str(ECG12_ROOT), "site-records": "E|JS|HR", "holdout-records": "0.2",
            "run-dir": str(tmp_path / "run"), "seed": 7}
    by_institution, holdout = ecg12_split(RunConfig.from_mapping(base))
    skewed, skewed_holdout = ecg12_split(RunConfig.from_mapping({**base, "partition": "dirichlet",
                                                                 "partition-alpha": 100.0}))
    assert skewed_holdout == holdout
    assert sorted(r for site in skewed for r in site) == sorted(r for site in by_institution for r in site)
    assert all(len(site) >= 10 for site in skewed)
    assert any(len({r.rstrip("0123456789") for r in site}) > 1 for site in skewed)  # institutions mixed


def test_simulate_logs_each_sites_class_counts(xray_data_dir, tmp_path, caplog):
    from simulations.federation import log_site_class_counts

    run = _xray_run(xray_data_dir, tmp_path, partition="dirichlet", **{"partition-alpha": 100.0})
    with caplog.at_level(logging.INFO, logger="simulations.federation"):
        counts = log_site_class_counts(run)
    assert len(counts) == 3 and all(set(c.per_class) == {"NORMAL", "PNEUMONIA"} for c in counts)
    sites, _ = get_modality("xray").evaluation_data(run)
    assert [sum(c.per_class.values()) for c in counts] == [len(s) for s in sites]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[0].startswith("site-0 (partition dirichlet, alpha 100)")
    assert f"NORMAL {counts[0].per_class['NORMAL']} (" in lines[0]
