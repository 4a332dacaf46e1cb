"""docs/examples/api_example.py, the runnable example of docs/api.md, run as a user runs it:
a separate Python process, from another working directory. Then the run it made is read
back through the same API and the WFDB files with wfdb itself."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "api_example.py"


def _example_module():
    spec = importlib.util.spec_from_file_location("api_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines main(); runs nothing at import
    return module


@pytest.mark.slow
def test_api_example_trains_a_federation_and_writes_the_generators_beats_as_wfdb(tmp_path):
    from medgan_core.data.ecg import EcgConfig
    from medgan_core.generate import load_run_config, load_run_gan, sample_per_class
    from medgan_core.run_dir import RunDirectory
    from simulations.report import site_privacy_summary

    per_class = _example_module().BEATS_PER_CLASS
    out = tmp_path / "out"
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    done = subprocess.run([sys.executable, str(EXAMPLE), str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # One round in which all three simulated sites trained, each within its budget.
    run = load_run_config(out / "run")
    history = RunDirectory(run.run_dir).read_metrics()
    assert [h["round"] for h in history] == [1] and history[0]["trained"] == 3
    privacy = site_privacy_summary(run)
    assert sorted(privacy) == ["site-0", "site-1", "site-2"]
    assert all(0 < s["epsilon_spent"] <= s["target_epsilon"] == 10.0 for s in privacy.values())
    for site, summary in privacy.items():
        assert f"{site}: epsilon {summary['epsilon_spent']:.3f} of 10 per record" in done.stdout

    # The files hold the loaded generator's beats (seed 0), in mV at 360 Hz, one .atr
    # annotation per beat: what the example sampled, not merely some readable record.
    config = EcgConfig()
    gan, _ = load_run_gan(run.run_dir)
    beats, labels = sample_per_class(gan, per_class, seed=0)
    for index, symbol in enumerate(config.class_names):
        record_path = out / "synthetic_wfdb" / f"synthetic_{symbol}"
        assert all(record_path.with_name(record_path.name + ext).is_file() for ext in (".hea", ".dat", ".atr"))
        record = wfdb.rdrecord(str(record_path))
        annotation = wfdb.rdann(str(record_path), "atr")
        assert record.fs == 360 and record.units == ["mV"] and record.sig_name == ["MLII"]
        assert annotation.symbol == [symbol] * per_class
        expected = resample_poly(config.to_millivolts(beats[labels == index, 0]), 360, config.model_fs, axis=1)
        # Stored as 16-bit integers at 1000 per mV: within half a microvolt.
        np.testing.assert_allclose(record.p_signal[:, 0], expected.reshape(-1), atol=5.1e-4)
