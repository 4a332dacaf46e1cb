"""Bad configuration on the command line is one line naming the key and the fix, not a
traceback, and nothing is written."""

import pytest

from medgan_cli.main import main


@pytest.mark.parametrize("override, message", [
    ("mode-seeking=0.1", r"medgan simulate: unknown run-config key 'mode-seeking'; known keys: .*mode-seeking-weight"),
    ("mode-seeking-weight=-1", r"medgan simulate: run-config: mode-seeking-weight = -1 is invalid; use a finite "
                               r"number in \[0, 1000\]"),
    ("generator-ema=1.0", r"medgan simulate: run-config: generator-ema = 1.0 is invalid; use a finite number in \[0, 1\)"),
    ("num-server-rounds='two'", r"medgan simulate: run-config: num-server-rounds = 'two' is invalid; use a whole number"),
    ("dp-enabled='maybe'", r"medgan simulate: run-config: dp-enabled = 'maybe' is invalid; use true or false"),
    ("target-epsilon=nan", r"medgan simulate: run-config: target-epsilon = .*nan.* is invalid; use a finite number "
                           r"in \(0, 100\]"),
    ("target-epsilon=inf", r"target-epsilon = .*inf.* is invalid"),
    ("target-epsilon=1e9", r"target-epsilon = 1000000000.0 is invalid"),
    ("max-grad-norm=inf", r"max-grad-norm = .*inf.* is invalid"),
    ("batch-size=0", r"batch-size = 0 is invalid; use a whole number from 1"),
    ("model='dcgan9d'", r"model = 'dcgan9d' is not a registered GAN; use one of .*dcgan1d"),
    ("modality='mri'", r"modality = 'mri' is invalid; use one of the registered modalities: ecg, ecg12, xray"),
    # Label-skewed sites (medgan_core/data/partition.py): refused before anything runs.
    ("partition='dirichlet'", r"medgan simulate: run-config: partition='dirichlet' needs at least 10 patients per "
                              r"site, 30 for 3 sites, but the sites' data holds 7 patients; use partition='records'"),
    ("partition='dirichlet' partition-alpha=0", r"partition-alpha = 0 is invalid; use a finite number in \(0, "),
    ("partition='skewed'", r"partition = 'skewed' is invalid; use one of 'records', 'dirichlet'"),
])
def test_bad_run_config_is_one_clear_line_and_writes_nothing(tmp_path, override, message):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=message):
        main(["simulate", "--run-dir", str(run_dir), "--run-config", override])
    assert not run_dir.exists()


def test_run_config_is_parsed_by_flowers_parser_quoted_spaces_and_bars_kept(tmp_path):
    from medgan_cli._common import parse_overrides

    overrides = parse_overrides(["site-records='mitdb/106 mitdb/100|mitdb/105' num-server-rounds=1",
                                  f"run-dir='{tmp_path}'"])

    assert overrides == {"site-records": "mitdb/106 mitdb/100|mitdb/105", "num-server-rounds": 1,
                         "run-dir": str(tmp_path)}


def test_unquoted_string_is_refused_with_flowers_format_hint(tmp_path):
    # Flower's parser takes TOML values, as `flwr run --run-config` does: strings are quoted.
    with pytest.raises(SystemExit, match=r"medgan simulate: --run-config: .*key3=\"string\""):
        main(["simulate", "--run-dir", str(tmp_path / "run"), "--run-config", "run-dir=runs/x"])
    assert not (tmp_path / "run").exists()


def test_each_flower_log_line_is_printed_once(monkeypatch):
    import logging

    from flwr.common.logger import FLOWER_LOGGER

    from medgan_cli._common import setup_logging

    monkeypatch.setattr(FLOWER_LOGGER, "propagate", True)  # as Flower leaves it; restored after
    setup_logging(verbose=False)

    # The handlers that print a Flower INFO record, walking up the hierarchy as logging
    # does (pytest's own capture handlers on the root print nothing).
    from _pytest.logging import LogCaptureHandler

    reached, logger = [], FLOWER_LOGGER
    while logger is not None:
        reached += [h for h in logger.handlers if h.level <= logging.INFO and not isinstance(h, LogCaptureHandler)]
        logger = logger.parent if logger.propagate else None
    assert len(reached) == 1


# ------------------------------------------------------------------ commands on a saved run
import json  # noqa: E402
from pathlib import Path  # noqa: E402


