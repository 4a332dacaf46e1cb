"""Scale-out on one machine: the real Flower simulation with 3, 10, 30 and 100 sites.

Each size is one ``run_federation`` (``flwr run --stream`` against an owned simulation
SuperLink, Ray underneath) over the bundled chest X-rays split into N equal patient
shares (``site-records='1|1|...|1'``, one share held out), at 32 x 32 pixels, with short
rounds (2 local steps, batch 16, record-level DP: a 1/101 share has too few patients for
patient-level DP; ``trained`` counts the site-rounds that trained rather than refused). A thread samples the memory of the whole process tree (this process,
the SuperLink, Flower's simulation process, Ray's daemons and actors) every 0.5 s from
``/proc``: RSS summed (what the issue asks; shared library pages count once per
process, so it overstates) and PSS summed (shared pages split between the processes that
map them: the memory the tree really holds).

    .venv/bin/python benchmarks/bench_scale.py [--sites 3 10 30 100] [--rounds 1] [--local-steps 2]

Ends with one line ``sites=N round_s=... peak_rss_gb=...`` for the largest N.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GIB = 1024**3


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                # The command name (field 2) may hold spaces: the parent pid follows its ")".
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant of it, now."""
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in bytes; (0, 0) once it has gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            fields = {line.split(":")[0]: line.split()[1] for line in handle if ":" in line}
        return int(fields.get("Rss", 0)) * 1024, int(fields.get("Pss", 0)) * 1024
    except (OSError, ValueError):
        return 0, 0


class TreeMemory:
    """Peak summed RSS and PSS of a process tree and its largest process count, sampled."""

    def __init__(self, root: int, *, every: float = 0.5) -> None:
        self.root, self.every = root, every
        self.peak_rss = self.peak_pss = self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            pids = process_tree(self.root)
            rss, pss = (sum(values) for values in zip(*(_memory(pid) for pid in pids)))
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self._stop.wait(self.every)

    @contextlib.contextmanager
    def watching(self) -> Iterator["TreeMemory"]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def ray_actors(*, num_cpus_per_client: float = 1.0) -> int:
    """ClientApp actors Flower's Ray backend starts: one per ``num_cpus_per_client`` CPUs of
    the Ray node (``run_federation`` gives Ray every core and each ClientApp one CPU)."""
    return max(1, math.floor((os.cpu_count() or 1) / num_cpus_per_client))


def bench(sites: int, *, rounds: int, local_steps: int, batch_size: int, image_size: int, out: Path) -> dict:
    """One simulated federation of ``sites`` X-ray sites; its timings and memory."""
    from medgan_core.run_dir import RunDirectory
    from simulations.federation import resolve_run_config, run_federation

    run = resolve_run_config({
        "modality": "xray", "model": "dcgan2d", "data-root": str(ROOT / "data/xray/kermany"),
        "image-size": image_size, "site-records": "|".join(["1"] * sites), "holdout-records": "1",
        "num-server-rounds": rounds, "local-steps": local_steps, "batch-size": batch_size,
        "privacy-unit": "record", "min-nodes": sites, "run-dir": str(out / f"sites-{sites}"),
        # A 1/101 share holds about 50 images: with the default noise (std 20 per class) its
        # released size often falls below the batch and the site refuses; std 2 keeps it near.
        "label-prior-noise": 2.0,
    })
    started = time.monotonic()
    with TreeMemory(os.getpid()).watching() as memory:
        run_federation(run, num_sites=sites)
    wall = time.monotonic() - started
    records = RunDirectory(run.run_dir).read_metrics()
    trained = sum(int(r.get("trained", 0)) for r in records)
    if trained != sites * rounds:
        print(f"{sites} sites: only {trained} of {sites * rounds} site-rounds trained (see the sites' "
              "log lines for their refusals)", file=sys.stderr)
    round_s = sum(r["finished"] - r["started"] for r in records) / len(records)
    return {
        "sites": sites, "trained": trained, "round_s": round_s, "wall_s": wall,
        # Site-steps run side by side on the actors: this is wall time per site-step.
        "site_step_ms": 1000 * round_s / (sites * local_steps),
        "peak_rss_gb": memory.peak_rss / GIB, "peak_pss_gb": memory.peak_pss / GIB,
        "processes": memory.peak_processes, "actors": ray_actors(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[3, 10, 30, 100])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--local-steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=32, choices=(32, 64, 128))
    args = parser.parse_args(argv)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    results = []
    with tempfile.TemporaryDirectory(prefix="medgan-bench-scale-") as tmp:
        for sites in args.sites:
            print(f"running {sites} sites ...", file=sys.stderr, flush=True)
            results.append(bench(sites, rounds=args.rounds, local_steps=args.local_steps,
                                 batch_size=args.batch_size, image_size=args.image_size, out=Path(tmp)))
    print(f"\nX-ray {args.image_size}px, {args.rounds} round(s) x {args.local_steps} local steps, batch "
          f"{args.batch_size}, record-level DP, {os.cpu_count()} CPUs")
    print(f"{'sites':>5} {'trained':>7} {'round s':>8} {'wall s':>7} {'site-step ms':>12} {'peak RSS GB':>11} "
          f"{'peak PSS GB':>11} {'processes':>9} {'Ray actors':>10}")
    for r in results:
        print(f"{r['sites']:>5} {r['trained']:>7} {r['round_s']:>8.1f} {r['wall_s']:>7.1f} {r['site_step_ms']:>12.0f} "
              f"{r['peak_rss_gb']:>11.2f} {r['peak_pss_gb']:>11.2f} {r['processes']:>9} {r['actors']:>10}")
    last = results[-1]
    print(f"sites={last['sites']} round_s={last['round_s']:.1f} peak_rss_gb={last['peak_rss_gb']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
