"""Chest X-rays through the same federation path as ECG: patient-level site split from the
run config, a whole simulated federation, the report, and the synthetic DICOM export."""

import json

import numpy as np
import pydicom
import pytest

from medgan_core.config import RunConfig
from medgan_core.data.xray import load_xray_dataset
from medgan_core.errors import ConfigError
from medgan_core.export.dicom_export import export_synthetic_images
from medgan_core.modalities import get_modality
from medgan_core.modalities.xray import split_xray_patients, xray_share_weights
from medgan_core.site import SiteConfig, load_site_data

XRAY = {"modality": "xray", "model": "dcgan2d", "site-records": "1|1|1", "holdout-records": "1"}


@pytest.fixture(scope="module")
def kermany_64(xray_data_dir):
    images, labels, patients, _ = load_xray_dataset(xray_data_dir, size=64)
    return images, labels, patients


def _run(xray_data_dir, tmp_path, **overrides) -> RunConfig:
    raw = {**XRAY, "data-root": str(xray_data_dir), "run-dir": str(tmp_path / "run"), **overrides}
    return RunConfig.from_mapping(raw)


def test_share_weights_are_the_site_shares_then_the_holdout_share(xray_data_dir, tmp_path):
    run = _run(xray_data_dir, tmp_path, **{"site-records": "1|1|2", "holdout-records": "0.5"})
    assert xray_share_weights(run) == (1.0, 1.0, 2.0, 0.5)


@pytest.mark.parametrize("sites, holdout", [
    ("mitdb/106 mitdb/100|mitdb/105", "mitdb/114"),  # ECG records given to an X-ray run
    ("1|0|1", "1"),  # a site with no share
    ("1|1", "1 1"),  # two numbers in one group
])
def test_bad_share_specs_name_the_fix(xray_data_dir, tmp_path, sites, holdout):
    run = _run(xray_data_dir, tmp_path, **{"site-records": sites, "holdout-records": holdout})
    with pytest.raises(ConfigError, match="site-records='1\\|1\\|1'"):
        SiteConfig.for_simulation(run, 0)


def test_simulated_sites_and_holdout_partition_the_patients(xray_data_dir, tmp_path, kermany_64):
    images, labels, patients = kermany_64
    run = _run(xray_data_dir, tmp_path)
    groups = split_xray_patients(patients, weights=xray_share_weights(run), seed=run.seed)
    assert len(groups) == 4 and sum(len(g) for g in groups) == len(images) == 5190
    patient_sets = [{patients[i] for i in g} for g in groups]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not patient_sets[a] & patient_sets[b], f"groups {a} and {b} share a patient"
    assert all(1200 <= len(g) <= 1400 for g in groups)  # about a quarter each, in whole patients
    for k in range(3):
        site = SiteConfig.for_simulation(run, k)
        data = load_site_data(site.modality, site.data_paths, 64, site.patient_share)
        expected = groups[k]
        # The site holds exactly its group, in model units [-1, 1].
        np.testing.assert_allclose(data.samples[:, 0].numpy(), images[expected] * 2 - 1, atol=1e-6)
        np.testing.assert_array_equal(data.labels.numpy(), labels[expected])
    with pytest.raises(ConfigError, match="3 sites"):
        SiteConfig.for_simulation(run, 3)  # the held-out group is never a site


def test_ecg_simulation_sites_are_unchanged(tmp_path):
    run = RunConfig.from_mapping({"run-dir": str(tmp_path / "run")})
    site = SiteConfig.for_simulation(run, 0)
    assert site.patient_share is None
    assert [p.split("/")[-2:] for p in site.data_paths] == [["mitdb", "106"], ["mitdb", "100"]]


