"""The study: the settings are in-process federations of the site code,
the table's conclusions are computed (and can say yes), and a tiny grid runs end to end."""

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from simulations.study import StudyConfig, conclude, run_study, train_setting

TINY_SITES = {"site-records": "mitdb/106|mitdb/105", "holdout-records": "mitdb/116"}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_one_federated_round_is_fedavg_of_the_sites_first_local_round(tmp_path, monkeypatch):
    from medgan_core.site import INSECURE_SEED_VARIABLE
    from simulations.federation import resolve_run_config

    # Comparing two settings needs the same randomness in both: the site-local test switch.
    monkeypatch.setenv(INSECURE_SEED_VARIABLE, "11")
    run = resolve_run_config({**TINY_SITES, "run-dir": str(tmp_path / "local"), "num-server-rounds": 1,
                              "local-steps": 2, "batch-size": 32, "dp-enabled": False})
    local = train_setting("local", run)
    federated = train_setting("federated", replace(run, run_dir=str(tmp_path / "federated")))
    assert [h for h, _, _ in local] == ["site-0", "site-1"] and federated[0][0] == "federation"
    # Same initial weights and per-site seeds: round 1 of each site is identical in both settings.
    # Non-private sites weigh their updates by their exact sizes: 2027 and 2567 beats.
    (_, first, _), (_, second, _) = local
    got = federated[0][1]
    for key in first:
        expected = (2027.0 * first[key].double() + 2567.0 * second[key].double()) / (2027.0 + 2567.0)
        assert torch.allclose(got[key].double(), expected, atol=1e-6), key
    with pytest.raises(ValueError, match="centralized"):
        train_setting("pooled", run)


def _row(setting, eps, tstr, fd=100.0, std=0.0):
    return {"model": "m", "setting": setting, "target_epsilon": eps, "tstr_balanced_accuracy": tstr, "fd": fd,
            "tstr_std": std}


def test_conclusions_answer_both_questions_from_the_numbers():
    falls = [_row("federated", 1.0, 0.60, fd=300), _row("federated", math.inf, 0.90, fd=100),
             _row("local", 1.0, 0.55), _row("local", math.inf, 0.56)]
    lines = conclude(falls)
    assert any("m, federated: does utility fall as epsilon falls? yes" in line and "FD worsened" in line
               for line in lines)
    assert any("m, local: does utility fall as epsilon falls? no clear change" in line for line in lines)
    assert any("federated beat local-only" in line and "better beyond noise at 2 of 2" in line for line in lines)
    flat = conclude([_row("federated", 1.0, 0.70, std=0.05), _row("federated", math.inf, 0.75, std=0.05),
                     _row("local", 1.0, 0.72, std=0.05), _row("local", math.inf, 0.74, std=0.05)])
    assert any("no clear change" in line for line in flat)  # 0.05 < 2 x seed std = 0.10
    assert any("better beyond noise at 0 of 2" in line for line in flat)


