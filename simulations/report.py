"""End-of-run report for every modality: privacy spent, fidelity, utility, memorisation, figures.

One pipeline; what differs between kinds of data is asked of the modality
(:class:`medgan_core.modalities.Modality`): its evaluation data (site training sets and
held-out patients), its encoder backbone, its sample-space metrics, its export and how the
export reads back, and its sample figure. Everything is recomputed from the run directory
(config, checkpoints, metrics.jsonl, ledgers, ``encoder.pt``) and the run's data, seeded
and single-threaded, so ``medgan report --run-dir ...`` reproduces the numbers of a saved
run exactly. The metrics themselves are :mod:`medgan_core.evaluation`, shared with the study.

The domain encoder (``encoder.pt``) is trained here, once, on the REAL TRAINING samples of
every site's training patients (in simulation the researcher holds them all), then reused.
It is a non-private model of that data: keep it with the run, never with a data release.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.data.labelled import LabelledSet
from medgan_core.evaluation import (
    EvaluationSettings,
    augmentation_gain,
    classifier_scores,
    evaluate_generator,
    feature_bandwidth,
    gbt_scores,
)
from medgan_core.device import resolve_device
from medgan_core.errors import ConfigError
from medgan_core.generate import load_run_config, load_run_gan
from medgan_core.io_utils import atomic_write_text
from medgan_core.metrics.encoder import load_or_train_encoder
from medgan_core.metrics.frechet import inception_fid
from medgan_core.metrics.names import COVERAGE, FD, metric
from medgan_core.metrics.tstr_gbt import GBT_DESCRIPTION, GbtConfig
from medgan_core.modalities import Modality, get_modality
from medgan_core.models.state import load_gan_state
from medgan_core.plots import plot_curves
from medgan_core.pretraining import load_public_data
from medgan_core.progress import track
from medgan_core.run_dir import RunDirectory, simulated_sites_root
from medgan_core.run_history import refusal_summary
from privacy.ledger import PrivacyLedger
from simulations.report_markdown import privacy_table_md, refusals_md, report_markdown

__all__ = ["ENCODER_FILE", "privacy_table_md", "refusals_md", "run_training_sets",
           "single_threaded", "site_privacy_summary", "write_report"]

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.pt"


def site_privacy_summary(run: RunConfig) -> dict[str, dict]:
    """Each simulated site's epsilon per round, from its ledger, with a recomputation."""
    summary: dict[str, dict] = {}
    root = simulated_sites_root(run.run_dir, run.resume_from)  # a resumed run continues earlier ledgers
    for ledger_path in RunDirectory(root).site_ledger_paths():
        ledger = PrivacyLedger.read(ledger_path)  # verified (chain, entries); the site's own budget
        recomputed = ledger.epsilon_spent()
        summary[ledger_path.parent.name] = {
            "epsilon_by_round": [(e.server_round, e.epsilon_after) for e in ledger.entries],
            "epsilon_spent": recomputed,
            "epsilon_recorded": ledger.entries[-1].epsilon_after if ledger.entries else 0.0,
            "target_epsilon": ledger.target_epsilon,
            "target_delta": ledger.target_delta,
            "within_budget": recomputed <= ledger.budget_epsilon,
            "unit": ledger.unit,
            "noise_multiplier": ledger.entries[-1].noise_multiplier if ledger.entries else None,
            "steps": sum(e.steps for e in ledger.entries),
        }
    return summary


