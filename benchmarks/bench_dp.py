"""Benchmarks that print tables (ratios measured within one run, on this machine).

1. DP vs non-DP local training throughput (samples/s), per Opacus per-sample-gradient
   mode, with peak memory. Each configuration runs in its own process so that its peak
   RSS is its own; the modes are interleaved and repeated, and slowdowns are medians of
   per-repeat ratios. Targets: the whole G+D step at most 1.3x non-DP, the D step 1.6x.
2. Flower's overhead: the wall time of one simulated round vs the same local work run
   directly (same sites, same parallelism). Target: at most 1.10x with >= 30 s of work.

    .venv/bin/python benchmarks/bench_dp.py [--steps 40] [--repeats 5] [--round-steps 300] [--skip-round | --skip-throughput]
        [--device auto|cpu|cuda|cuda:N] [--modes non-dp,fused] [--json OUT.json]

``--device`` (default ``cpu``) runs table 1 there; on CUDA the D-step timer synchronises
the GPU and the peak column is the GPU's peak allocated memory. ``bash benchmarks/bench_gpu.sh``
runs it on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("non-dp", "fused", "hooks", "ghost", "functorch")
sys.path.insert(0, str(ROOT))


def _bundled_beats():
    """(beats (N, 1, L), labels) of two bundled MIT-BIH records: the training data of every table-1 run."""
    import torch

    from medgan_core.data.ecg import EcgConfig, load_ecg_records

    beats, _ = load_ecg_records([ROOT / "data/ecg/mitdb/106", ROOT / "data/ecg/mitdb/100"], EcgConfig())
    return torch.from_numpy(beats.beats).unsqueeze(1), torch.from_numpy(beats.labels)


def _throughput_worker(modes: list[str], steps: int, batch_size: int, device_name: str = "cpu",
                       repeats: int = 1) -> dict:
    """Time every mode in this one process, interleaved: ``repeats`` rounds of (non-DP,
    fused, hooks, ...), ``steps`` local steps each. Load that drifts on a shared machine
    then hits every mode alike; per-mode peak memory is measured elsewhere (one process
    per mode). Returns per mode the list of (seconds, D-step seconds) per repeat."""
    import torch

    torch.set_num_threads(1)
    from medgan_core.device import resolve_device
    from medgan_core.models.registry import create_gan
    from medgan_core.training import dp_gan
    from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan

    device = resolve_device(device_name, where="bench_dp", key="--device")
    cuda = device.type == "cuda"
    d_step_seconds = [0.0]
    timed = dp_gan._discriminator_step

    def discriminator_step_timer(*args, **kwargs):  # the part DP changes
        if cuda:
            torch.cuda.synchronize(device)  # time this step's kernels, not the queue before it
        start = time.perf_counter()
        try:
            return timed(*args, **kwargs)
        finally:
            if cuda:
                torch.cuda.synchronize(device)
            d_step_seconds[0] += time.perf_counter() - start

    dp_gan._discriminator_step = discriminator_step_timer

    x, y = _bundled_beats()

    def run(mode: str, local_steps: int) -> tuple[float, float]:
        dp = None if mode == "non-dp" else DPSettings(noise_multiplier=1.0, grad_sample_mode=mode)
        config = LocalTrainingConfig(local_steps=local_steps, batch_size=batch_size, device=device)
        d_step_seconds[0] = 0.0
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        train_local_gan(gan=create_gan("dcgan1d"), beats=x, labels=y, config=config, dp=dp)
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, d_step_seconds[0]

    for mode in modes:
        run(mode, 5)  # warm-up
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode in modes:
            times[mode].append(run(mode, steps))
    return {"device": str(device), "gpu": torch.cuda.get_device_name(device) if cuda else None, "times": times}


def _memory_worker(mode: str, steps: int, batch_size: int, device_name: str = "cpu") -> dict:
    """Peak memory of one mode alone in a fresh process: RSS on the CPU, allocated on a GPU."""
    import torch

    torch.set_num_threads(1)
    from medgan_core.device import resolve_device
    from medgan_core.models.registry import create_gan
    from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan

    device = resolve_device(device_name, where="bench_dp", key="--device")
    x, y = _bundled_beats()
    dp = None if mode == "non-dp" else DPSettings(noise_multiplier=1.0, grad_sample_mode=mode)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_local_gan(gan=create_gan("dcgan1d"), beats=x, labels=y, dp=dp,
                    config=LocalTrainingConfig(local_steps=steps, batch_size=batch_size, device=device))
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"mode": mode, "peak_mb": peak}


def _worker(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"bench_dp: worker {' '.join(args)} failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_throughput(steps: int, batch_size: int, *, repeats: int = 5, device: str = "cpu",
                     modes: tuple[str, ...] = MODES) -> list[dict]:
    """Table 1. Throughput: all modes in one process, interleaved, ``repeats`` rounds of
    ``steps`` steps each; slowdowns are medians of per-round ratios to the same round's
    non-DP run. Peak memory: each mode alone in its own process. ``modes`` starts with
    ``non-dp`` (the baseline)."""
    common = ["--batch-size", str(batch_size), "--device", device]
    timing = _worker(["--worker", ",".join(modes), "--steps", str(steps), "--repeats", str(repeats), *common])
    peaks = {mode: _worker(["--memory-worker", mode, "--steps", "20", *common])["peak_mb"] for mode in modes}
    times, n = timing["times"], steps * batch_size
    rows = []
    for mode in modes:
        pairs = list(zip(times["non-dp"], times[mode]))
        rows.append({
            "mode": mode, "device": timing["device"], "gpu": timing["gpu"],
            "samples_per_s": statistics.median(n / t for t, _ in times[mode]),
            "d_samples_per_s": statistics.median(n / d for _, d in times[mode]),
            "slowdown": statistics.median(t / b for (b, _), (t, _) in pairs),
            "d_slowdown": statistics.median(d / bd for (_, bd), (_, d) in pairs),
            "peak_mb": peaks[mode],
        })
    where = rows[0]["gpu"] or "CPU"
    print(f"\nDP vs non-DP local GAN training on {rows[0]['device']} ({where}), batch {batch_size} real samples, "
          f"1 CPU thread; {repeats} interleaved rounds of {steps} steps per mode, median ratios")
    peak = "peak GPU MB" if rows[0]["gpu"] else "peak RSS MB"
    print(f"{'mode':<9} {'step samples/s':>15} {'slowdown':>9} {'D-step samples/s':>17} {'slowdown':>9} "
          f"{peak:>12}")
    for r in rows:
        print(f"{r['mode']:<9} {r['samples_per_s']:>15.0f} {r['slowdown']:>8.2f}x "
              f"{r['d_samples_per_s']:>17.0f} {r['d_slowdown']:>8.2f}x {r['peak_mb']:>12.0f}")
    fused = next((r for r in rows if r["mode"] == "fused"), None)
    if fused is not None:
        print(f"dp_step_ratio={fused['slowdown']:.2f} d_step_ratio={fused['d_slowdown']:.2f} "
              "(fused, the default; targets 1.3 and 1.6)")
    return rows


def _direct_site_round(args: tuple) -> dict:
    import torch

    torch.set_num_threads(1)
    run, partition, server_round, weights = args
    from medgan_core.site import SiteConfig, evaluate_round, train_round

    site = SiteConfig.for_simulation(run, partition)
    state, _ = train_round(site=site, run=run, run_id="direct", server_round=server_round, weights=weights)
    evaluate_round(site=site, run=run, weights=state)
    return {k: v.numpy() if hasattr(v, "numpy") else v for k, v in state.items()}


def bench_round(local_steps: int) -> dict:
    """Round 2 of a 2-round federation, simulated vs run directly.

    Round 2 is the steady state in both: the workers (Ray actors / pool processes, each
    started fresh with ``spawn`` and importing the project) are warm, and each site's
    one-off work (class prior release, evaluation encoder) was done in round 1. What is
    left is Flower's per-round cost: messages, serialisation, scheduling, aggregation.
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    import multiprocessing

    import numpy as np
    import torch

    from medgan_core.models.state import gan_state
    from medgan_core.run_dir import RunDirectory
    from medgan_core.models import build_gan
    from simulations.federation import resolve_run_config, run_federation

    with tempfile.TemporaryDirectory() as tmp:
        run = resolve_run_config({"run-dir": f"{tmp}/direct", "num-server-rounds": 2, "local-steps": local_steps})
        torch.manual_seed(run.seed)
        weights = {k: v.numpy() for k, v in gan_state(build_gan(run)).items()}
        direct_rounds = []
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=context) as pool:
            for server_round in (1, 2):
                start = time.perf_counter()
                states = list(pool.map(_direct_site_round, [(run, p, server_round, weights) for p in range(3)]))
                weights = {k: np.mean([s[k] for s in states], axis=0) for k in states[0]}  # as FedAvg's arithmetic
                direct_rounds.append(time.perf_counter() - start)
        sim_run = resolve_run_config({"run-dir": f"{tmp}/sim", "num-server-rounds": 2, "local-steps": local_steps})
        sim_start = time.perf_counter()
        run_federation(sim_run)
        sim_total = time.perf_counter() - sim_start
        records = RunDirectory(sim_run.run_dir).read_metrics()
        simulated_rounds = [r["finished"] - r["started"] for r in records]
    ratio = simulated_rounds[1] / direct_rounds[1]
    print(f"\nFlower simulation overhead: 3 sites x {local_steps} local steps per round, {os.cpu_count()} CPUs")
    print(f"{'what':<48} {'round 1 s':>10} {'round 2 s':>10}")
    print(f"{'local work run directly (spawned process pool)':<48} {direct_rounds[0]:>10.1f} {direct_rounds[1]:>10.1f}")
    print(f"{'simulated round (configure..aggregate_evaluate)':<48} {simulated_rounds[0]:>10.1f} "
          f"{simulated_rounds[1]:>10.1f}")
    print(f"{'whole simulation incl. Ray start-up':<48} {sim_total:>10.1f}")
    print(f"{'round overhead ratio, round 2 (warm workers)':<48} {ratio:>9.3f}x")
    print(f"{'round overhead ratio, round 1 (incl. worker start)':<48} {simulated_rounds[0] / direct_rounds[0]:>9.3f}x")
    return {"direct_s": direct_rounds, "simulated_s": simulated_rounds, "ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per mode (median ratios)")
    parser.add_argument("--memory-worker")
    parser.add_argument("--round-steps", type=int, default=300)
    parser.add_argument("--skip-round", action="store_true", help="only the first table")
    parser.add_argument("--skip-throughput", action="store_true", help="only the second table")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (table 1 only)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, non-dp first (default {','.join(MODES)})")
    parser.add_argument("--json", help="also write table 1's rows to this JSON file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_throughput_worker(args.worker.split(","), args.steps, args.batch_size, args.device,
                                            args.repeats)))
        return
    if args.memory_worker:
        print(json.dumps(_memory_worker(args.memory_worker, args.steps, args.batch_size, args.device)))
        return
    if not args.skip_throughput:
        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
        if not modes or modes[0] != "non-dp" or set(modes) - set(MODES):
            parser.error(f"--modes: non-dp first, then any of {', '.join(MODES[1:])}")
        rows = bench_throughput(args.steps, args.batch_size, repeats=args.repeats, device=args.device, modes=modes)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if not args.skip_round:
        bench_round(args.round_steps)


if __name__ == "__main__":
    main()
