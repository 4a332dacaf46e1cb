"""The ledger: durable, never resets, never exceeds the budget, survives a killed process."""

import ast
import json
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from privacy.accounting import epsilon_from_history
from privacy.ledger import (
    LEDGER_VERSION,
    PURPOSES,
    LedgerError,
    LedgerMissing,
    LedgerTampered,
    PrivacyBudgetExceeded,
    PrivacyLedger,
)

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
    # The lock file stays: deleting a flock'ed file would let two writers lock two files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.json", "l.json.lock"]


def test_killed_site_continues_from_its_ledger(tmp_path):
    """A process that records releases is SIGKILLed mid-run; a new one carries on."""
    path = tmp_path / "ledger.json"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from privacy.ledger import PrivacyLedger
        for r in range(1, 1000):
            ledger = PrivacyLedger.open({str(path)!r}, target_epsilon=100.0, target_delta=1e-5)
            ledger.record(run_id="r", server_round=r, history=[(1.0, 0.01, 10)])
            print(r, flush=True)
            time.sleep(0.05)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = PrivacyLedger.open(path, target_epsilon=100.0, target_delta=1e-5)
    rounds_done = len(before.entries)
    assert rounds_done >= 3
    spent_before = before.epsilon_spent()
    assert spent_before > 0
    # Restarted site: opens the same ledger and continues, never from zero.
    before.record(run_id="r", server_round=rounds_done + 1, history=[(1.0, 0.01, 10)])
    after = PrivacyLedger.open(path, target_epsilon=100.0, target_delta=1e-5)
    assert after.epsilon_spent() > spent_before
    assert after.epsilon_spent() == pytest.approx(
        epsilon_from_history([(1.0, 0.01, 10 * (rounds_done + 1))], delta=1e-5))


# ---------------------------------------------------------------------------------------
# 1. The budget: finite, 0 < epsilon <= 100, 0 < delta < 1, on open and on load.

def _v1_file(path, *, target_epsilon=3.0, target_delta=1e-5, entries=(), accountant="rdp"):
    """A version-1 ledger as the previous code wrote it (no hash chain; NaN allowed by json)."""
    default = {"run_id": "r", "server_round": 1, "noise_multiplier": 1.0, "sample_rate": 0.02, "steps": 50,
               "epsilon_after": 0.5, "timestamp": 1.0, "purpose": "dp-sgd"}
    path.write_text(json.dumps({"version": 1, "accountant": accountant, "target_epsilon": target_epsilon,
                                "target_delta": target_delta, "epsilon_spent": 0.0,
                                "entries": [{**default, **e} for e in entries]}))
    return path


@pytest.mark.parametrize("epsilon", [math.nan, math.inf, -math.inf, -1.0, 0.0, 100.5, 1e9])
def test_invalid_target_epsilon_is_refused_and_nothing_is_written(tmp_path, epsilon):
    with pytest.raises(ValueError, match="target_epsilon"):
        PrivacyLedger.open(tmp_path / "site" / "l.json", target_epsilon=epsilon, target_delta=1e-5)
    with pytest.raises(ValueError, match="target_epsilon"):
        PrivacyLedger(tmp_path / "l.json", target_epsilon=epsilon, target_delta=1e-5)
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("epsilon", [100.5, 1e9])
def test_epsilon_above_100_is_no_meaningful_guarantee(tmp_path, epsilon):
    with pytest.raises(ValueError, match="no meaningful guarantee"):
        PrivacyLedger.open(tmp_path / "l.json", target_epsilon=epsilon, target_delta=1e-5)
    assert PrivacyLedger.open(tmp_path / "l.json", target_epsilon=100.0, target_delta=1e-5).target_epsilon == 100.0


@pytest.mark.parametrize("delta", [math.nan, math.inf, 0.0, 1.0, -1e-5, 1.5])
def test_invalid_target_delta_is_refused(tmp_path, delta):
    with pytest.raises(ValueError, match="delta"):
        PrivacyLedger.open(tmp_path / "l.json", target_epsilon=3.0, target_delta=delta)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stored", [math.nan, math.inf, 1e9, -3.0])
def test_stored_invalid_target_is_refused_on_load_never_minimised(tmp_path, stored):
    """The observed bug: a stored NaN target became min(nan, 10) = nan, disabling every check."""
    path = _v1_file(tmp_path / "l.json", target_epsilon=stored)
    with pytest.raises(LedgerError, match=r"l\.json: the stored budget is invalid.*restore it from backup"):
        _open(path, eps=10.0)
    with pytest.raises(LedgerError):
        PrivacyLedger.read(path)


