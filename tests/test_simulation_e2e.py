"""A whole federation with Flower's simulation engine (Ray), on the bundled records:
run directory, ledgers, report and WFDB export."""

import json

import numpy as np
import pytest
import wfdb

from medgan_core.data.ecg import EcgConfig
from medgan_core.run_dir import RunDirectory
from privacy.accounting import epsilon_from_history


@pytest.mark.slow
def test_three_site_federation_end_to_end(tmp_path):
    from simulations.federation import resolve_run_config, run_federation
    from simulations.report import write_report

    from medgan_core.pretraining import PretrainingConfig, pretrain, save_pretrained

    # Round 1 starts from a (tiny) public pretraining on CPSC 2021 records no site holds.
    public = "cpsc2021/data_8_2 cpsc2021/data_8_3"
    pretrained = pretrain(resolve_run_config({"public-records": public, "batch-size": 32}),
                          PretrainingConfig(steps=2))
    save_pretrained(tmp_path / "pretrained", pretrained.gan, pretrained.provenance)
    run = resolve_run_config({"run-dir": str(tmp_path / "run"), "num-server-rounds": 2, "local-steps": 4,
                              "batch-size": 32, "target-epsilon": 4.0, "public-records": public,
                              "pretrained": str(tmp_path / "pretrained")})
    run_federation(run)
    directory = RunDirectory(run.run_dir)
    recorded = directory.read_json("public_pretraining.json")  # written by the ServerApp
    assert recorded["data-sha256"] == pretrained.provenance["data-sha256"] and "CC BY 4.0" in recorded["licence"]
    history = directory.read_metrics()
    assert [h["round"] for h in history] == [1, 2]
    assert all(len(h["sites"]) == 3 and not any("error" in s for s in h["sites"].values()) for h in history)
    assert (directory.checkpoints / "round-002.pt").exists() and (directory.checkpoints / "latest.pt").exists()
    # Every site's ledger advanced once per round, stayed within budget, and its recorded
    # epsilon equals a recomputation from its history.
    for site in range(3):
        raw = json.loads((directory.root / "sites" / f"site-{site}" / "privacy_ledger.json").read_text())
        assert [(e["purpose"], e["server_round"]) for e in raw["entries"]] == [
            ("label-prior", 0), ("dp-sgd", 1), ("dp-sgd", 2)]
        epsilons = [e["epsilon_after"] for e in raw["entries"]]
        assert epsilons[0] < epsilons[1] < epsilons[2] <= 4.0
        history_ = [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in raw["entries"]]
        assert epsilon_from_history(history_, delta=raw["target_delta"]) == pytest.approx(epsilons[-1])
    report = write_report(run.run_dir, n_per_class=40, dtw_samples=10, export_per_class=10)
    assert all(s["within_budget"] for s in report["privacy"].values())
    # A pretrained run is also scored against its public records alone (the baseline to beat).
    assert set(report["utility"]) == {"tstr", "tstr_exported", "trtr", "public"}
    assert report["utility"]["public"]["class_counts"] == {"N": 567, "V": 10} and "public" in report["utility_gbt"]
    assert report["utility"]["tstr_exported"]["num_samples"] >= 18  # 10 per class read back from the files
    assert (directory.root / "figures" / "real_vs_synthetic_beats.png").stat().st_size > 10_000
    assert (directory.root / "report.md").read_text().count("| site-") == 3
    assert report["public_pretraining"]["class-counts"] == {"N": 567, "V": 10}
    assert "Round 1 started from a public pretraining" in (directory.root / "report.md").read_text()
    for symbol in ("N", "V"):
        record = wfdb.rdrecord(str(directory.root / "synthetic_wfdb" / f"synthetic_{symbol}"))
        annotation = wfdb.rdann(str(directory.root / "synthetic_wfdb" / f"synthetic_{symbol}"), "atr")
        assert record.fs == 360 and record.units == ["mV"]
        assert set(annotation.symbol) == {symbol} and len(annotation.symbol) == 10
        assert np.isfinite(record.p_signal).all() and np.abs(record.p_signal).max() <= 1.1 * EcgConfig().amplitude_scale_mv
