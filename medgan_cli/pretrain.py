"""``medgan pretrain``: the coordinator's public pretraining of G and D (no site data, no privacy cost)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from medgan_cli._common import parse_overrides

__all__ = ["pretrain", "register"]

logger = logging.getLogger("medgan")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "pretrain", help="pretrain G and D without privacy on public data no site holds (run-config pretrained=OUT)")
    parser.add_argument("--run-config", action="append",
                        help="the federation's run config, with public-records, e.g. "
                             "\"public-records='cpsc2021/data_8_2 cpsc2021/data_8_3'\"")
    parser.add_argument("--out", required=True, help="directory for weights.pt, provenance.json and samples.png")
    parser.add_argument("--steps", type=int, default=3000, help="discriminator steps, one generator step each")
    parser.add_argument("--seed", type=int, default=0, help="public seed of the weights, batches and latents")
    parser.add_argument("--no-balance", action="store_true",
                        help="sample the public data as it is (default: every class resampled to the largest)")
    parser.add_argument("--licence", help="the public data's licence and citation, for data medgan does not know")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing pretraining in --out")
    parser.add_argument("--redraw", action="store_true",
                        help="only redraw --out's samples.png from its weights and the public data the --run-config "
                             "names (the run config it was made with); trains nothing")
    parser.set_defaults(func=pretrain)


def pretrain(args: argparse.Namespace) -> int:
    from medgan_core.pretrained_weights import check_writable
    from medgan_core.pretraining import PretrainingConfig
    from medgan_core.pretraining import pretrain as run_pretraining
    from medgan_core.pretraining import save_pretrained
    from simulations.federation import resolve_run_config

    out = Path(args.out)
    if args.redraw:
        return _redraw(out, parse_overrides(args.run_config or []))
    check_writable(out, overwrite=args.overwrite)  # before minutes of training
    config = PretrainingConfig(steps=args.steps, seed=args.seed, balance_classes=not args.no_balance,
                               licence=args.licence)
    run = resolve_run_config(parse_overrides(args.run_config or []))

    def progress(step: int, total: int, metrics: dict[str, float]) -> None:
        if step % max(1, total // 20) < 50 or step == total:
            logger.info("pretraining step %d/%d: D loss %.3f, G loss %.3f", step, total, metrics["d_loss"],
                        metrics["g_loss"])

    result = run_pretraining(run, config, progress=progress)
    save_pretrained(out, result.gan, result.provenance, overwrite=args.overwrite)
    figure = _samples_figure(run, result.gan, result.public, out)
    print(json.dumps({"out": str(out), "samples": result.provenance["samples"],
                      "class-counts": result.provenance["class-counts"], "licence": result.provenance["licence"],
                      "seconds": result.provenance["training"]["seconds"], "figure": str(figure),
                      "use": f"--run-config \"pretrained='{out}'\""}, indent=2))
    return 0


def _redraw(out: Path, overrides: dict) -> int:
    """samples.png again from a saved pretraining, refused unless the run config names the very
    public data it was trained on (the provenance's sha256 of the data as read)."""
    from dataclasses import replace

    from medgan_core.errors import ConfigError
    from medgan_core.models import build_gan
    from medgan_core.models.state import load_gan_state
    from medgan_core.pretraining import load_pretrained, load_public_data, public_data_digest
    from simulations.federation import resolve_run_config

    # Resolved without `pretrained`: with it, resolve_run_config would load the weights a
    # first time for its split check, which the digest check below makes redundant here.
    run = replace(resolve_run_config(overrides), pretrained=str(out.resolve()))
    weights, provenance = load_pretrained(run)
    public = load_public_data(run)
    if public_data_digest(public) != provenance["data-sha256"]:
        raise ConfigError(f"{out}: public-records={run.public_records!r} reads other data than this pretraining was "
                          f"trained on ({provenance['public-records']!r} under {provenance['split']['data-root']!r}); "
                          "pass the --run-config it was made with (its provenance.json)")
    gan = build_gan(run)
    load_gan_state(gan, weights)
    print(json.dumps({"out": str(out), "figure": str(_samples_figure(run, gan, public, out))}, indent=2))
    return 0


def _samples_figure(run, gan, public, out: Path) -> Path:  # noqa: ANN001 - RunConfig, GanPair, SiteData
    import torch

    from medgan_core.data.labelled import LabelledSet
    from medgan_core.evaluation.scoring import sample_with_labels
    from medgan_core.modalities import get_modality

    modality = get_modality(run.modality)
    labels = torch.arange(len(modality.class_names)).repeat_interleave(16)
    synthetic = sample_with_labels(gan, labels, seed=0)
    real = LabelledSet(public.samples, public.labels)
    path = modality.plot_samples(real, synthetic, out, real_title="real (public data)")
    target = out / "samples.png"
    path.replace(target)
    return target