def test_stored_nan_target_in_a_version_2_file_is_refused(tmp_path):
    path = tmp_path / "l.json"
    _open(path).record(run_id="r", server_round=1, history=[(1.0, 0.02, 10)])
    raw = json.loads(path.read_text())
    raw["target_epsilon"] = math.nan
    path.write_text(json.dumps(raw))
    with pytest.raises(LedgerError, match="budget is invalid"):
        _open(path, eps=10.0)


# ---------------------------------------------------------------------------------------
# 2. Entries: validated when recorded and when loaded; nothing can hang.

BAD_STEPS = [
    (math.nan, 0.02, 10), (math.inf, 0.02, 10), (-1.0, 0.02, 10), (0.0, 0.02, 10),
    (1.0, 0.0, 10), (1.0, 1.5, 10), (1.0, math.nan, 10), (1.0, -0.1, 10),
    (1.0, 0.02, 0), (1.0, 0.02, -100), (1.0, 0.02, 2.5), (1.0, 0.02, True),
]


@pytest.mark.parametrize("sigma, rate, steps", BAD_STEPS)
def test_invalid_steps_are_refused_by_every_entry_point(tmp_path, sigma, rate, steps):
    ledger = _open(tmp_path / "l.json")
    with pytest.raises(ValueError):
        ledger.check_can_spend(noise_multiplier=sigma, sample_rate=rate, steps=steps)
    with pytest.raises(ValueError):
        ledger.record(run_id="r", server_round=1, history=[(sigma, rate, steps)])
    with pytest.raises(ValueError):
        ledger.charge(run_id="r", server_round=1, noise_multiplier=sigma, sample_rate=rate, steps=steps)
    assert PrivacyLedger.read(tmp_path / "l.json").entries == ()


def test_negative_steps_cannot_buy_back_epsilon(tmp_path):
    """The observed bug: steps=-100000 gave epsilon_after = -2751111 and a fresh budget."""
    ledger = _open(tmp_path / "l.json", eps=3.0)
    ledger.record(run_id="r", server_round=1, history=[(1.0, 0.02, 50)])
    with pytest.raises(ValueError, match="steps"):
        ledger.record(run_id="r", server_round=2, history=[(1.0, 0.02, -100000)])
    assert ledger.epsilon_spent() == pytest.approx(epsilon_from_history([(1.0, 0.02, 50)], delta=1e-5))


def test_unknown_purpose_is_refused(tmp_path):
    ledger = _open(tmp_path / "l.json")
    with pytest.raises(ValueError, match="purpose"):
        ledger.record(run_id="r", server_round=1, history=[(1.0, 0.02, 10)], purpose="free-lunch")
    assert set(PURPOSES) >= {"dp-sgd", "label-prior"}


@pytest.mark.parametrize("bad, field", [
    ({"noise_multiplier": math.nan}, "noise_multiplier"),  # made `medgan privacy ledger` hang
    ({"noise_multiplier": -1.0}, "noise_multiplier"),
    ({"sample_rate": 0.0}, "sample_rate"),
    ({"sample_rate": 2.0}, "sample_rate"),
    ({"steps": -100}, "steps"),
    ({"steps": 10.5}, "steps"),
    ({"purpose": "other"}, "purpose"),
    ({"epsilon_after": math.nan}, "epsilon_after"),
    ({"epsilon_after": math.inf}, "epsilon_after"),
    ({"server_round": -1}, "server_round"),
])
def test_invalid_stored_entry_is_refused_on_load(tmp_path, bad, field):
    path = _v1_file(tmp_path / "l.json", entries=[{}, bad])
    with pytest.raises(LedgerError, match=rf"l\.json: entry 1 .*{field}.*restore it from backup"):
        _open(path)


# ---------------------------------------------------------------------------------------
# 3. The accountant of record is RDP, fixed in code.

def test_ledger_accountant_is_fixed_to_rdp(tmp_path):
    ledger = _open(tmp_path / "l.json")
    assert ledger.accountant == "rdp"
    with pytest.raises(TypeError):
        PrivacyLedger.open(tmp_path / "l.json", target_epsilon=3.0, target_delta=1e-5, accountant="gdp")
    assert json.loads((tmp_path / "l.json").read_text())["accountant"] == "rdp"


@pytest.mark.parametrize("accountant", ["gdp", "prv", "anything"])
def test_ledger_naming_another_accountant_is_refused(tmp_path, accountant):
    path = _v1_file(tmp_path / "l.json", entries=[{}], accountant=accountant)
    with pytest.raises(LedgerError, match=f"accountant '{accountant}'.*RDP only"):
        _open(path)


