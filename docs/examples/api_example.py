"""The Python API in one script: a tiny federation, its privacy spent, synthetic beats as WFDB.

    .venv/bin/python docs/examples/api_example.py [OUT_DIR]     # default: a new temporary directory

Runs one round of 2 local DP-SGD steps at each of the 3 simulated hospitals of the bundled
MIT-BIH data (Flower's simulation engine, about 20 s on 2 cores), loads the global
generator, samples 5 beats per class and writes them as WFDB records. What each call does:
docs/api.md.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["BEATS_PER_CLASS", "main"]

BEATS_PER_CLASS = 5


def main(out_dir: str | Path) -> list[Path]:
    """Train, sample and export into ``out_dir`` (``run/`` and ``synthetic_wfdb/``).

    Returns:
        The written WFDB records, without extension (``synthetic_N``, ``synthetic_V``).
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    # Imported here: Flower's simulation stack and PyTorch take seconds to import.
    from medgan_core.data.ecg import EcgConfig
    from medgan_core.export.wfdb_export import write_synthetic_wfdb
    from medgan_core.generate import load_run_gan, sample_per_class
    from simulations.federation import resolve_run_config, run_federation
    from simulations.report import site_privacy_summary

    out_dir = Path(out_dir)
    # 1. Simulate: the app's defaults (pyproject.toml [tool.flwr.app.config]) plus overrides,
    #    with the same keys as `medgan simulate --run-config`; unknown keys are refused.
    run = resolve_run_config({"num-server-rounds": 1, "local-steps": 2, "batch-size": 32,
                              "run-dir": str(out_dir / "run")})
    run_federation(run)

    # 2. Privacy spent: each simulated site's ledger (per record, i.e. per beat, here).
    for site, summary in site_privacy_summary(run).items():
        print(f"{site}: epsilon {summary['epsilon_spent']:.3f} of {summary['target_epsilon']:g} "
              f"per {summary['unit']} (delta {summary['target_delta']:g})")

    # 3. Generate: the global generator of the last round, then a few beats per class.
    gan, run = load_run_gan(run.run_dir)
    beats, labels = sample_per_class(gan, BEATS_PER_CLASS, seed=0)  # (2 * 5, 1, 128) model units, (10,)

    # 4. Export: one WFDB record per class, in mV at 360 Hz, an .atr annotation per beat.
    written = write_synthetic_wfdb(beats, labels, out_dir / "synthetic_wfdb", config=EcgConfig())
    for record in written:
        print(f"written: {record}.hea/.dat/.atr")
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="medgan-api-"))
