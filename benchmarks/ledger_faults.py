"""Fault matrix for the privacy ledger: SIGKILL a site process at each phase of a round.

A "site" process runs rounds the way a site should: inside ``PrivacyLedger.locked()``,
check the budget, charge, train (a sleep), settle, then release the update (an fsync'ed
line in ``releases.jsonl``). The harness kills it with SIGKILL at a chosen phase, or at
a random instant, starts a new site process that must carry on, and then compares the
ledger with the truth:

* releases lost: rounds whose update existed (training had started) but that have no
  ledger entry. Must be 0.
* epsilon under-counted: epsilon of everything that could have left (settled steps for
  settled rounds, the full planned steps for a round killed during training) minus the
  ledger's epsilon, when positive. Must be 0.
* epsilon over-counted (safe): the other way round; a charge whose training never ran
  costs budget but no privacy.

    .venv/bin/python benchmarks/ledger_faults.py [--random-kills 20] [--seed 0]

``tests/test_ledger_faults.py`` runs the phase matrix.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from privacy.accounting import epsilon_from_history  # noqa: E402
from privacy.ledger import PrivacyLedger  # noqa: E402

PHASES = ("after-check", "after-charge", "mid-training", "after-settle", "after-release")
BUDGET = {"target_epsilon": 10.0, "target_delta": 1e-5}
NOISE, SAMPLE_RATE, PLANNED_STEPS = 1.0, 0.02, 50
LEDGER, MARKERS, RELEASES = "privacy_ledger.json", "markers.log", "releases.jsonl"


def actual_steps(server_round: int) -> int:
    """Steps a round really runs: some rounds stop early (e.g. a site's time limit)."""
    return PLANNED_STEPS - (server_round % 3) * 10


def _append_line(path: Path, line: str) -> None:
    # One O_APPEND write per line, fsync'ed: a kill leaves whole lines only.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def site_process(directory: str, first_round: int, last_round: int, pause_at: str | None,
                 pause_round: int | None, training_seconds: float) -> None:
    """A site running rounds ``first_round..last_round``; waits to be killed at ``pause_at``."""
    directory_path = Path(directory)

    def phase(name: str, server_round: int) -> None:
        _append_line(directory_path / MARKERS, f"{name} {server_round}")
        if (name, server_round) == (pause_at, pause_round):
            time.sleep(3600)  # the harness kills us here

    for server_round in range(first_round, last_round + 1):
        with PrivacyLedger.locked(directory_path / LEDGER, **BUDGET, timeout=30) as ledger:
            ledger.check_can_spend(noise_multiplier=NOISE, sample_rate=SAMPLE_RATE, steps=PLANNED_STEPS)
            phase("after-check", server_round)
            entry = ledger.charge(run_id="faults", server_round=server_round, noise_multiplier=NOISE,
                                  sample_rate=SAMPLE_RATE, steps=PLANNED_STEPS)
            phase("after-charge", server_round)
            phase("mid-training", server_round)  # before the first step: from here an update exists
            time.sleep(training_seconds)
            ledger.settle(entry, [(NOISE, SAMPLE_RATE, actual_steps(server_round))])
            phase("after-settle", server_round)
        _append_line(directory_path / RELEASES, json.dumps({"server_round": server_round}))  # the update leaves
        phase("after-release", server_round)


@dataclass(frozen=True)
class FaultOutcome:
    fault: str
    releases_lost: int
    epsilon_undercounted: float
    epsilon_overcounted: float
    recovered: bool  # a new site process carried on after the kill


def _start(directory: Path, first: int, last: int, pause_at: str | None = None, pause_round: int | None = None,
           training_seconds: float = 0.05) -> multiprocessing.Process:
    # fork: the child starts in milliseconds with Opacus already imported.
    process = multiprocessing.get_context("fork").Process(
        target=site_process, args=(str(directory), first, last, pause_at, pause_round, training_seconds))
    process.start()
    return process


def _markers(directory: Path) -> set[tuple[str, int]]:
    path = directory / MARKERS
    lines = path.read_text().splitlines() if path.exists() else []
    return {(name, int(r)) for name, r in (line.split() for line in lines)}


