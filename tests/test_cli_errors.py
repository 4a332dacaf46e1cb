"""Bad configuration on the command line is one line naming the key and the fix, not a
traceback, and nothing is written."""

import pytest

from simulations.cli import main


@pytest.mark.parametrize("override, message", [
    ("mode-seeking=0.1", r"medgan simulate: unknown run-config key 'mode-seeking'; known keys: .*mode-seeking-weight"),
    ("mode-seeking-weight=-1", r"medgan simulate: run-config: mode-seeking-weight = -1 is invalid; use a finite "
                               r"number in \[0, 1000\]"),
    ("generator-ema=1.0", r"medgan simulate: run-config: generator-ema = 1.0 is invalid; use a finite number in \[0, 1\)"),
    ("num-server-rounds=two", r"medgan simulate: run-config: num-server-rounds = 'two' is invalid; use a whole number"),
    ("dp-enabled=maybe", r"medgan simulate: run-config: dp-enabled = 'maybe' is invalid; use true or false"),
    ("target-epsilon=nan", r"medgan simulate: run-config: target-epsilon = .*nan.* is invalid; use a finite number "
                           r"in \(0, 100\]"),
    ("target-epsilon=inf", r"target-epsilon = .*inf.* is invalid"),
    ("target-epsilon=1e9", r"target-epsilon = 1000000000.0 is invalid"),
    ("max-grad-norm=inf", r"max-grad-norm = .*inf.* is invalid"),
    ("batch-size=0", r"batch-size = 0 is invalid; use a whole number from 1"),
    ("model='dcgan9d'", r"model = 'dcgan9d' is not a registered GAN; use one of .*dcgan1d"),
    ("modality='mri'", r"modality = 'mri' is invalid; use one of 'ecg', 'xray'"),
])
def test_bad_run_config_is_one_clear_line_and_writes_nothing(tmp_path, override, message):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=message):
        main(["simulate", "--run-dir", str(run_dir), "--run-config", override])
    assert not run_dir.exists()
