"""`medgan privacy ...`: the ledger's show / verify / init, and the labelled calculator.

Every error is one line naming the file and the fix (SystemExit, status 1), never a traceback."""

import argparse
import json
import math

import pytest

from privacy.accounting import epsilon_from_history
from privacy.calculator import PRIVACY_UNIT, add_arguments, main
from privacy.ledger import PrivacyLedger


def _run(*argv):
    parser = argparse.ArgumentParser(prog="medgan privacy")
    add_arguments(parser)
    return main(parser.parse_args([str(a) for a in argv]))


def _one_line_error(*argv) -> str:
    with pytest.raises(SystemExit) as error:
        _run(*argv)
    message = error.value.code
    assert isinstance(message, str) and "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture
def ledger_path(tmp_path):
    path = tmp_path / "site" / "privacy_ledger.json"
    ledger = PrivacyLedger.open(path, target_epsilon=5.0, target_delta=1e-5)
    ledger.record(run_id="r", server_round=1, history=[(1.0, 0.02, 100)])
    ledger.charge(run_id="r", server_round=2, noise_multiplier=1.0, sample_rate=0.02, steps=50)
    return path


def test_show_recomputes_epsilon_per_record_with_chain_and_pending(ledger_path, capsys):
    assert _run("ledger", "show", ledger_path) == 0
    shown = json.loads(capsys.readouterr().out)
    expected = epsilon_from_history([(1.0, 0.02, 150)], delta=1e-5)
    assert shown["epsilon_recomputed"] == pytest.approx(expected)
    assert shown["privacy_unit"] == PRIVACY_UNIT == "per record (one beat or one image)"
    assert PRIVACY_UNIT in shown["summary"] and shown["accountant"] == "rdp"
    assert shown["chain"].startswith("verified (2 entries")
    assert shown["releases"] == 2 and shown["steps"] == 150
    assert [p["server_round"] for p in shown["pending"]] == [2]


def test_ledger_path_alone_is_show(ledger_path, capsys):
    _run("ledger", "show", ledger_path)
    shown = capsys.readouterr().out
    assert _run("ledger", ledger_path) == 0
    assert capsys.readouterr().out == shown


def test_verify_passes_a_sound_ledger(ledger_path, capsys):
    assert _run("ledger", "verify", ledger_path) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{ledger_path}: ok, verified (2 entries") and "1 pending" in out and PRIVACY_UNIT in out


def test_verify_fails_a_damaged_ledger_in_one_line(ledger_path):
    raw = json.loads(ledger_path.read_text())
    raw["entries"][0]["steps"] = 1
    ledger_path.write_text(json.dumps(raw))
    message = _one_line_error("ledger", "verify", ledger_path)
    assert message.startswith(f"medgan privacy ledger verify: {ledger_path}: hash chain broken")
    assert "restore it from backup; never edit a ledger" in message


def test_ledger_with_nan_noise_is_an_error_not_a_hang(tmp_path):
    path = tmp_path / "privacy_ledger.json"
    path.write_text(json.dumps({"version": 1, "accountant": "rdp", "target_epsilon": 3.0, "target_delta": 1e-5,
                                "entries": [{"run_id": "r", "server_round": 1, "noise_multiplier": math.nan,
                                             "sample_rate": 0.02, "steps": 10, "epsilon_after": 0.1}]}))
    for action in ("show", "verify"):
        assert "noise_multiplier=nan must be finite" in _one_line_error("ledger", action, path)


def test_show_of_a_missing_ledger_is_one_line_and_creates_nothing(tmp_path):
    message = _one_line_error("ledger", "show", tmp_path / "privacy_ledger.json")
    assert "no privacy ledger here" in message and "init" in message
    assert list(tmp_path.iterdir()) == []


def test_init_creates_and_never_resets(tmp_path, capsys):
    path = tmp_path / "site" / "privacy_ledger.json"
    assert _run("ledger", "init", path, "--target-epsilon", 3, "--target-delta", 1e-5) == 0
    assert "new privacy ledger, budget epsilon 3 at delta 1e-05" in capsys.readouterr().out
    assert PrivacyLedger.read(path).budget_epsilon == 3.0
    assert "never reset" in _one_line_error("ledger", "init", path, "--target-epsilon", 3, "--target-delta", 1e-5,
                                            "--force")


def test_init_over_site_state_needs_force(ledger_path, capsys):
    (ledger_path.parent / "label_prior.json").write_text("{}")
    ledger_path.unlink()
    assert "the ledger is missing but site state exists" in _one_line_error("ledger", "show", ledger_path)
    message = _one_line_error("ledger", "init", ledger_path, "--target-epsilon", 3, "--target-delta", 1e-5)
    assert "--force" in message
    assert _run("ledger", "init", ledger_path, "--target-epsilon", 3, "--target-delta", 1e-5, "--force") == 0
    assert "--force, over existing site state" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    (["--target-epsilon", "3"], "needs --target-epsilon and --target-delta"),
    (["--target-epsilon", "1e9", "--target-delta", "1e-5"], "no meaningful guarantee"),
    (["--target-epsilon", "nan", "--target-delta", "1e-5"], "target_epsilon=nan"),
    (["--target-epsilon", "3", "--target-delta", "1"], "target_delta=1.0"),
])
def test_init_refuses_a_bad_budget(tmp_path, argv, expected):
    path = tmp_path / "privacy_ledger.json"
    assert expected in _one_line_error("ledger", "init", path, *argv)
    assert not path.exists()


def test_unknown_ledger_action_is_one_line(tmp_path):
    assert "expected [show|verify|init] PATH" in _one_line_error("ledger", "frob", tmp_path / "l.json")


CALC = ["--dataset-size", "4000", "--batch-size", "60", "--rounds", "4", "--local-steps", "200"]


def test_calculator_defaults_to_rdp_unlabelled(capsys):
    _run("epsilon", *CALC, "--noise-multiplier", "1.0")
    shown = json.loads(capsys.readouterr().out)
    assert shown["epsilon"] == pytest.approx(2.8729297429452045) and "label" not in shown


@pytest.mark.parametrize("command, extra", [("epsilon", ["--noise-multiplier", "1.0"]), ("noise", ["--epsilon", "3"])])
def test_gdp_is_shown_only_labelled_as_optimistic_beside_rdp(capsys, command, extra):
    _run(command, *CALC, *extra, "--accountant", "gdp")
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert "optimistic approximation" in shown["label"] and "optimistic approximation" in captured.err
    gdp = shown.get("epsilon", shown.get("epsilon_at_that_noise"))
    assert shown["epsilon_rdp"] > gdp


@pytest.mark.parametrize("extra, expected", [
    (["--noise-multiplier", "nan"], "noise_multiplier=nan"),
    (["--noise-multiplier", "-1"], "noise_multiplier=-1.0"),
])
def test_calculator_rejects_invalid_inputs_in_one_line(extra, expected):
    assert expected in _one_line_error("epsilon", *CALC, *extra)


def test_wired_into_the_medgan_command(ledger_path, capsys):
    from medgan_cli.main import main as medgan

    assert medgan(["privacy", "ledger", "verify", str(ledger_path)]) == 0
    assert "ok, verified" in capsys.readouterr().out
