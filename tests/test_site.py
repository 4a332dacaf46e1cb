"""A site's round: class-prior release, budget-derived noise, ledger before release."""

import json

import pytest

from medgan_core.models.state import gan_state
from medgan_core.models import build_gan
from medgan_core.site import SiteConfig, train_round
from privacy.accounting import epsilon_from_history
from simulations.inprocess import run_inprocess_federation


def _weights(run):
    return {k: v.numpy() for k, v in gan_state(build_gan(run)).items()}


def test_prior_released_once_and_rounds_compose(small_run):
    site = SiteConfig.for_simulation(small_run, 2)
    rounds = run_inprocess_federation(small_run, sites=[site], rounds=2, run_id="t").rounds
    first, second = (r.train[site.site_id] for r in rounds)
    raw = json.loads(site.ledger_path.read_text())
    assert [e["purpose"] for e in raw["entries"]] == ["label-prior", "dp-sgd", "dp-sgd"]
    assert raw["entries"][0]["sample_rate"] == 1.0 and raw["entries"][0]["steps"] == 1
    prior = json.loads(site.ledger_path.with_name("label_prior.json").read_text())["prior"]
    assert sum(prior) == pytest.approx(1.0) and prior[0] > prior[1]  # N beats dominate
    history = [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in raw["entries"]]
    assert second["epsilon"] == pytest.approx(epsilon_from_history(history, delta=small_run.target_delta))
    assert first["epsilon"] < second["epsilon"] <= small_run.target_epsilon


def test_derived_noise_plans_the_remaining_rounds_to_the_target(small_run):
    site = SiteConfig.for_simulation(small_run, 0)
    spent = run_inprocess_federation(small_run, sites=[site], run_id="t").epsilon[site.site_id]
    # After the planned rounds the site is close to, and never above, its target.
    assert 0.97 * small_run.target_epsilon <= spent <= small_run.target_epsilon


def test_site_limits_cap_local_work(small_run):
    from dataclasses import replace

    site = replace(SiteConfig.for_simulation(small_run, 0), max_local_steps=2)
    _, metrics = train_round(site=site, run=small_run, run_id="t", server_round=1, weights=_weights(small_run))
    assert metrics["local-steps"] == 2


# ---- the site file: every value typed and checked before anything runs ------------------

_GOOD = {
    "site": 'id = "hospital-a"',
    "data": 'modality = "ecg"\ndir = "."\nrecords = ["100"]',
    "privacy": 'target-epsilon = 10.0\ntarget-delta = 1e-5\nledger = "state/ledger.json"',
    "limits": "max-local-steps = 500\nallow-non-private = false",
}


def _site_file(tmp_path, **sections):
    body = {**_GOOD, **sections}
    path = tmp_path / "site.toml"
    path.write_text("\n".join(f"[{name}]\n{text}" for name, text in body.items() if text is not None) + "\n")
    return path


def test_a_good_site_file_reads_with_types_and_defaults(tmp_path):
    site = SiteConfig.from_toml(_site_file(tmp_path))
    assert site.data_paths == (str(tmp_path / "100"),) and site.target_epsilon == 10.0
    assert site.allow_non_private is False and site.max_local_steps == 500
    assert site.release_audit is False and site.insecure_seed is None


@pytest.mark.parametrize("sections, message", [
    ({"privacy": 'target-epsilon = nan\ntarget-delta = 1e-5\nledger = "l.json"'},
     r"\[privacy\] target-epsilon = nan is invalid; use a finite number in \(0, 100\]"),
    ({"privacy": 'target-epsilon = inf\ntarget-delta = 1e-5\nledger = "l.json"'}, r"target-epsilon = inf is invalid"),
    ({"privacy": 'target-epsilon = 1e9\ntarget-delta = 1e-5\nledger = "l.json"'}, r"target-epsilon = 1000000000.0"),
    ({"privacy": 'target-epsilon = "10"\ntarget-delta = 0.5\nledger = "l.json"'}, r"target-delta = 0.5 is invalid"),
    ({"limits": 'allow-non-private = "false"'}, r"\[limits\] allow-non-private = 'false' is invalid; use true or false, unquoted"),
    ({"limits": 'allow-non-private = "no"'}, r"\[limits\] allow-non-private = 'no' is invalid; use true or false, unquoted"),
    ({"limits": "allow-non-private = 1"}, r"allow-non-private = 1 is invalid; use true or false"),
    ({"data": 'modality = "ecg"\ndir = "."\nrecords = "100"'}, r"\[data\] records = '100' is invalid; use a list"),
    ({"data": 'modality = "mri"\ndir = "."'}, r"\[data\] modality = 'mri' is invalid; use one of 'ecg', 'ecg12', 'xray'"),
    ({"limits": "max-local-steps = -5"}, r"max-local-steps = -5 is invalid; use a whole number from 1"),
    ({"limits": "max-local-step = 5"}, r"unknown key \[limits\] max-local-step; known keys in \[limits\]"),
    ({"privacy": None}, r"section \[privacy\] is missing"),
    ({"privacy": 'target-epsilon = 3.0\nledger = "l.json"'}, r"\[privacy\] target-delta is missing"),
    ({"release": "audit = true\naudit-noise-multiplier = 0.1"}, r"audit-noise-multiplier = 0.1 is invalid"),
])
def test_a_bad_site_file_is_one_line_naming_the_file_key_and_fix(tmp_path, sections, message):
    from medgan_core.errors import ConfigError

    path = _site_file(tmp_path, **sections)
    if message is None:
        assert SiteConfig.from_toml(path).allow_non_private is False
        return
    with pytest.raises(ConfigError, match=message) as caught:
        SiteConfig.from_toml(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_a_resumed_simulation_continues_the_ledgers_it_resumes_from(tmp_path):
    from simulations.federation import resolve_run_config
    from simulations.report import site_privacy_summary

    first = resolve_run_config({"run-dir": str(tmp_path / "a"), "local-steps": 2, "batch-size": 32,
                                "num-server-rounds": 3})
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps(first.to_mapping()))
    train_round(site=SiteConfig.for_simulation(first, 0), run=first, run_id="a", server_round=1,
                weights=_weights(first))
    # A resume of a resume: both continue site 0's ledger in the first run's directory.
    second = resolve_run_config({"run-dir": str(tmp_path / "b"), "local-steps": 2, "batch-size": 32,
                                 "num-server-rounds": 3, "resume-from": str(tmp_path / "a")})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps(second.to_mapping()))
    third = resolve_run_config({"run-dir": str(tmp_path / "c"), "local-steps": 2, "batch-size": 32,
                                "num-server-rounds": 3, "resume-from": str(tmp_path / "b")})
    site = SiteConfig.for_simulation(third, 0)
    assert site.ledger_path == SiteConfig.for_simulation(first, 0).ledger_path
    train_round(site=site, run=third, run_id="c", server_round=2, weights=_weights(third))
    entries = json.loads(site.ledger_path.read_text())["entries"]
    assert [e["purpose"] for e in entries] == ["label-prior", "dp-sgd", "dp-sgd"]  # the prior is not re-released
    assert not (tmp_path / "c" / "sites").exists()
    summary = site_privacy_summary(third)  # the report reads the continued ledger
    history = [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in entries]
    assert summary["site-0"]["epsilon_spent"] == pytest.approx(epsilon_from_history(history, delta=1e-5))