def test_tiny_study_writes_an_honest_table(tmp_path):
    study = StudyConfig(out_dir=tmp_path / "study", models=("dcgan1d",), epsilons=(3.0, math.inf), rounds=1,
                        local_steps=2, batch_size=32, synthetic_per_class=20, classifier_epochs=1, classifier_seeds=(0,),
                        encoder_epochs=1, overrides=dict(TINY_SITES))
    result = run_study(study)
    out = Path(study.out_dir)
    assert all((out / name).is_file() for name in ("study.md", "study.csv", "study.json", "study.png"))
    rows = result["rows"]
    assert rows[0]["setting"] == "reference (TRTR)" and len(rows) == 1 + 2 * 3
    for row in rows[1:]:
        if math.isinf(row["target_epsilon"]):
            assert math.isinf(row["epsilon_spent"])
        else:  # the derived noise plans every holder's budget to (never above) the target
            assert 0.9 * 3.0 <= row["epsilon_spent"] <= 3.0
        assert len(row["holders"]) == (2 if row["setting"] == "local" else 1)
    with open(out / "study.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    saved = json.loads((out / "study.json").read_text())
    assert saved["conclusions"] == result["conclusions"]
    markdown = (out / "study.md").read_text()
    assert "does utility fall as epsilon falls?" in markdown and "does federated beat local-only" in markdown
    assert "1 rounds x 2 local steps" in markdown


def test_the_default_grid_is_every_registered_variant_that_fits_the_modality():
    from medgan_core.modalities import get_modality
    from simulations.study import study_models

    assert study_models(StudyConfig(), get_modality("ecg")) == (
        "bilstm_dcgan1d", "dcgan1d", "dcgan1d_smooth", "mlp1d", "vaegan1d", "wgan1d")
    assert study_models(StudyConfig(), get_modality("xray")) == ("dcgan2d", "dcgan2d_lowpass", "dcgan2d_smooth", "mlp2d", "vaegan2d", "wgan2d")
    assert study_models(StudyConfig(models=("wgan2d",)), get_modality("xray")) == ("wgan2d",)


def test_a_variant_that_does_not_fit_the_modality_is_refused_before_anything_runs(tmp_path):
    from medgan_cli.main import main
    from medgan_core.modalities import get_modality

    bundled = dict(get_modality("xray").bundled_simulation)
    study = StudyConfig(out_dir=tmp_path / "study", models=("dcgan2d", "dcgan1d"),
                        overrides={**bundled, "modality": "xray"})
    with pytest.raises(ValueError, match=r"'dcgan1d' does not generate image samples.*dcgan2d, dcgan2d_lowpass, dcgan2d_smooth, mlp2d, vaegan2d"):
        run_study(study)
    with pytest.raises(SystemExit, match=r"medgan study: model 'mlp2d' does not generate signal samples"):
        main(["study", "--models", "mlp2d", "--out", str(tmp_path / "study")])
    with pytest.raises(SystemExit, match=r"model 'wgan1d' does not generate image samples.*use one of dcgan2d"):
        main(["study", "--modality", "xray", "--models", "dcgan2d,wgan1d", "--out", str(tmp_path / "study")])
    with pytest.raises(ValueError, match="unknown GAN variant 'nope'"):
        run_study(replace(study, models=("nope",)))
    assert not (tmp_path / "study").exists()


def test_patient_level_dp_is_refused_for_a_vaegan_cell_before_anything_runs(tmp_path):
    from medgan_core.errors import ConfigError
    from medgan_core.modalities import get_modality

    overrides = {**get_modality("xray").bundled_simulation, "modality": "xray", "privacy-unit": "patient"}
    with pytest.raises(ConfigError, match="privacy-unit = 'record'"):
        run_study(StudyConfig(out_dir=tmp_path / "study", models=("dcgan2d", "vaegan2d"), overrides=overrides))
    assert not (tmp_path / "study").exists()


def test_a_tiny_xray_study_cell_runs_at_the_record_level(tmp_path):
    from medgan_core.modalities import get_modality

    overrides = {**get_modality("xray").bundled_simulation, "modality": "xray"}
    study = StudyConfig.quick(out_dir=tmp_path / "study", models=("vaegan2d",), epsilons=(3.0,),
                              settings=("centralized",), rounds=1, local_steps=2, batch_size=16,
                              synthetic_per_class=10, classifier_epochs=1, encoder_epochs=1, overrides=overrides)
    result = run_study(study)
    assert result["modality"] == "xray" and result["privacy_unit"] == "record" and result["image_size"] == 32
    (cell,) = result["rows"][1:]
    assert cell["model"] == "vaegan2d" and cell["holders"][0]["holder"] == "central"
    assert 0.9 * 3.0 <= cell["epsilon_spent"] <= 3.0
    assert "rmse" in cell and 0.0 <= cell["tstr_auroc"] <= 1.0
    markdown = (tmp_path / "study" / "study.md").read_text()
    assert "target ε (per image)" in markdown and "privacy-unit = 'record'" in markdown
    assert "NORMAL and PNEUMONIA" in markdown and "32x32 images" in markdown


def test_the_compact_table_has_one_row_per_variant_and_setting_and_one_column_per_epsilon():
    from simulations.study import compact_table

    rows = [{"model": "real data", "setting": "reference (TRTR)", "target_epsilon": None, "tstr_auroc": 0.99},
            {**_row("local", math.inf, 0.0), "tstr_auroc": 0.8},
            {**_row("local", 1.0, 0.0), "tstr_auroc": 0.6},
            {**_row("federated", "inf", 0.0), "tstr_auroc": 0.7}]  # as study.json stores no DP
    assert compact_table(rows, unit="per beat").splitlines() == [
        "ε per beat; one GAN seed per cell. Real training data (TRTR): 0.990.", "",
        "| variant | setting | ε = 1 | no DP |", "|---|---|---|---|",
        "| m | local | 0.600 | 0.800 |", "| m | federated | - | 0.700 |"]