def test_exported_dicoms_read_back_as_the_generated_images(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((6, 32, 32))
    labels = np.array([0, 1, 0, 1, 1, 0])
    written = export_synthetic_images(images, labels, tmp_path / "export", ("NORMAL", "PNEUMONIA"))
    png = sorted((tmp_path / "export").rglob("*.png"))
    read = get_modality("xray").read_back([*written, *png], image_size=32)
    # Class from the folder, DICOM only (the PNG previews are not read twice), 8-bit
    # quantisation, model units [-1, 1].
    np.testing.assert_array_equal(read.labels.numpy(), labels)
    np.testing.assert_allclose((read.samples[:, 0].numpy() + 1) / 2, images, atol=0.5 / 255 + 1e-6)


def test_evaluation_data_is_the_simulated_sites_and_the_holdout(xray_data_dir, tmp_path, kermany_64):
    images, labels, patients = kermany_64
    run = _run(xray_data_dir, tmp_path)
    sites, holdout = get_modality("xray").evaluation_data(run)
    groups = split_xray_patients(patients, weights=xray_share_weights(run), seed=run.seed)
    assert [len(s) for s in sites] == [len(g) for g in groups[:-1]] and len(holdout) == len(groups[-1])
    assert set(holdout.patients) == {patients[i] for i in groups[-1]}
    assert not set(holdout.patients) & {p for s in sites for p in s.patients}
    np.testing.assert_allclose(holdout.samples[:, 0].numpy(), images[groups[-1]] * 2 - 1, atol=1e-6)


def _text_values(dataset: pydicom.Dataset) -> list[str]:
    values = []
    for element in dataset.iterall():
        if element.VR in ("SQ", "OB", "OW", "UN") or element.tag == 0x7FE00010:
            continue
        values += [str(v) for v in (element.value if element.VM > 1 else [element.value])]
    return values


@pytest.mark.slow
def test_three_site_xray_federation_end_to_end(tmp_path, xray_data_dir, kermany_64):
    from simulations.federation import resolve_run_config, run_federation
    from simulations.report import write_report

    run = resolve_run_config({**XRAY, "data-root": str(xray_data_dir), "run-dir": str(tmp_path / "run"),
                              "image-size": 32, "num-server-rounds": 2, "local-steps": 3, "batch-size": 16,
                              "target-epsilon": 4.0})
    run_federation(run)
    root = tmp_path / "run"
    history = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert [h["round"] for h in history] == [1, 2]
    assert all(len(h["sites"]) == 3 and not any("error" in s for s in h["sites"].values()) for h in history)

    report = write_report(root, n_per_class=12, classifier_epochs=1, classifier_seeds=(0,), encoder_epochs=1,
                          round_samples=8)
    assert set(report["privacy"]) == {"site-0", "site-1", "site-2"}
    for site in report["privacy"].values():
        assert site["within_budget"] and 0 < site["epsilon_spent"] <= 4.0
        assert [r for r, _ in site["epsilon_by_round"]][-2:] == [1, 2]
    assert report["modality"] == "xray" and report["sample_unit"] == "intensity [0, 1]"
    assert set(report["utility"]) == {"tstr", "tstr_exported", "trtr"}
    assert report["utility"]["tstr"]["num_test"] == sum(report["holdout_class_counts"].values())
    assert report["utility"]["tstr_exported"]["num_samples"] == 24
    # The independent classifier scores images too (32x32 here: not averaged down).
    gbt = report["utility_gbt"]
    assert all(0.0 <= gbt[row]["sensitivity"] <= 1.0 and gbt[row]["num_test"] == report["utility"][row]["num_test"]
               for row in ("tstr", "tstr_exported", "trtr"))
    assert "| sensitivity (recall of PNEUMONIA) |" in (root / "report.md").read_text()
    # The same sections as ECG: encoder-feature metrics, nearest-image fidelity (no DTW),
    # memorisation, augmentation at the smallest site, per-round rows.
    for name in ("NORMAL", "PNEUMONIA"):
        final = report["final_metrics"][name]
        assert {"fd", "precision", "recall", "density", "coverage", "mmd2", "rmse", "ssim"} <= set(final)
        assert "dtw_syn_to_real" not in final
        assert set(report["memorisation"][name]) == {"synthetic_to_train_rmse", "holdout_to_train_rmse"}
    assert report["encoder"]["backbone"] == "image" and (root / "encoder.pt").is_file()
    gain = report["augmentation_gain"]
    assert gain["num_synthetic"] == 24 and not set(gain["site_patients"]) & set(gain["test_patients"])
    assert [r["round"] for r in report["rounds_central"]] == [1, 2]
    assert {"figures/real_vs_synthetic_xrays.png", "figures/utility_curves.png"} <= set(report["figures"])
    assert (root / "figures" / "real_vs_synthetic_xrays.png").stat().st_size > 10_000
    assert (root / "report.md").read_text().count("| site-") == 3

    # The export: 12 DICOM + PNG per class, marked synthetic, with nothing of a source patient.
    _, _, patients = kermany_64
    source_ids = {p.lower() for p in patients}
    for name in ("NORMAL", "PNEUMONIA"):
        files = sorted((root / "synthetic_dicom" / name).glob("*.dcm"))
        assert len(files) == 12 and len(list((root / "synthetic_dicom" / name).glob("*.png"))) == 12
        for path in files:
            ds = pydicom.dcmread(path)
            assert ds.SyntheticData == "YES" and ds.PatientID == "SYNTHETIC" and ds.Modality == "OT"
            assert ds.StudyDate == "" and "PatientBirthDate" in ds and ds.PatientBirthDate == ""
            assert ds.Rows == ds.Columns == 32
            text = " ".join(_text_values(ds)).lower()
            assert not any(pid in text for pid in source_ids if len(pid) > 4)
            assert "kermany" not in text and "person" not in text