@pytest.fixture
def saved_run(tmp_path: Path) -> Path:
    """A run directory as a federation leaves it after one round: config and checkpoint."""
    from medgan_core.models.state import gan_state
    from medgan_core.run_dir import RunDirectory
    from medgan_core.models import build_gan
    from simulations.federation import resolve_run_config

    run = resolve_run_config({"run-dir": str(tmp_path / "run")})
    directory = RunDirectory(run.run_dir)
    directory.write_json("config.json", run.to_mapping())
    directory.save_checkpoint(1, gan_state(build_gan(run)), {})
    return directory.root


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("command", ["generate", "report", "audit"])
def test_missing_run_directory_is_one_line(tmp_path, command):
    missing = tmp_path / "runs" / "nope"

    with pytest.raises(SystemExit) as info:
        main([command, "--run-dir", str(missing)])

    assert str(info.value) == (
        f"medgan {command}: --run-dir {missing}: no such directory; pass the run directory that "
        "`medgan simulate --run-dir` wrote"
    )
    assert not missing.exists()


@pytest.mark.parametrize("command", ["generate", "report", "audit"])
def test_directory_that_is_no_run_is_one_line(tmp_path, command):
    (tmp_path / "notes.txt").write_text("x")

    with pytest.raises(SystemExit) as info:
        main([command, "--run-dir", str(tmp_path)])

    assert str(info.value) == (
        f"medgan {command}: --run-dir {tmp_path}: not a run directory (no config.json in it); pass "
        "the run directory that `medgan simulate --run-dir` wrote"
    )
    assert _listing(tmp_path) == ["notes.txt"]


def test_corrupt_run_config_names_the_file(saved_run):
    (saved_run / "config.json").write_text('{"model": "dcgan1d", ')

    with pytest.raises(SystemExit, match=rf"medgan report: {saved_run / 'config.json'}: not valid JSON "
                                         r"\(.*\); restore it from a backup or rerun the federation"):
        main(["report", "--run-dir", str(saved_run)])


def test_run_config_with_a_bad_value_names_the_file_and_the_key(saved_run):
    config = json.loads((saved_run / "config.json").read_text())
    config["num-server-rounds"] = "two"
    (saved_run / "config.json").write_text(json.dumps(config))

    with pytest.raises(SystemExit) as info:
        main(["generate", "--run-dir", str(saved_run)])

    assert str(info.value) == (f"medgan generate: {saved_run / 'config.json'}: num-server-rounds = 'two' "
                               "is invalid; use a whole number from 1 to 10,000")


@pytest.mark.parametrize("command", ["generate", "audit"])
def test_run_without_a_checkpoint_is_one_line(saved_run, command):
    for checkpoint in (saved_run / "checkpoints").iterdir():
        checkpoint.unlink()

    with pytest.raises(SystemExit) as info:
        main([command, "--run-dir", str(saved_run)])

    assert str(info.value) == (
        f"medgan {command}: {saved_run / 'checkpoints' / 'latest.pt'}: no checkpoint, the run has not "
        "finished a round; run or resume the federation first"
    )


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "--n 0: must be at least 1 (synthetic samples per class)"),
    (["--n", "-5"], "--n -5: must be at least 1 (synthetic samples per class)"),
    (["--fs", "0"], "--fs 0: must lie in 50..10000 Hz (the sampling rate of the written ECG "
                    "records; 360 for MIT-BIH)"),
    (["--fs", "-360"], "--fs -360: must lie in 50..10000 Hz (the sampling rate of the written ECG "
                       "records; 360 for MIT-BIH)"),
])
def test_bad_generate_argument_is_one_line_and_writes_nothing(saved_run, args, message):
    before = _listing(saved_run)

    with pytest.raises(SystemExit) as info:
        main(["generate", "--run-dir", str(saved_run), *args])

    assert str(info.value) == f"medgan generate: {message}"
    assert _listing(saved_run) == before


def test_out_below_a_file_is_one_line(saved_run, tmp_path):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "synthetic"

    with pytest.raises(SystemExit) as info:
        main(["generate", "--run-dir", str(saved_run), "--out", str(out)])

    assert str(info.value) == (f"medgan generate: --out {out}: cannot be created, {tmp_path / 'afile'} "
                               "is a file, not a directory; choose another --out")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a read-only /proc")
def test_unwritable_out_is_one_line(saved_run):
    with pytest.raises(SystemExit, match=r"medgan generate: --out /proc/medgan-out: cannot write in "
                                         r"/proc \(.*\); choose a directory you can write to"):
        main(["generate", "--run-dir", str(saved_run), "--out", "/proc/medgan-out"])


