"""The ledger: durable, never resets, never exceeds the budget, survives a killed process."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from privacy.accounting import epsilon_from_history
from privacy.ledger import PrivacyBudgetExceeded, PrivacyLedger

ROOT = Path(__file__).resolve().parents[1]


def _open(path, eps=3.0):
    return PrivacyLedger.open(path, target_epsilon=eps, target_delta=1e-5)


def test_epsilon_never_resets_across_reopen(tmp_path):
    path = tmp_path / "ledger.json"
    spent = []
    for round_ in range(1, 4):
        ledger = _open(path)  # a fresh process would do exactly this
        ledger.record(run_id="r", server_round=round_, history=[(1.0, 0.02, 50)])
        spent.append(_open(path).epsilon_spent())
    assert spent[0] < spent[1] < spent[2]
    assert spent[-1] == pytest.approx(epsilon_from_history([(1.0, 0.02, 150)], delta=1e-5))


def test_recorded_epsilon_equals_recomputation(tmp_path):
    ledger = _open(tmp_path / "l.json")
    entry = ledger.record(run_id="r", server_round=1, history=[(0.9, 0.03, 40)])
    raw = json.loads((tmp_path / "l.json").read_text())
    assert raw["epsilon_spent"] == pytest.approx(entry.epsilon_after)
    assert entry.epsilon_after == pytest.approx(epsilon_from_history([(0.9, 0.03, 40)], delta=1e-5))


def test_site_refuses_past_budget_and_never_exceeds_it(tmp_path):
    ledger = _open(tmp_path / "l.json", eps=2.0)
    refused = False
    for round_ in range(1, 100):
        try:
            ledger.check_can_spend(noise_multiplier=1.0, sample_rate=0.02, steps=100)
        except PrivacyBudgetExceeded as error:
            assert "would be exceeded" in str(error) and "fix" in str(error)
            refused = True
            break
        ledger.record(run_id="r", server_round=round_, history=[(1.0, 0.02, 100)])
        assert ledger.epsilon_spent() <= 2.0
    assert refused
    assert _open(tmp_path / "l.json", eps=2.0).epsilon_spent() <= 2.0


def test_config_cannot_raise_the_budget(tmp_path):
    _open(tmp_path / "l.json", eps=1.0)
    reopened = PrivacyLedger.open(tmp_path / "l.json", target_epsilon=50.0, target_delta=1e-5)
    assert reopened.target_epsilon == 1.0


def test_other_delta_is_refused(tmp_path):
    _open(tmp_path / "l.json")
    with pytest.raises(ValueError, match="delta"):
        PrivacyLedger.open(tmp_path / "l.json", target_epsilon=3.0, target_delta=1e-6)


def test_corrupt_ledger_is_a_clear_error_not_a_reset(tmp_path):
    path = tmp_path / "l.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="never delete it"):
        _open(path)


def test_writes_leave_no_temporary_files(tmp_path):
    ledger = _open(tmp_path / "l.json")
    ledger.record(run_id="r", server_round=1, history=[(1.0, 0.02, 10)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.json"]


def test_killed_site_continues_from_its_ledger(tmp_path):
    """A process that records releases is SIGKILLed mid-run; a new one carries on."""
    path = tmp_path / "ledger.json"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from privacy.ledger import PrivacyLedger
        for r in range(1, 1000):
            ledger = PrivacyLedger.open({str(path)!r}, target_epsilon=1000.0, target_delta=1e-5)
            ledger.record(run_id="r", server_round=r, history=[(1.0, 0.01, 10)])
            print(r, flush=True)
            time.sleep(0.05)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = PrivacyLedger.open(path, target_epsilon=1000.0, target_delta=1e-5)
    rounds_done = len(before.entries)
    assert rounds_done >= 3
    spent_before = before.epsilon_spent()
    assert spent_before > 0
    # Restarted site: opens the same ledger and continues, never from zero.
    before.record(run_id="r", server_round=rounds_done + 1, history=[(1.0, 0.01, 10)])
    after = PrivacyLedger.open(path, target_epsilon=1000.0, target_delta=1e-5)
    assert after.epsilon_spent() > spent_before
    assert after.epsilon_spent() == pytest.approx(
        epsilon_from_history([(1.0, 0.01, 10 * (rounds_done + 1))], delta=1e-5))