# ---------------------------------------------------------------------------------------
# 4. Tamper evidence: a hash chain over the budget and every entry.

def _three_rounds(path):
    ledger = _open(path, eps=10.0)
    for round_ in (1, 2, 3):
        ledger.record(run_id="r", server_round=round_, history=[(1.0, 0.02, 10 * round_)])
    return json.loads(path.read_text())


def test_file_is_version_2_with_a_hash_chain(tmp_path):
    raw = _three_rounds(tmp_path / "l.json")
    assert raw["version"] == LEDGER_VERSION == 2
    assert raw["entry_count"] == 3
    assert raw["head_hash"] == raw["entries"][-1]["entry_hash"]
    assert len({e["entry_hash"] for e in raw["entries"]}) == 3


def _edit_steps(raw):
    raw["entries"][1]["steps"] = 1


def _drop_middle(raw):
    del raw["entries"][1]
    raw["entry_count"] = 2


def _drop_last(raw):
    del raw["entries"][-1]
    raw["entry_count"] = 2


def _drop_last_and_fix_head(raw):
    _drop_last(raw)
    raw["head_hash"] = raw["entries"][-1]["entry_hash"]


def _reorder(raw):
    raw["entries"][0], raw["entries"][1] = raw["entries"][1], raw["entries"][0]


def _raise_budget(raw):
    raw["target_epsilon"] = 50.0


def _edit_count(raw):
    raw["entry_count"] = 7


@pytest.mark.parametrize("tamper", [_edit_steps, _drop_middle, _drop_last, _reorder, _raise_budget, _edit_count])
def test_dropped_reordered_or_edited_entries_are_detected(tmp_path, tamper):
    path = tmp_path / "l.json"
    raw = _three_rounds(path)
    tamper(raw)
    path.write_text(json.dumps(raw, indent=2))
    with pytest.raises(LedgerTampered, match=r"l\.json: .*restore it from backup; never edit a ledger"):
        _open(path, eps=10.0)
    with pytest.raises(LedgerTampered):
        PrivacyLedger.read(path)


def test_raising_the_budget_of_an_empty_ledger_is_detected(tmp_path):
    path = tmp_path / "l.json"
    _open(path, eps=3.0)
    raw = json.loads(path.read_text())
    raw["target_epsilon"] = 50.0
    path.write_text(json.dumps(raw))
    with pytest.raises(LedgerTampered, match="budget header.*never edit a ledger"):
        _open(path, eps=50.0)


def test_truncation_with_a_rewritten_head_is_caught_by_the_logged_head(tmp_path, caplog):
    """Whoever rewrites count and head too can forge the chain (it is evidence, not a
    signature); the head hash logged on every write is the witness that catches it."""
    path = tmp_path / "l.json"
    with caplog.at_level(logging.DEBUG, logger="privacy.ledger"):
        raw = _three_rounds(path)
    witnessed = caplog.records[-1].getMessage()
    assert raw["head_hash"] in witnessed
    _drop_last_and_fix_head(raw)
    path.write_text(json.dumps(raw))
    assert PrivacyLedger.read(path).head_hash not in witnessed


def test_version_1_file_is_accepted_checked_and_upgraded_on_next_write(tmp_path, caplog):
    path = _v1_file(tmp_path / "l.json", entries=[{"server_round": 1}, {"server_round": 2}])
    with caplog.at_level(logging.WARNING, logger="privacy"):
        ledger = _open(path, eps=10.0)
    assert "version-1 ledger" in caplog.text and "upgrades it" in caplog.text
    assert ledger.version_on_disk == 1 and [e.status for e in ledger.entries] == ["settled", "settled"]
    ledger.record(run_id="r", server_round=3, history=[(1.0, 0.02, 50)])
    raw = json.loads(path.read_text())
    assert raw["version"] == 2 and raw["entry_count"] == 3 and raw["origin"] == "upgraded from version 1"
    assert PrivacyLedger.read(path).epsilon_spent() == pytest.approx(
        epsilon_from_history([(1.0, 0.02, 150)], delta=1e-5))


# ---------------------------------------------------------------------------------------
# 6. Charge before training, settle before release.

def _charge(ledger, round_=1, steps=100):
    return ledger.charge(run_id="r", server_round=round_, noise_multiplier=1.0, sample_rate=0.02, steps=steps)