def _wait_for(directory: Path, marker: tuple[str, int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in _markers(directory):
        if time.monotonic() > deadline:
            raise TimeoutError(f"site process never reached {marker}")
        time.sleep(0.01)


def _kill(process: multiprocessing.Process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.join()


def evaluate(directory: Path, fault: str, recovered: bool) -> FaultOutcome:
    """Compare the ledger with every update that could have left the site."""
    markers = _markers(directory)
    trained = sorted(r for name, r in markers if name == "mid-training")
    truth = [(NOISE, SAMPLE_RATE, actual_steps(r) if ("after-settle", r) in markers else PLANNED_STEPS)
             for r in trained]
    released = {json.loads(line)["server_round"] for line in
                ((directory / RELEASES).read_text().splitlines() if (directory / RELEASES).exists() else [])}
    ledger_path = directory / LEDGER
    ledger = PrivacyLedger.read(ledger_path) if ledger_path.exists() else None  # verifies the hash chain
    charged_rounds = {e.server_round for e in ledger.entries} if ledger else set()
    spent = ledger.epsilon_spent() if ledger else 0.0
    true_epsilon = epsilon_from_history(truth, delta=BUDGET["target_delta"])
    lost = len((set(trained) | released) - charged_rounds)
    return FaultOutcome(fault, lost, max(0.0, true_epsilon - spent), max(0.0, spent - true_epsilon), recovered)


def run_phase_fault(directory: Path, phase: str, *, kill_round: int = 2) -> FaultOutcome:
    """Kill a site process at ``phase`` of round ``kill_round``, restart it for one round, evaluate."""
    process = _start(directory, 1, kill_round + 1, pause_at=phase, pause_round=kill_round)
    _wait_for(directory, (phase, kill_round))
    _kill(process)
    return _recover_and_evaluate(directory, phase, next_round=kill_round + 1)


def run_random_fault(directory: Path, rng: random.Random, *, rounds: int = 4) -> FaultOutcome:
    """Kill a site process at a random instant of a ``rounds``-round run."""
    process = _start(directory, 1, rounds, training_seconds=0.02)
    time.sleep(rng.uniform(0.0, 0.05 * rounds))
    _kill(process)
    return _recover_and_evaluate(directory, "random instant", next_round=rounds + 1)


def _recover_and_evaluate(directory: Path, fault: str, *, next_round: int) -> FaultOutcome:
    process = _start(directory, next_round, next_round)
    process.join(timeout=120)
    recovered = process.exitcode == 0 and ("after-release", next_round) in _markers(directory)
    return evaluate(directory, fault, recovered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-kills", type=int, default=20, help="extra kills at random instants")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    outcomes: list[FaultOutcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, phase in enumerate(PHASES):
            outcomes.append(run_phase_fault(Path(tmp) / f"phase-{index}", phase))
        for index in range(args.random_kills):
            outcomes.append(run_random_fault(Path(tmp) / f"random-{index}", rng))
    print("| fault (SIGKILL) | faults tried | releases lost | epsilon under-counted | "
          "epsilon over-counted (safe) | site recovered |")
    print("|---|---|---|---|---|---|")
    for fault in dict.fromkeys(o.fault for o in outcomes):
        rows = [o for o in outcomes if o.fault == fault]
        print(f"| {fault} | {len(rows)} | {sum(o.releases_lost for o in rows)} | "
              f"{max(o.epsilon_undercounted for o in rows):.4f} | {max(o.epsilon_overcounted for o in rows):.4f} | "
              f"{sum(o.recovered for o in rows)}/{len(rows)} |")
    print(f"| **all** | {len(outcomes)} | {sum(o.releases_lost for o in outcomes)} | "
          f"{max(o.epsilon_undercounted for o in outcomes):.4f} | "
          f"{max(o.epsilon_overcounted for o in outcomes):.4f} | "
          f"{sum(o.recovered for o in outcomes)}/{len(outcomes)} |")
    bad = any(o.releases_lost or o.epsilon_undercounted > 1e-12 or not o.recovered for o in outcomes)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
