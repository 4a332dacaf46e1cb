"""`medgan compare`: the privacy-utility table over finished runs' report.json files."""

from __future__ import annotations

import json
import math

import pytest

from medgan_core.errors import ConfigError
from medgan_cli.main import main
from simulations.compare import compare_runs


def _write_report(run_dir, *, dp: bool, spent: list[float], tstr: float):
    run_dir.mkdir(parents=True)
    report = {
        "modality": "ecg",
        "dp_enabled": dp,
        "privacy": {f"site-{i}": {"epsilon_spent": e} for i, e in enumerate(spent)},
        "utility": {"tstr": {"balanced_accuracy": tstr, "auroc": 0.9}, "trtr": {"balanced_accuracy": 0.92}},
        "final_metrics": {"N": {"fd": 1.0, "dtw_syn_to_real": 2.0}, "V": {"fd": 3.0, "dtw_syn_to_real": 4.0}},
        "augmentation_gain": {"gain_balanced_accuracy": 0.01},
    }
    (run_dir / "report.json").write_text(json.dumps(report))


def test_rows_take_the_weakest_site_and_sort_by_epsilon(tmp_path):
    _write_report(tmp_path / "nodp", dp=False, spent=[], tstr=0.8)
    _write_report(tmp_path / "eps10", dp=True, spent=[9.9, 9.95, 9.2], tstr=0.7)
    _write_report(tmp_path / "eps3", dp=True, spent=[2.5, 2.99], tstr=0.6)
    rows = compare_runs([tmp_path / "nodp", tmp_path / "eps10", tmp_path / "eps3"], tmp_path / "out")

    assert [r["epsilon"] for r in rows] == [2.99, 9.95, math.inf]
    assert [r["tstr_balanced_accuracy"] for r in rows] == [0.6, 0.7, 0.8]
    assert rows[0]["fd"] == 2.0 and rows[0]["dtw_syn_to_real"] == 3.0 and rows[0]["modality"] == "ecg"
    assert rows[0]["rmse"] is None  # a metric the reports lack is n/a, not 0
    table = (tmp_path / "out" / "privacy_utility.md").read_text()
    assert "| 2.990 |" in table and "inf (no DP)" in table
    assert (tmp_path / "out" / "privacy_utility.png").stat().st_size > 5_000
    assert len((tmp_path / "out" / "privacy_utility.csv").read_text().splitlines()) == 4


def test_a_run_without_a_report_is_named_with_the_fix(tmp_path):
    _write_report(tmp_path / "a", dp=True, spent=[1.0], tstr=0.6)
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigError, match=r"b/report.json: no report; run `medgan report --run-dir"):
        compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    with pytest.raises(SystemExit, match="at least two"):
        main(["compare", "--run-dir", str(tmp_path / "a"), "--out", str(tmp_path / "out")])


def test_the_modality_is_read_from_the_report_never_guessed(tmp_path):
    _write_report(tmp_path / "a", dp=True, spent=[1.0], tstr=0.6)
    _write_report(tmp_path / "b", dp=True, spent=[2.0], tstr=0.7)
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    report["modality"] = "xray"
    (tmp_path / "b" / "report.json").write_text(json.dumps(report))
    rows = compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert [r["modality"] for r in rows] == ["ecg", "xray"]
    del report["modality"]
    (tmp_path / "b" / "report.json").write_text(json.dumps(report))
    with pytest.raises(ConfigError, match="records no modality"):
        compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