def test_charge_is_durable_and_counted_in_full_before_training(tmp_path):
    path = tmp_path / "l.json"
    entry = _charge(_open(path, eps=10.0))
    on_disk = PrivacyLedger.read(path)  # what a process started after a crash would see
    assert [e.status for e in on_disk.entries] == ["pending"] and on_disk.pending == on_disk.entries
    assert on_disk.epsilon_spent() == pytest.approx(epsilon_from_history([(1.0, 0.02, 100)], delta=1e-5))
    assert entry.epsilon_after == pytest.approx(on_disk.epsilon_spent())


def test_settle_records_the_steps_actually_run_never_below_them(tmp_path):
    path = tmp_path / "l.json"
    ledger = _open(path, eps=10.0)
    ledger.record(run_id="r", server_round=1, history=[(0.8, 0.03, 40)])
    entry = _charge(ledger, round_=2, steps=100)
    settled = ledger.settle(entry, [(1.0, 0.02, 60), (1.0, 0.02, 10)])
    actual = epsilon_from_history([(0.8, 0.03, 40), (1.0, 0.02, 70)], delta=1e-5)
    assert settled.status == "settled" and settled.steps == 70 and settled.planned_steps == 100
    assert settled.epsilon_after == pytest.approx(actual) and settled.epsilon_after <= entry.epsilon_after
    assert PrivacyLedger.read(path).epsilon_spent() == pytest.approx(actual)


@pytest.mark.parametrize("history, reason", [
    ([(1.0, 0.02, 101)], "ran 101 steps, charged 100"),
    ([(0.5, 0.02, 50)], "ran noise 0.5"),
    ([(1.0, 0.05, 50)], "sample rate 0.05"),
    ([], "no DP-SGD steps"),
])
def test_settle_never_lowers_the_charge_below_what_ran(tmp_path, history, reason):
    path = tmp_path / "l.json"
    ledger = _open(path, eps=10.0)
    entry = _charge(ledger, steps=100)
    with pytest.raises(ValueError, match=reason):
        ledger.settle(entry, history)
    assert PrivacyLedger.read(path).entries[0].status == "pending"  # still counted at full cost


def test_only_the_charging_handle_can_settle(tmp_path):
    """A pending entry left by a crashed process stays at full cost: nobody knows what ran."""
    path = tmp_path / "l.json"
    entry = _charge(_open(path, eps=10.0))
    with pytest.raises(ValueError, match="did not charge"):
        _open(path, eps=10.0).settle(entry, [(1.0, 0.02, 1)])


def test_pending_charges_count_against_the_budget(tmp_path):
    ledger = _open(tmp_path / "l.json", eps=3.0)
    _charge(ledger, steps=400)  # epsilon 2.87 if all 400 steps run
    with pytest.raises(PrivacyBudgetExceeded, match="1 pending charge"):
        _charge(ledger, round_=2, steps=100)


def test_charge_over_budget_writes_nothing(tmp_path):
    path = tmp_path / "l.json"
    with pytest.raises(PrivacyBudgetExceeded):
        _charge(_open(path, eps=1.0), steps=5000)
    assert PrivacyLedger.read(path).entries == ()


# ---------------------------------------------------------------------------------------
# 7. Creation is explicit: a deleted ledger is never silently recreated.

def _used_site(tmp_path):
    site = tmp_path / "site"
    ledger = _open(site / "privacy_ledger.json")
    ledger.record(run_id="r", server_round=0, history=[(20.0, 1.0, 1)], purpose="label-prior")
    (site / "label_prior.json").write_text('{"prior": [0.5, 0.5]}')
    return site


def test_deleted_ledger_beside_site_state_is_refused_not_recreated(tmp_path):
    """The observed bug: the ledger came back empty and label_prior.json was reused uncharged."""
    site = _used_site(tmp_path)
    (site / "privacy_ledger.json").unlink()
    with pytest.raises(LedgerMissing) as error:
        _open(site / "privacy_ledger.json")
    message = str(error.value)
    assert "the ledger is missing but site state exists in" in message and "label_prior.json" in message
    assert "restore the ledger from backup" in message
    assert "medgan privacy ledger init" in message and "--force" in message
    assert "label_prior.json" in error.value.site_state
    assert not (site / "privacy_ledger.json").exists()
    with pytest.raises(LedgerMissing):
        with PrivacyLedger.locked(site / "privacy_ledger.json", target_epsilon=3.0, target_delta=1e-5):
            pass


@pytest.mark.parametrize("left_behind", ["privacy_ledger.json.lock", "privacy_ledger.json.bak",
                                         "privacy_ledger.2024-01-01.json", "label_prior.json"])