def run_training_sets(run: RunConfig) -> tuple[list[LabelledSet], LabelledSet]:
    """Each simulated site's training samples and the held-out samples (``Modality.evaluation_data``)."""
    return get_modality(run.modality).evaluation_data(run)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Same numbers on every machine: float reductions depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def write_report(run_dir: str | Path, *, n_per_class: int | None = None, dtw_samples: int = 150, seed: int = 0,
                 export_per_class: int | None = None, encoder_epochs: int | None = None, classifier_epochs: int = 8,
                 classifier_seeds: Sequence[int] | None = None, round_samples: int = 200,
                 inception: str | Path | None = None, device: str | None = None) -> dict:
    """Write ``report.json``, ``report.md``, ``figures/`` and the synthetic export of any modality.

    Args:
        run_dir: A finished (or running) federation's run directory.
        n_per_class: Synthetic samples per class scored (and added in the augmentation
            test); default the modality's ``report_per_class``.
        dtw_samples: Synthetic samples per class for DTW, where the modality computes it.
        seed: Seeds sampling, subsets and the classifiers.
        export_per_class: Synthetic samples per class exported and read back (default
            ``n_per_class``).
        encoder_epochs: Epochs of the domain encoder, if ``encoder.pt`` is not there yet
            (default the modality's ``encoder_epochs``).
        classifier_epochs: Epochs of every TSTR/TRTR/augmentation classifier.
        classifier_seeds: One classifier per seed, scores averaged (default the modality's:
            three for ECG, one for X-rays, whose classifiers cost far more).
        round_samples: Synthetic samples per class for the per-round curves.
        inception: A TorchScript Inception-v3 file for conventional FID (images only; for
            other data it is recorded as not applicable; never downloaded).
        device: Where the generator samples and the encoder and classifiers train
            (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None`` takes the run's
            ``device``.

    Returns:
        The report as a dict (also written to ``report.json``).

    Raises:
        ConfigError: CUDA asked for and absent on this machine.
    """
    with single_threaded():
        return _write_report(Path(run_dir), n_per_class=n_per_class, dtw_samples=dtw_samples, seed=seed,
                             export_per_class=export_per_class, encoder_epochs=encoder_epochs,
                             classifier_epochs=classifier_epochs,
                             classifier_seeds=None if classifier_seeds is None else tuple(classifier_seeds),
                             round_samples=round_samples, inception=inception, device=device)


