"""The run report: recomputed identically from a saved run, augmentation on disjoint
patients at the smallest site, per-round rows from the checkpoints and metrics.jsonl."""

import json
import math

import pytest
import torch

REPORT_ARGS = dict(n_per_class=40, dtw_samples=10, export_per_class=5, encoder_epochs=1, classifier_epochs=1,
                   classifier_seeds=(0,), round_samples=20)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A two-round run directory, as the ServerApp leaves it, built without Flower: two sites
    (mitdb/106 with 2027 beats, mitdb/105 with 2567), held-out patient mitdb/116."""
    from medgan_core.run_dir import RunDirectory
    from medgan_core.site import SiteConfig
    from simulations.federation import resolve_run_config
    from simulations.inprocess import run_inprocess_federation

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report") / "run"
    run = resolve_run_config({"run-dir": str(root), "site-records": "mitdb/106|mitdb/105",
                              "holdout-records": "mitdb/116", "num-server-rounds": 2, "local-steps": 2,
                              "batch-size": 32, "dp-enabled": False})
    directory = RunDirectory(root)
    directory.write_json("config.json", run.to_mapping())

    def record(done, state):
        directory.save_checkpoint(done.server_round, state, {"model": run.model})
        # What the ServerApp's recorder writes; round 2 had one refusal.
        refusals = ({"7": "medgan:budget-exhausted: the site's privacy budget does not allow this request"}
                    if done.server_round == 2 else {})
        directory.append_metrics({"round": done.server_round, "train": {"d-loss-fake": 1.0, "g-loss": 2.0},
                                  "evaluate": {"epsilon": 1.0}, "trained": 1, "refusals": refusals})

    run_inprocess_federation(run, sites=[SiteConfig.for_simulation(run, 0)], run_id="t", on_round=record)
    yield root
    torch.set_num_threads(threads)


def test_report_recomputes_identically_from_the_saved_run(saved_run):
    from simulations.report import write_report

    root = saved_run
    first = write_report(root, **REPORT_ARGS)
    first_json, first_md = (root / "report.json").read_text(), (root / "report.md").read_text()
    encoder = root / "encoder.pt"
    stamp = encoder.stat().st_mtime_ns
    second = write_report(root, **REPORT_ARGS)
    assert encoder.stat().st_mtime_ns == stamp  # the saved encoder was reused, not retrained
    assert (root / "report.json").read_text() == first_json
    assert (root / "report.md").read_text() == first_md
    assert second["final_metrics"] == first["final_metrics"] and second["utility"] == first["utility"]
    # The encoder is trained on the sites' training patients, never on the held-out one.
    assert first["encoder"]["trained_on"] == ["mitdb/105", "mitdb/106"]


def test_report_contents(saved_run):
    from simulations.report import write_report

    root = saved_run
    report = json.loads((root / "report.json").read_text()) if (root / "report.json").exists() else write_report(
        root, **REPORT_ARGS)
    # Existing consumers read these keys.
    assert report["modality"] == "ecg"
    assert set(report["utility"]) == {"tstr", "tstr_exported", "trtr"} and report["privacy"] == {}
    # The exported WFDB files were read back beat by beat: every exported beat, and no more.
    exported = report["utility"]["tstr_exported"]
    assert exported["num_samples"] == 2 * REPORT_ARGS["export_per_class"]
    assert report["export"] == {"dir": "synthetic_wfdb", "format": "WFDB (mV, 360 Hz, `.atr` symbols N/V)",
                                "files": 2, "read_back": 10}
    assert 0.0 <= exported["balanced_accuracy"] <= 1.0
    assert 0.0 <= report["utility"]["tstr"]["sensitivity"] <= 1.0  # recall of V, on the CNN rows too
    # The independent classifier: the same three training sets, the same held-out patients.
    gbt = report["utility_gbt"]
    assert gbt["classifier"] == "gradient-boosted trees on z-normalised samples, independent of the project's CNN"
    assert gbt["tstr_exported"]["num_samples"] == exported["num_samples"]
    for row in ("tstr", "tstr_exported", "trtr"):
        assert gbt[row]["num_test"] == report["utility"][row]["num_test"] and gbt[row]["seeds"] == 1
        for key in ("balanced_accuracy", "auroc", "sensitivity", "macro_f1"):
            assert 0.0 <= gbt[row][key] <= 1.0, (row, key)
        # One held-out patient: its breakdown is the pooled score again, for both classifiers.
        for scores in (gbt[row], report["utility"][row]):
            (patient, mine), = scores["per_patient"].items()
            assert patient == "mitdb/116" and sum(mine["num_per_class"]) == scores["num_test"]
            assert mine["auroc"] == pytest.approx(scores["auroc"])
            assert mine["recall_per_class"][1] == pytest.approx(scores["sensitivity"])
    for name in ("N", "V"):
        final, ref = report["final_metrics"][name], report["reference_metrics"][name]
        for key in ("fd", "precision", "recall", "density", "coverage", "mmd2", "dtw_syn_to_real",
                    "dtw_real_to_syn", "rmse", "mae", "psnr_db", "ssim"):
            assert math.isfinite(final[key]) and math.isfinite(ref[key]), key
        memorised = report["memorisation"][name]
        assert memorised["synthetic_to_train_rmse"] > 0 and memorised["holdout_to_train_rmse"] > 0
    # Augmentation: the smallest site (site-0, 2027 beats), tested on patients it never saw.
    gain = report["augmentation_gain"]
    assert gain["site"] == "site-0" and gain["site_patients"] == ["mitdb/106"]
    assert gain["test_patients"] == ["mitdb/116"] and not set(gain["site_patients"]) & set(gain["test_patients"])
    assert gain["num_synthetic"] == 2 * REPORT_ARGS["n_per_class"]
    # Per round: central scores of every checkpoint (sites score nothing on their records).
    assert [r["round"] for r in report["rounds_central"]] == [1, 2]
    assert all(math.isfinite(r["fd"]) and math.isfinite(r["dtw_syn_to_real"]) for r in report["rounds_central"])
    assert "rounds_federated" not in report
    # Refusals are results: counted by code and per round, and shown.
    assert report["refusals"] == {"total": 1, "by_code": {"medgan:budget-exhausted": 1},
                                  "rounds": [{"round": 2, "refused": 1, "trained": 1,
                                              "codes": ["medgan:budget-exhausted"]}]}
    assert {"figures/real_vs_synthetic_beats.png", "figures/training_curves.png",
            "figures/utility_curves.png"} <= set(report["figures"])
    markdown = (root / "report.md").read_text()
    assert "## Augmentation gain at the smallest site (site-0" in markdown
    assert "exported WFDB read back (10 beats)" in markdown
    assert ("### An independent classifier: gradient-boosted trees on z-normalised samples, independent of the "
            "project's CNN") in markdown
    assert markdown.count("| sensitivity (recall of V) |") == 3  # CNN, trees, augmentation gain
    assert markdown.count("| patient | N / V beats | synthetic: N called N | synthetic: V called V |") == 2
    assert markdown.count("| mitdb/116 | ") == 2
    assert "What the sample-space rows mean" in markdown and "Memorisation check" in markdown
    assert "| DTW synthetic -> nearest real (mV) |" in markdown and "| RMSE to nearest real (mV) |" in markdown
    assert "| 2 | 1 | 1 | medgan:budget-exhausted |" in markdown
    assert "Epsilon is per beat (one record), not per patient" in markdown


@pytest.mark.parametrize("public_records, expected", [
    ("cpsc2021/data_84_3 cpsc2021/data_8_2", {"N": 461, "V": 6}),  # 6 of CPSC 2021's 13 PVCs
    ("cpsc2021/data_101_6", None),  # no PVC: no classifier can be trained on it
])
def test_a_pretrained_run_is_scored_against_its_public_data_alone(saved_run, tmp_path, public_records, expected):
    # The baseline a synthetic set must beat to be worth the sites' privacy: both classifiers
    # trained on the public pretraining's own real records, tested on the same held-out patients.
    import shutil

    from medgan_core.run_dir import RunDirectory
    from simulations.report import write_report

    root = tmp_path / "run"
    shutil.copytree(saved_run, root)
    RunDirectory(root).write_json("public_pretraining.json", {  # as the ServerApp records it
        "pretrained": "pretrained/x", "public-records": public_records, "class-counts": {"N": 1, "V": 1},
        "licence": "CC BY 4.0", "data-sha256": "0" * 64, "training": {"steps": 1}})

    report = write_report(root, **REPORT_ARGS)

    public, markdown = report["utility"]["public"], (root / "report.md").read_text()
    if expected is None:
        assert "'V'" in public["unavailable"] and "public" not in report["utility_gbt"]
        assert "Public data alone: not scored (the public records hold no ['V'] record)." in markdown
        return
    assert public["class_counts"] == expected and public["num_samples"] == sum(expected.values())
    for scores in (public, report["utility_gbt"]["public"]):
        assert scores["num_test"] == report["utility"]["tstr"]["num_test"]
        assert 0.0 <= scores["balanced_accuracy"] <= 1.0 and 0.0 <= scores["auroc"] <= 1.0
    row = f"| public data alone (467 real beats of the pretraining, {expected}; no site's) |"
    assert markdown.count(row) == 2  # the CNN's table and the trees'