def test_a_deleted_or_swapped_ledger_never_makes_the_class_counts_free_again(small_run):
    from medgan_core.errors import ConfigError
    from privacy.ledger import LedgerMissing, PrivacyLedger

    site = SiteConfig.for_simulation(small_run, 1)
    weights = _weights(small_run)
    train_round(site=site, run=small_run, run_id="t", server_round=1, weights=weights)
    site.ledger_path.unlink()  # "reset the budget"
    with pytest.raises(LedgerMissing, match="medgan privacy ledger init"):
        train_round(site=site, run=small_run, run_id="t", server_round=2, weights=weights)
    # A deliberate new ledger does not inherit the old release for free either.
    PrivacyLedger.init(site.ledger_path, target_epsilon=10.0, target_delta=1e-5, force=True)
    with pytest.raises(ConfigError, match="not charged in the ledger"):
        train_round(site=site, run=small_run, run_id="t", server_round=2, weights=weights)
    assert json.loads(site.ledger_path.read_text())["entries"] == []


# ---- patient-level DP at a site ----------------------------------------------------------

def test_an_xray_site_trains_with_the_patient_as_the_unit_by_default(xray_data_dir, tmp_path):
    from medgan_core.config import RunConfig
    from privacy.ledger import PrivacyLedger

    run = RunConfig.from_mapping({"modality": "xray", "model": "dcgan2d", "site-records": "1|1|1",
                                  "holdout-records": "1", "data-root": str(xray_data_dir), "image-size": 32,
                                  "run-dir": str(tmp_path / "run"), "local-steps": 2, "batch-size": 16,
                                  "patients-per-step": 16, "num-server-rounds": 1})
    assert run.unit == "patient"  # privacy-unit = auto: patients for X-ray
    site = SiteConfig.for_simulation(run, 0)
    _, reply = train_round(site=site, run=run, run_id="t", server_round=1, weights=_weights(run))
    ledger = PrivacyLedger.read(site.ledger_path)
    assert ledger.unit == "patient" and [e.unit for e in ledger.entries] == ["patient", "patient"]
    # The released patient summary is bounded per patient: charged at sigma / sqrt(2).
    assert ledger.entries[0].noise_multiplier == pytest.approx(run.label_prior_noise / 2 ** 0.5)
    patients = len(set(site_patients := _patient_ids(site, run)))
    assert abs(reply["num-examples"] - patients) < 100 and len(site_patients) > patients  # P', not images
    assert ledger.entries[1].sample_rate == pytest.approx(16 / reply["num-examples"])
    assert 0 < reply["epsilon"] <= run.target_epsilon


def _patient_ids(site, run):
    from medgan_core.site import training_records

    return training_records(site, run).patient_ids


def test_patient_level_dp_on_the_bundled_ecg_sites_is_refused_before_anything_is_spent(tmp_path):
    from medgan_core.errors import ConfigError
    from medgan_cli.main import main

    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"site-0: 2 patients.*no useful training is possible"):
        main(["simulate", "--run-dir", str(run_dir), "--run-config", "privacy-unit='patient'"])
    assert not run_dir.exists()  # no ledger, no release
    # A deployed site that chose the patient unit in its TOML is held to it, and refuses
    # after its (charged) patient summary when the noise would drown the signal.
    from simulations.federation import resolve_run_config

    run = resolve_run_config({"run-dir": str(tmp_path / "r2"), "local-steps": 2, "batch-size": 32,
                              "patients-per-step": 1})  # P' >= 1 whatever the noise
    site = replace_unit(SiteConfig.for_simulation(run, 0), "patient")
    with pytest.raises(ConfigError, match="patient-level DP is infeasible here"):
        train_round(site=site, run=run, run_id="t", server_round=1, weights=_weights(run))


def replace_unit(site, unit):
    from dataclasses import replace

    return replace(site, privacy_unit=unit)
