"""``medgan explain``: SHAP, LRP and LIME attributions of a run's discriminator and TSTR classifier."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medgan_cli._common import at_least_one, load_run, write_staged

__all__ = ["explain", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("explain", help="attributions (SHAP, LRP, LIME) of a run's discriminator and TSTR "
                                            "classifier on synthetic (and held-out) samples")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--n", type=int, default=64, help="samples explained per class")
    parser.add_argument("--methods", default="shap,lrp,lime", help="comma-separated: shap, lrp, lime")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-n", type=int, default=500,
                        help="synthetic samples per class the TSTR classifier is trained on")
    parser.add_argument("--lime-n", type=int, default=16, help="samples per class LIME explains (one fit each)")
    parser.set_defaults(func=explain)


def _methods(text: str) -> tuple[str, ...]:
    from medgan_core.errors import ConfigError
    from medgan_core.explain import ATTRIBUTION_METHODS

    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in ATTRIBUTION_METHODS]
    if unknown or not methods:
        raise ConfigError(f"--methods {text!r}: use one or more of {','.join(ATTRIBUTION_METHODS)}, comma-separated")
    return methods


def explain(args: argparse.Namespace) -> int:
    at_least_one("--n", args.n, "samples explained per class")
    at_least_one("--train-n", args.train_n, "synthetic samples per class for the classifier")
    at_least_one("--lime-n", args.lime_n, "samples per class for LIME")
    methods = _methods(args.methods)
    run = load_run(args.run_dir, checkpoint=True)
    from medgan_core.explain import explain_run, focus_rows, write_explanation
    from medgan_core.modalities import get_modality

    explanation = explain_run(run_dir=args.run_dir, n_per_class=args.n, methods=methods, seed=args.seed,
                              train_per_class=args.train_n, lime_per_class=args.lime_n)
    modality = get_modality(run.modality)
    sample_shape = next(iter(explanation.mean_samples["synthetic"].values())).shape
    out = Path(args.run_dir) / "explain"
    paths = write_staged(out, lambda staging: write_explanation(
        explanation, staging, regions=modality.attribution_regions(sample_shape),
        sample_scale=modality.physical_scale, sample_unit=modality.sample_unit))
    rows = [{k: row[k] for k in ("data", "model", "method", "top")} | {"top_share": round(row["shares"][row["top"]], 3)}
            for row in focus_rows(explanation.summary)]
    print(json.dumps({"out": str(out), "files": [p.name for p in paths], "focus_class": explanation.summary[
        "focus_class"], "top_regions": rows}, indent=2))
    return 0