def test_out_holding_other_files_is_refused_not_wiped(saved_run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")

    with pytest.raises(SystemExit) as info:
        main(["generate", "--run-dir", str(saved_run), "--out", str(out)])

    assert str(info.value) == (
        f"medgan generate: --out {out}: holds files that generate did not write (thesis.tex); "
        "generate replaces the whole directory, so choose a new or empty one"
    )
    assert (out / "thesis.tex").read_text() == "years of work"


def test_generate_writes_and_rewrites_its_own_output(saved_run, tmp_path, capsys):
    out = tmp_path / "synthetic"

    assert main(["generate", "--run-dir", str(saved_run), "--n", "3", "--out", str(out)]) == 0
    assert main(["generate", "--run-dir", str(saved_run), "--n", "2", "--out", str(out)]) == 0

    assert _listing(out) == [f"synthetic_{c}.{e}" for c in "NV" for e in ("atr", "dat", "hea")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "synthetic"]  # no staging left
    assert '"per_class": 2' in capsys.readouterr().out


def test_failed_image_export_leaves_no_half_written_directory(tmp_path, monkeypatch):
    from medgan_cli._common import write_staged

    out = tmp_path / "export"

    def fails_halfway(staging: Path) -> list[Path]:
        (staging / "NORMAL").mkdir(parents=True)
        (staging / "NORMAL" / "synthetic_00000.dcm").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_staged(out, fails_halfway)

    assert list(tmp_path.iterdir()) == []


def test_audit_with_no_synthetic_samples_is_one_line(saved_run):
    with pytest.raises(SystemExit) as info:
        main(["audit", "--run-dir", str(saved_run), "--n-synthetic", "0"])

    assert str(info.value) == ("medgan audit: --n-synthetic 0: must be at least 1 (samples drawn from "
                               "the generator)")
    assert not (saved_run / "audit").exists()


def test_report_with_a_missing_inception_file_is_one_line(saved_run, tmp_path):
    missing = tmp_path / "inception.pt"

    with pytest.raises(SystemExit) as info:
        main(["report", "--run-dir", str(saved_run), "--inception", str(missing)])

    assert str(info.value) == (f"medgan report: --inception {missing}: no such file; pass a TorchScript "
                               "Inception-v3 file (it is never downloaded)")
    assert not (saved_run / "report.json").exists()


def test_study_epsilon_that_is_not_a_number_names_the_option(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["study", "--epsilons", "3,abc", "--out", str(tmp_path / "study")])

    assert str(info.value) == ("medgan study: --epsilons 'abc' is not a number; give comma-separated "
                               "targets such as 1,3,10,inf (inf = no DP)")
    assert not (tmp_path / "study").exists()


def test_a_second_simulate_on_the_same_run_dir_is_refused_while_the_first_runs(tmp_path):
    import fcntl

    run_dir = tmp_path / "run"
    with open(tmp_path / ".run.lock", "a") as held:  # what a running `medgan simulate` holds
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SystemExit, match="another medgan simulate is running in it"):
            main(["simulate", "--run-dir", str(run_dir), "--run-config", "num-server-rounds=1"])
    assert not run_dir.exists()


def test_run_config_file_then_overrides_later_ones_win(tmp_path):
    # A job's settings live in one TOML file (scripts/xray_job.toml); a later key=value wins.
    from medgan_cli._common import parse_overrides

    job = tmp_path / "job.toml"
    job.write_text('model = "dcgan2d_smooth"\nlocal-steps = 100\nsite-records = "1|1|1"\n')

    overrides = parse_overrides([str(job), "local-steps=50"])

    assert overrides == {"model": "dcgan2d_smooth", "local-steps": 50, "site-records": "1|1|1"}
    assert parse_overrides(["local-steps=50", str(job)])["local-steps"] == 100


def test_missing_or_malformed_run_config_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(SystemExit, match=rf"medgan simulate: --run-config {missing}: no such TOML file"):
        main(["simulate", "--run-dir", str(tmp_path / "run"), "--run-config", str(missing)])
    broken = tmp_path / "broken.toml"
    broken.write_text("local-steps = = 3\n")
    with pytest.raises(SystemExit, match=rf"medgan simulate: --run-config {broken}: "):
        main(["simulate", "--run-dir", str(tmp_path / "run"), "--run-config", str(broken)])
    assert not (tmp_path / "run").exists()


def test_xray_job_file_is_a_valid_run_config_for_the_job_and_its_table():
    # scripts/run_xray_federation.sh and benchmarks/xray_utility_table.sh both read it.
    from pathlib import Path

    from medgan_cli._common import parse_overrides
    from simulations.federation import resolve_run_config

    root = Path(__file__).resolve().parents[1]
    job = root / "scripts" / "xray_job.toml"
    run = resolve_run_config({**parse_overrides([str(job)]), "run-dir": "runs/x"})

    assert (run.modality, run.model, run.local_steps, run.pretrained.endswith("xray-kermany-public-smooth")) == (
        "xray", "dcgan2d_smooth", 100, True)
    for script in ("scripts/run_xray_federation.sh", "benchmarks/xray_utility_table.sh"):
        assert "--run-config scripts/xray_job.toml" in (root / script).read_text()