def _write_report(run_dir: Path, *, n_per_class: int | None, dtw_samples: int, seed: int,
                  export_per_class: int | None, encoder_epochs: int | None, classifier_epochs: int,
                  classifier_seeds: tuple[int, ...] | None, round_samples: int, inception: str | Path | None,
                  device: str | None) -> dict:
    directory = RunDirectory(run_dir)
    run = load_run_config(run_dir)
    on = resolve_device(device or run.device, where="report" if device else "report: run-config")
    gan, run = load_run_gan(run_dir, run=run, device=on)
    modality = get_modality(run.modality)
    sites, holdout = modality.evaluation_data(run)
    train = LabelledSet.concat(sites)
    logger.info("report: %d training %ss from site patients, %d held-out %ss", len(train), modality.record_word,
                len(holdout), modality.record_word)
    epochs = encoder_epochs or modality.encoder_epochs
    encoder = load_or_train_encoder(directory.root / ENCODER_FILE, train.samples, train.labels,
                                    backbone=modality.encoder_backbone, epochs=epochs, seed=run.seed, device=on)
    bandwidth = feature_bandwidth(encoder, train)
    overrides: dict[str, Any] = {"synthetic_per_class": n_per_class, "classifier_seeds": classifier_seeds}
    settings = modality.evaluation_settings(dtw_samples=dtw_samples, classifier_epochs=classifier_epochs,
                                            **{k: v for k, v in overrides.items() if v is not None})
    score: dict[str, Any] = dict(modality=modality, encoder=encoder, holdout=holdout, train=train,
                                 class_names=modality.class_names, bandwidth=bandwidth, seed=seed, device=on)
    final = evaluate_generator(gan=gan, settings=settings, **score)
    synthetic = final.pop("synthetic")
    num_classes = len(modality.class_names)
    classify: dict[str, Any] = dict(num_classes=num_classes, epochs=classifier_epochs,
                                    seeds=settings.classifier_seeds, device=on)
    trtr = classifier_scores(train, holdout, **classify, per_patient=True)
    smallest = int(np.argmin([len(s) for s in sites]))
    gain = augmentation_gain(site=sites[smallest], synthetic=synthetic, test=holdout, **classify)
    gain["site"] = f"site-{smallest}"
    round_settings = replace(settings, synthetic_per_class=round_samples, max_real_per_class=2 * round_samples,
                             dtw_samples=max(10, dtw_samples // 4), classifier_seeds=())
    central_rounds = _central_rounds(directory, run, modality=modality, score=score, settings=round_settings)
    history = directory.read_metrics()
    privacy = site_privacy_summary(run)
    figures = _figures(directory, run, modality=modality, holdout=holdout, synthetic=synthetic, privacy=privacy,
                       history=history, central_rounds=central_rounds, seed=seed)
    exported, export = _export_and_read_back(directory, run, modality=modality, privacy=privacy,
                                             synthetic=synthetic.first_per_class(export_per_class or
                                                                                 settings.synthetic_per_class,
                                                                                 num_classes))
    tstr_exported = {**classifier_scores(exported, holdout, **classify, per_patient=True), "num_samples": len(exported)}
    utility_gbt = _independent_utility(synthetic=synthetic, exported=exported, train=train, holdout=holdout,
                                       num_classes=num_classes, seeds=settings.classifier_seeds)
    public_pretraining = _public_pretraining(directory)
    public_only = _public_data_utility(public_pretraining, run, holdout=holdout, classify=classify)
    if public_only is not None and "trees" in public_only:
        utility_gbt["public"] = public_only.pop("trees")
    report = {
        "run_dir": str(directory.root.resolve()),
        "modality": modality.name,
        "dp_enabled": run.dp_enabled,
        "rounds": len(history),
        "public_pretraining": public_pretraining,
        "privacy": privacy,
        "refusals": refusal_summary(history),
        "holdout_patients": sorted(set(holdout.patients)),
        "holdout_class_counts": holdout.class_counts(modality.class_names),
        "train_class_counts": train.class_counts(modality.class_names),
        "utility": {"tstr": final["tstr"], "tstr_exported": tstr_exported, "trtr": trtr,
                    **({"public": public_only} if public_only is not None else {})},
        "utility_gbt": utility_gbt,
        "final_metrics": final["per_class"],
        "reference_metrics": final["reference"],
        "memorisation": final["memorisation"],
        "augmentation_gain": gain,
        "rounds_central": central_rounds,
        "encoder": {"path": ENCODER_FILE, "backbone": modality.encoder_backbone,
                    "trained_on": sorted(set(train.patients)), "epochs": epochs, "seed": run.seed,
                    "feature_dim": encoder.config.feature_dim, "mmd_bandwidth": bandwidth},
        "inception_fid": _inception(inception, holdout=holdout, synthetic=synthetic),
        "settings": _settings_record(settings, seed=seed, round_samples=round_samples),
        "sample_unit": modality.sample_unit,
        "synthetic_per_class": settings.synthetic_per_class,
        "figures": figures,
        "export": export,
    }
    directory.write_json("report.json", report)
    atomic_write_text(directory.root / "report.md", report_markdown(report, model=run.model))
    return report


def _independent_utility(*, synthetic: LabelledSet, exported: LabelledSet, train: LabelledSet,
                         holdout: LabelledSet, num_classes: int, seeds: Sequence[int]) -> dict:
    """The utility rows again with gradient-boosted trees instead of the project's CNN: the
    same training sets (synthetic, exported read back, the sites' real data) and test set."""
    config = GbtConfig()
    classify: dict[str, Any] = dict(num_classes=num_classes, seeds=seeds, config=config, per_patient=True)
    logger.info("report: %s", GBT_DESCRIPTION)
    return {"classifier": GBT_DESCRIPTION, "config": asdict(config),
            "tstr": gbt_scores(synthetic, holdout, **classify),
            "tstr_exported": {**gbt_scores(exported, holdout, **classify), "num_samples": len(exported)},
            "trtr": gbt_scores(train, holdout, **classify)}


def _public_data_utility(recorded: dict[str, Any] | None, run: RunConfig, *, holdout: LabelledSet,
                          classify: dict[str, Any]) -> dict[str, Any] | None:
    """Both classifiers trained on the public pretraining's own real records, no site's:
    the baseline the synthetic data must beat to be worth the sites' privacy.

    A generator fine-tuned from a public pretraining could score well only because the
    public data is good (Tramer, Kamath & Carlini, "Considerations for differentially private
    learning with large-scale public pretraining", 2022); a classifier trained on that public
    data directly says how much the sites' DP fine-tuning adds. ``recorded`` is the run's
    public pretraining (:func:`_public_pretraining`): ``None`` for a run from random weights,
    which gets ``None``; ``{"unavailable": why}`` where the public data cannot be read here.

    Returns:
        The CNN's scores (:func:`classifier_scores`) and ``trees`` (:func:`gbt_scores`),
        each with ``num_samples`` and ``class_counts``.
    """
    if recorded is None or not recorded.get("public-records"):
        return None
    modality = get_modality(run.modality)
    try:
        public = load_public_data(replace(run, public_records=recorded["public-records"]))
    except (ConfigError, OSError) as error:
        logger.warning("report: the public pretraining's records are not readable here (%s); no public-data row",
                       error)
        return {"unavailable": str(error)}
    data = LabelledSet(public.samples.float(), public.labels.long(), tuple(public.patient_ids))
    counts = data.class_counts(modality.class_names)
    if min(counts.values()) == 0:
        return {"unavailable": f"the public records hold no {[c for c, n in counts.items() if n == 0]} record"}
    logger.info("report: both classifiers on the public pretraining's %d real %ss alone", len(data),
                modality.record_word)
    size = {"num_samples": len(data), "class_counts": counts}
    trees = gbt_scores(data, holdout, num_classes=classify["num_classes"], seeds=classify["seeds"],
                       config=GbtConfig(), per_patient=True)
    return {**classifier_scores(data, holdout, **classify, per_patient=True), **size, "trees": {**trees, **size}}


def _settings_record(settings: EvaluationSettings, *, seed: int, round_samples: int) -> dict:
    return {"synthetic_per_class": settings.synthetic_per_class, "dtw_samples": settings.dtw_samples,
            "dtw_radius_samples": settings.dtw_radius, "classifier_epochs": settings.classifier_epochs,
            "classifier_seeds": list(settings.classifier_seeds), "physical_scale": settings.physical_scale,
            "seed": seed, "round_samples": round_samples}


def _inception(path: str | Path | None, *, holdout: LabelledSet, synthetic: LabelledSet) -> float | str | None:
    if path is None:
        return None
    try:
        return inception_fid(holdout.samples, synthetic.samples, path=path)
    except ValueError as error:  # not images: the encoder FD is the feature-space score
        logger.warning("--inception %s ignored: %s", path, error)
        return f"not applicable: {error}"


def _export_and_read_back(directory: RunDirectory, run: RunConfig, *, modality: Modality, privacy: dict,
                          synthetic: LabelledSet) -> tuple[LabelledSet, dict]:
    """Export ``synthetic`` as the modality's files, then read them back as a user would get them."""
    out = directory.root / modality.export_dir
    if out.exists():
        shutil.rmtree(out)  # a recomputed report replaces the export, never mixes two
    spent = max((s["epsilon_spent"] for s in privacy.values()), default=float("nan"))
    provenance = (f"Model {run.model}, {len(run.site_record_groups())} sites, {run.num_server_rounds} rounds; "
                  + (f"DP per site: epsilon <= {spent:.2f}, delta = {run.target_delta:g}." if run.dp_enabled
                     else "NOT differentially private (control run)."))
    written = modality.export(synthetic.samples.numpy(), synthetic.labels.numpy(), out, provenance=provenance)
    exported = modality.read_back(written, image_size=run.image_size)
    return exported, {"dir": modality.export_dir, "format": modality.export_format, "files": len(written),
                      "read_back": len(exported)}


def _macro(per_class: dict[str, dict], key: str) -> float | None:
    values = [scores[key] for scores in per_class.values() if key in scores]
    return float(np.mean(values)) if values else None


def _central_rounds(directory: RunDirectory, run: RunConfig, *, modality: Modality, score: dict,
                    settings: EvaluationSettings) -> list[dict]:
    """FD, the modality's round metric and coverage of every saved round's generator on the
    held-out patients (macro over classes)."""
    from medgan_core.models import build_gan

    rows = []
    for path in track(sorted(directory.checkpoints.glob("round-*.pt")), description="report: scoring each round"):
        checkpoint = directory.load_checkpoint(path.name)
        gan = build_gan(run)
        load_gan_state(gan, checkpoint["state"])
        gan.generator.to(score["device"])
        scores = evaluate_generator(gan=gan, settings=settings, with_reference=False, **score)["per_class"]
        rows.append({"round": int(checkpoint["round"]),
                     **{key: _macro(scores, key) for key in (FD, modality.round_metric, COVERAGE)}})
    return rows


def _figures(directory: RunDirectory, run: RunConfig, *, modality: Modality, holdout: LabelledSet,
             synthetic: LabelledSet, privacy: dict, history: list[dict], central_rounds: list[dict],
             seed: int) -> list[str]:
    figures = directory.root / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    modality.plot_samples(holdout, synthetic, figures, seed=seed)
    train = [h for h in history if h.get("train")]
    plot_curves(
        _non_empty({
            "epsilon (ledger)": {site: s["epsilon_by_round"] for site, s in privacy.items()},
            "discriminator loss on fakes": {"mean of sites": [(h["round"], h["train"]["d-loss-fake"]) for h in train]},
            "generator loss": {"mean of sites": [(h["round"], h["train"]["g-loss"]) for h in train]},
        }),
        figures / "training_curves.png", title=f"{run.modality} federation, target epsilon {run.target_epsilon}",
    )
    held_out = "central, held-out patients"
    plot_curves(
        _non_empty({metric(key).label_in(modality.sample_unit): {
            held_out: [(r["round"], r[key]) for r in central_rounds if r.get(key) is not None]}
            for key in (FD, modality.round_metric, COVERAGE)}),
        figures / "utility_curves.png", title="utility of the global generator per round",
    )
    return sorted(str(p.relative_to(directory.root)) for p in figures.glob("*.png"))


Curves = dict[str, dict[str, Sequence[tuple[float, float]]]]


def _non_empty(panels: dict[str, dict[str, list]]) -> Curves:
    """Panels and series that have points (a non-private run has no epsilon curve)."""
    kept: Curves = {title: {name: pts for name, pts in lines.items() if pts} for title, lines in panels.items()}
    return {title: lines for title, lines in kept.items() if lines} or {"(no data)": {}}




if __name__ == "__main__":  # pragma: no cover
    import sys

    logging.basicConfig(level=logging.INFO)
    print(json.dumps(write_report(sys.argv[1])["utility"], indent=2))


def _public_pretraining(directory: RunDirectory) -> dict[str, Any] | None:
    """What the ServerApp recorded of round 1's public pretraining (``None``: random weights)."""
    path = directory.root / "public_pretraining.json"
    if not path.is_file():
        return None
    recorded = directory.read_json("public_pretraining.json")
    keep = ("pretrained", "public-records", "licence", "samples", "class-counts", "data-sha256")
    return {key: recorded.get(key) for key in keep} | {"steps": recorded.get("training", {}).get("steps")}
