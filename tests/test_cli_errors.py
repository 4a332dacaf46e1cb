"""Bad configuration on the command line is one line naming the key and the fix, not a
traceback, and nothing is written."""

import pytest

from simulations.cli import main


@pytest.mark.parametrize("override, message", [
    ("mode-seeking=0.1", r"medgan simulate: unknown run-config key 'mode-seeking'; known keys: .*mode-seeking-weight"),
    ("mode-seeking-weight=-1", r"medgan simulate: mode-seeking-weight=-1.0 must be >= 0"),
    ("generator-ema=1.0", r"medgan simulate: generator-ema=1.0 must be in \[0, 1\); 0 turns it off"),
    ("num-server-rounds=two", r"medgan simulate: run-config num-server-rounds='two' is not a valid int"),
])
def test_bad_run_config_is_one_clear_line_and_writes_nothing(tmp_path, override, message):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=message):
        main(["simulate", "--run-dir", str(run_dir), "--run-config", override])
    assert not run_dir.exists()