def test_each_kind_of_site_state_alone_blocks_recreation(tmp_path, left_behind):
    site = _used_site(tmp_path)
    for path in site.iterdir():
        if path.name != "privacy_ledger.json.lock":
            path.unlink()
    if left_behind != "privacy_ledger.json.lock":
        (site / "privacy_ledger.json.lock").unlink()
        (site / left_behind).write_text("x")
    with pytest.raises(LedgerMissing, match=left_behind.replace(".", r"\.")):
        _open(site / "privacy_ledger.json")


@pytest.mark.parametrize("existing", [[], ["site.toml"], ["site.toml", "evaluation_encoder.pt"],
                                      ["privacy_ledger.json.lock"], [".privacy_ledger.json.abc123.tmp"]])
def test_fresh_directory_gets_a_new_ledger(tmp_path, existing):
    """Fresh: no ledger-bound state. Configuration, an empty lock (a crash before the first
    write) and a temporary file of an interrupted first write do not count."""
    site = tmp_path / "site"
    site.mkdir()
    for name in existing:
        (site / name).write_text("" if name.endswith((".lock", ".tmp")) else "x")
    ledger = _open(site / "privacy_ledger.json")
    assert ledger.entries == () and ledger.origin == "created on first use in a fresh directory"
    assert (site / "privacy_ledger.json").exists()


def test_missing_directory_is_fresh(tmp_path):
    assert _open(tmp_path / "runs" / "sites" / "site-0" / "privacy_ledger.json").entries == ()


def test_read_never_creates(tmp_path):
    with pytest.raises(LedgerMissing, match="no privacy ledger here") as error:
        PrivacyLedger.read(tmp_path / "l.json")
    assert error.value.site_state == ()
    assert list(tmp_path.iterdir()) == []


def test_init_is_the_deliberate_way_to_start_over(tmp_path):
    site = _used_site(tmp_path)
    path = site / "privacy_ledger.json"
    with pytest.raises(LedgerError, match="never reset"):
        PrivacyLedger.init(path, target_epsilon=3.0, target_delta=1e-5, force=True)
    path.unlink()
    with pytest.raises(LedgerMissing, match="--force"):
        PrivacyLedger.init(path, target_epsilon=3.0, target_delta=1e-5)
    ledger = PrivacyLedger.init(path, target_epsilon=2.0, target_delta=1e-5, force=True)
    assert ledger.entries == () and ledger.budget_epsilon == 2.0
    assert "--force, over existing site state" in ledger.origin and "label_prior.json" in ledger.origin
    fresh = PrivacyLedger.init(tmp_path / "new" / "privacy_ledger.json", target_epsilon=3.0, target_delta=1e-5)
    assert fresh.origin == "medgan privacy ledger init"


def test_a_lowered_target_is_enforced_but_not_stored(tmp_path):
    path = tmp_path / "l.json"
    _open(path, eps=10.0)
    low = _open(path, eps=2.0)
    assert low.target_epsilon == 2.0 and low.budget_epsilon == 10.0
    low.record(run_id="r", server_round=1, history=[(1.0, 0.02, 10)])
    assert PrivacyLedger.read(path).budget_epsilon == 10.0


# ---------------------------------------------------------------------------------------
# Boundaries: privacy/ imports neither Flower nor medgan_core.

def test_privacy_package_imports_no_flower_and_no_medgan_core():
    forbidden = ("flwr", "medgan_core", "client", "server", "simulations", "medgan_cli")
    for source in sorted((ROOT / "privacy").rglob("*.py")):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{source.relative_to(ROOT)} imports {name}"


def test_the_unit_is_patient_only_when_every_release_was_patient_level(tmp_path):
    path = tmp_path / "units.json"
    ledger = PrivacyLedger.open(path, target_epsilon=10.0, target_delta=1e-5)
    assert ledger.unit == "record"  # nothing released: the weaker claim
    ledger.record(run_id="r", server_round=0, history=[(14.1, 1.0, 1)], purpose="label-prior", unit="patient")
    ledger.record(run_id="r", server_round=1, history=[(1.0, 0.05, 10)], unit="patient")
    assert PrivacyLedger.read(path).unit == "patient"
    ledger.record(run_id="r", server_round=2, history=[(1.0, 0.05, 10)])  # one record-level round
    reread = PrivacyLedger.read(path)  # the unit is part of each entry's hash-chained content
    assert reread.unit == "record" and [e.unit for e in reread.entries] == ["patient", "patient", "record"]
    raw = json.loads(path.read_text())
    raw["entries"][1]["unit"] = "record"  # an edit of the unit is tampering like any other
    path.write_text(json.dumps(raw))
    with pytest.raises(LedgerTampered):
        PrivacyLedger.read(path)
