"""``medgan study``: GAN variants x epsilon x training setting on a modality's bundled data.

One table (Markdown, CSV, JSON) and one plot (PNG) answering two questions honestly:
does utility fall as epsilon falls, and does federated training beat local-only training
at equal epsilon? Every cell gives each data holder the same work (``rounds`` x
``local_steps`` DP-SGD steps of ``batch_size``) and the same per-holder target (epsilon,
delta); the noise is derived by the site code from what remains of the budget.

Settings:

* ``centralized``: one holder with the pooled beats of every site's training patients
  (what pooling the data would give; a ceiling, not something hospitals can do);
* ``local``: each site trains alone on its own patients; scored per site and reported as
  the mean over sites (per-site scores are in the JSON);
* ``federated``: every round each site trains from the global weights through exactly the
  code of the Flower ClientApp (:func:`medgan_core.site.train_round`, ledger included),
  and the server averages the replies IN-PROCESS with Flower's own FedAvg arithmetic
  (:mod:`simulations.inprocess`), so the result is numerically what the simulation engine
  would produce, without Ray. The other two settings are the same in-process federation
  with one site.

The modality is the run config's (``modality``; ``medgan study --modality xray`` adds the
modality's :attr:`~medgan_core.modalities.Modality.bundled_simulation`); everything that
differs between modalities (class names, encoder backbone, the sample-space metric, the
record word of the epsilon) is asked of the :class:`~medgan_core.modalities.Modality`.
By default the grid is every registered GAN variant that generates the modality's kind of
sample (``GanSpec.applies_to``), and every cell is record-level DP (one beat, one image):
the same unit for every variant, so the table compares like with like, and the unit
VAE-GANs need (patient-level DP clips only a discriminator).

Every generator is scored with :func:`medgan_core.evaluation.evaluate_generator` against
the held-out patients, in one shared domain encoder trained on the sites' real training
records (``<out>/encoder.pt``). Budgets are small so the study runs on a 2-core laptop; the
numbers are for comparing settings with each other, not for judging the method's ceiling.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medgan_core.config import RunConfig
from medgan_core.data.labelled import LabelledSet
from medgan_core.evaluation import (
    EvaluationSettings,
    classifier_scores,
    evaluate_generator,
    feature_bandwidth,
    score_against_real,
)
from medgan_core.io_utils import atomic_write_text
from medgan_core.metrics.encoder import load_or_train_encoder
from medgan_core.metrics.names import COVERAGE, FD, MMD2, PRECISION, RECALL
from medgan_core.modalities import Modality, get_modality
from medgan_core.models.registry import available_gans, gan_spec
from medgan_core.models.state import load_gan_state
from medgan_core.progress import track
from medgan_core.run_dir import RunDirectory
from medgan_core.models import build_gan
from medgan_core.site import SiteConfig
from simulations.inprocess import initial_weights, run_inprocess_federation, simulated_sites
from simulations.report import run_training_sets, single_threaded

__all__ = ["SETTINGS", "StudyConfig", "compact_table", "run_study", "study_models", "train_setting"]

logger = logging.getLogger(__name__)

SETTINGS = ("centralized", "local", "federated")
_FEATURE_METRICS = (FD, MMD2, PRECISION, RECALL, COVERAGE)
#: The study's privacy unit unless ``overrides`` says otherwise (module docstring).
STUDY_PRIVACY_UNIT = "record"
#: ``--quick`` images: 32x32 keeps an X-ray cell near an ECG cell's cost (signals ignore it).
QUICK_IMAGE_SIZE = 32


@dataclass(frozen=True)
class StudyConfig:
    """The study's grid and budgets (the defaults are the documented full study).

    Attributes:
        out_dir: Where cells, ``study.md/.csv/.json`` and ``study.png`` go.
        models: Registered GAN variants (``medgan_core.models.registry``) that generate the
            modality's kind of sample; empty = every such variant (:func:`study_models`).
        epsilons: Per-holder targets; ``math.inf`` means no DP (``dp-enabled=false``).
        settings: Any of :data:`SETTINGS`.
        rounds, local_steps, batch_size: Work of every data holder.
        discriminator_steps: Discriminator steps per generator step in every cell. 1 (the
            study's budgets are a few dozen steps; at the main job's n_D = 5 a quick cell's
            generator would take five steps a round), so the study's tables stay comparable.
        synthetic_per_class, classifier_epochs, classifier_seeds, encoder_epochs: Scoring.
        overrides: Run-config overrides (e.g. ``modality``, ``site-records``), as
            ``medgan simulate``; ``privacy-unit`` defaults to :data:`STUDY_PRIVACY_UNIT`.
    """

    out_dir: Path = Path("runs/study")
    models: tuple[str, ...] = ()
    epsilons: tuple[float, ...] = (1.0, 3.0, 10.0, math.inf)
    settings: tuple[str, ...] = SETTINGS
    rounds: int = 3
    local_steps: int = 100
    batch_size: int = 64
    discriminator_steps: int = 1
    synthetic_per_class: int = 300
    classifier_epochs: int = 5
    classifier_seeds: tuple[int, ...] = (0, 1)
    encoder_epochs: int = 5
    overrides: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **changes: object) -> "StudyConfig":
        """A smoke-sized study: 2 rounds x 25 steps per holder, one classifier seed, 32x32 images."""
        base: dict[str, object] = dict(rounds=2, local_steps=25, synthetic_per_class=150, classifier_epochs=3,
                                       classifier_seeds=(0,), encoder_epochs=3)
        overrides = {"image-size": QUICK_IMAGE_SIZE, **dict(changes.pop("overrides", None) or {})}  # type: ignore[call-overload]
        return cls(**{**base, **changes, "overrides": overrides})  # type: ignore[arg-type]

    def validate(self) -> None:
        unknown = sorted(set(self.settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown study settings {unknown}; choose from {list(SETTINGS)}")
        if not self.epsilons or any(not e > 0 for e in self.epsilons):
            raise ValueError(f"epsilons={self.epsilons} must be positive (inf = no DP)")

    def run_overrides(self) -> dict:
        """``overrides`` with the study's privacy unit filled in."""
        return {"privacy-unit": STUDY_PRIVACY_UNIT, **self.overrides}


def study_models(study: StudyConfig, modality: Modality) -> tuple[str, ...]:
    """The variants of the grid: ``study.models``, or every registered one that fits ``modality``.

    The default takes the variants that declare the modality's kind of sample
    (``GanSpec.sample_kinds``); one that declares none applies anywhere unchecked, so it
    joins a grid only by name.

    Raises:
        ValueError: a variant is unknown or does not generate the modality's kind of sample;
            the message lists the variants that do.
    """
    kind = modality.encoder_backbone
    fitting = tuple(name for name in available_gans() if kind in gan_spec(name).sample_kinds)
    for model in study.models:  # gan_spec fails early on an unknown name, listing the registered variants
        if not gan_spec(model).applies_to(kind):
            raise ValueError(f"model {model!r} does not generate {kind} samples, which modality {modality.name!r} "
                             f"needs; use one of {', '.join(fitting)} (or --modality for another modality)")
    return study.models or fitting


def _central_site(run: RunConfig) -> SiteConfig:
    pooled = get_modality(run.modality).pooled_simulated_site(run)
    return SiteConfig(site_id="central", modality=run.modality, data_paths=pooled.data_paths,
                      patient_share=pooled.patient_share,
                      ledger_path=RunDirectory(run.run_dir).site_ledger_path("central"),
                      target_epsilon=run.target_epsilon, target_delta=run.target_delta, allow_non_private=True)


def train_setting(setting: str, run: RunConfig) -> list[tuple[str, dict, float]]:
    """Train one setting; returns ``(holder, final GAN state, epsilon spent)`` per model produced.

    Every setting is :func:`simulations.inprocess.run_inprocess_federation` from the
    ServerApp's initial weights: of every site (federated), of each site alone (local), or
    of one site holding the pooled data (centralized).
    """
    initial = initial_weights(run)  # the same initial weights in every setting, as the ServerApp
    if setting == "centralized":
        result = run_inprocess_federation(run, sites=[_central_site(run)], initial=initial, run_id="study")
        return [("central", result.weights, result.epsilon["central"])]
    if setting == "local":
        produced = []
        for site in simulated_sites(run):
            result = run_inprocess_federation(run, sites=[site], initial=initial, run_id="study")
            produced.append((site.site_id, result.weights, result.epsilon[site.site_id]))
        return produced
    if setting == "federated":
        result = run_inprocess_federation(run, initial=initial, run_id="study")
        return [("federation", result.weights, max(result.epsilon.values()))]
    raise ValueError(f"unknown setting {setting!r}; choose from {list(SETTINGS)}")


def _summarise(per_class: dict[str, dict], tstr: dict, *, sample_metric: str) -> dict[str, float]:
    row = {key: float(np.mean([c[key] for c in per_class.values()])) for key in (*_FEATURE_METRICS, sample_metric)}
    row.update(tstr_balanced_accuracy=tstr["balanced_accuracy"], tstr_auroc=tstr["auroc"],
               tstr_std=tstr["balanced_accuracy_std"])
    return row


def _cell_run(base: RunConfig, study: StudyConfig, model: str, epsilon: float, setting: str) -> RunConfig:
    label = "nodp" if math.isinf(epsilon) else f"eps{epsilon:g}"
    cell = study.out_dir / "cells" / model / label / setting
    if cell.exists():
        shutil.rmtree(cell)  # a cell's ledgers belong to that cell only
    return replace(base, model=model, dp_enabled=not math.isinf(epsilon),
                   target_epsilon=base.target_epsilon if math.isinf(epsilon) else float(epsilon),
                   num_server_rounds=study.rounds, local_steps=study.local_steps, batch_size=study.batch_size,
                   discriminator_steps=study.discriminator_steps, run_dir=str(cell.resolve()))


def _check_cells(base: RunConfig, models: tuple[str, ...]) -> None:
    """Every variant's private cell is a valid run (e.g. no VAE-GAN under patient-level DP), before any training."""
    for model in models:
        replace(base, model=model, dp_enabled=True).validate()


def run_study(study: StudyConfig) -> dict:
    """Train and score every (model, epsilon, setting) cell; write the table and the plot.

    Returns:
        The study as a dict (also ``study.json``).
    """
    from simulations.federation import resolve_run_config

    from simulations.federation import APP_DIR
    from flwr.common.config import get_fused_config_from_dir

    study.validate()
    overrides = study.run_overrides()
    modality = get_modality(str(get_fused_config_from_dir(APP_DIR, dict(overrides))["modality"]))
    models = study_models(study, modality)
    # The base run takes the grid's first variant: the configured one may not fit the modality.
    base = resolve_run_config({**overrides, "model": models[0]})
    _check_cells(base, models)
    study = replace(study, models=models)
    study.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with single_threaded():
        sites, holdout = run_training_sets(base)
        train = LabelledSet.concat(sites)
        encoder = load_or_train_encoder(study.out_dir / "encoder.pt", train.samples, train.labels,
                                        backbone=modality.encoder_backbone, epochs=study.encoder_epochs,
                                        seed=base.seed)
        bandwidth = feature_bandwidth(encoder, train)
        settings = modality.evaluation_settings(synthetic_per_class=study.synthetic_per_class, dtw_samples=60,
                                                classifier_epochs=study.classifier_epochs,
                                                classifier_seeds=study.classifier_seeds)
        score = dict(modality=modality, encoder=encoder, holdout=holdout, train=train,
                     class_names=modality.class_names, settings=settings, bandwidth=bandwidth)
        rows = [_reference_row(train, holdout, score, study)]
        cells = [(m, e, s) for m in models for e in study.epsilons for s in study.settings]
        for model, epsilon, setting in track(cells, description="study: variant x epsilon x setting"):
            rows.append(_cell(base, study, model, epsilon, setting, score))
            _write(study, base, rows, started)  # partial results survive an interrupted study
    return _write(study, base, rows, started)


def _reference_row(train: LabelledSet, holdout: LabelledSet, score: dict, study: StudyConfig) -> dict:
    """Real training records scored like a generator (the ceiling), with TRTR."""
    settings: EvaluationSettings = score["settings"]
    reference = {}
    for index, name in enumerate(score["class_names"]):
        real = train.of_class(index).subsample(settings.synthetic_per_class, seed=0)
        held_out = holdout.of_class(index).subsample(settings.max_real_per_class, seed=0)
        reference[name] = score_against_real(real, held_out, modality=score["modality"], encoder=score["encoder"],
                                             settings=settings, bandwidth=score["bandwidth"], seed=0)
    trtr = classifier_scores(train, holdout, num_classes=len(score["class_names"]),
                             epochs=settings.classifier_epochs, seeds=settings.classifier_seeds)
    return {"model": "real data", "setting": "reference (TRTR)", "target_epsilon": None,
            "epsilon_spent": None, **_summarise(reference, trtr, sample_metric=score["modality"].round_metric),
            "seconds": 0.0}


def _cell(base: RunConfig, study: StudyConfig, model: str, epsilon: float, setting: str, score: dict) -> dict:
    run = _cell_run(base, study, model, epsilon, setting)
    logger.info("study cell: %s, epsilon %s, %s (%d rounds x %d steps)", model, epsilon, setting, run.num_server_rounds,
                run.local_steps)
    t0 = time.time()
    produced = train_setting(setting, run)
    holders: list[dict[str, Any]] = []
    for holder, state, spent in produced:
        gan = build_gan(run)
        load_gan_state(gan, state)
        result = evaluate_generator(gan=gan, with_reference=False, seed=0, **score)
        holders.append({"holder": holder, "epsilon_spent": spent,
                        **_summarise(result["per_class"], result["tstr"], sample_metric=score["modality"].round_metric)})
    metrics = {key: float(np.mean([h[key] for h in holders])) for key in holders[0] if key not in ("holder",)}
    metrics["epsilon_spent"] = max(h["epsilon_spent"] for h in holders)
    return {"model": model, "setting": setting, "target_epsilon": epsilon, **metrics,
            "holders": holders, "seconds": time.time() - t0}


def _write(study: StudyConfig, base: RunConfig, rows: list[dict], started: float) -> dict:
    modality = get_modality(base.modality)
    conclusions = conclude(rows)
    seconds = time.time() - started
    payload: dict[str, Any] = {"config": {**asdict(study), "out_dir": str(study.out_dir)}, "modality": modality.name,
               "privacy_unit": base.unit, "epsilon_unit": epsilon_unit(base), "image_size": base.image_size,
               "rows": rows, "conclusions": conclusions, "seconds": seconds}
    out = study.out_dir
    atomic_write_text(out / "study.json", json.dumps(_json_safe(payload), indent=2))
    atomic_write_text(out / "study.csv", _csv(rows, sample_metric=modality.round_metric))
    atomic_write_text(out / "study.md", _markdown(study, base, rows, conclusions, seconds))
    _plot(rows, out / "study.png")
    return payload


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def epsilon_unit(run: RunConfig) -> str:
    """What one unit of a printed epsilon protects: "per beat", "per image", "per patient"."""
    return f"per {get_modality(run.modality).record_word}" if run.unit == "record" else f"per {run.unit}"


def _csv(rows: list[dict], *, sample_metric: str) -> str:
    columns = ("model", "setting", "target_epsilon", "epsilon_spent", *_FEATURE_METRICS, sample_metric,
               "tstr_balanced_accuracy", "tstr_std", "tstr_auroc", "seconds")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _json_safe(row.get(k)) for k in columns})
    return buffer.getvalue()


def _eps_label(epsilon: float | None) -> str:
    if epsilon is None:
        return "-"
    return "no DP" if math.isinf(epsilon) else f"{epsilon:g}"


def _tolerance(rows: list[dict]) -> float:
    """Smallest TSTR difference read as real: twice the classifier seed std, at least 0.02."""
    stds = [r["tstr_std"] for r in rows if r.get("tstr_std")]
    return max(0.02, 2.0 * float(np.mean(stds))) if stds else 0.02


def conclude(rows: list[dict]) -> list[str]:
    """Plain-language answers computed from the rows (never written by hand)."""
    cells = [r for r in rows if r["target_epsilon"] is not None]
    tol = _tolerance(rows)
    lines = []
    for model in sorted({r["model"] for r in cells}):
        for setting in SETTINGS:
            series = sorted((r for r in cells if r["model"] == model and r["setting"] == setting),
                            key=lambda r: r["target_epsilon"])
            if len(series) < 2:
                continue
            low, high = series[0], series[-1]
            delta = high["tstr_balanced_accuracy"] - low["tstr_balanced_accuracy"]
            verdict = ("yes" if delta > tol else "no, it rose" if delta < -tol else "no clear change (within noise)")
            fd_verdict = "FD worsened" if low["fd"] > high["fd"] else "FD did not worsen"
            auroc = (f"; TSTR AUROC {low['tstr_auroc']:.3f} vs {high['tstr_auroc']:.3f}"
                     if "tstr_auroc" in low and "tstr_auroc" in high else "")
            lines.append(
                f"{model}, {setting}: does utility fall as epsilon falls? {verdict}: TSTR balanced accuracy "
                f"{low['tstr_balanced_accuracy']:.3f} at epsilon {_eps_label(low['target_epsilon'])} vs "
                f"{high['tstr_balanced_accuracy']:.3f} at {_eps_label(high['target_epsilon'])}{auroc}; {fd_verdict} "
                f"({low['fd']:.1f} vs {high['fd']:.1f}).")
        fed = {r["target_epsilon"]: r for r in cells if r["model"] == model and r["setting"] == "federated"}
        loc = {r["target_epsilon"]: r for r in cells if r["model"] == model and r["setting"] == "local"}
        shared = sorted(set(fed) & set(loc))
        if shared:
            wins = [e for e in shared
                    if fed[e]["tstr_balanced_accuracy"] - loc[e]["tstr_balanced_accuracy"] > tol]
            losses = [e for e in shared
                      if loc[e]["tstr_balanced_accuracy"] - fed[e]["tstr_balanced_accuracy"] > tol]
            fd_wins = [e for e in shared if fed[e]["fd"] < loc[e]["fd"]]
            auroc_wins = [e for e in shared if fed[e].get("tstr_auroc", 0.0) > loc[e].get("tstr_auroc", 0.0)]
            lines.append(
                f"{model}: does federated beat local-only at equal epsilon? TSTR better beyond noise at "
                f"{len(wins)} of {len(shared)} epsilons ({', '.join(map(_eps_label, wins)) or 'none'}), worse at "
                f"{len(losses)} ({', '.join(map(_eps_label, losses)) or 'none'}); higher TSTR AUROC at "
                f"{len(auroc_wins)} of {len(shared)}; lower FD at {len(fd_wins)} of {len(shared)}.")
    lines.append(f"Noise: differences in TSTR below {tol:.3f} (twice the classifier seed std, at least 0.02) are "
                 "read as no difference; GAN training seeds were not repeated, so the true noise is larger.")
    return lines


def _markdown(study: StudyConfig, base: RunConfig, rows: list[dict], conclusions: list[str], seconds: float) -> str:
    modality = get_modality(base.modality)
    record, unit, metric = modality.record_word, epsilon_unit(base), modality.round_metric
    size = f", {base.image_size}x{base.image_size} images" if modality.encoder_backbone == "image" else ""
    lines = [f"# Study: GAN variant x epsilon x training setting (bundled {modality.name} data{size})", "",
             f"Budget per data holder: {study.rounds} rounds x {study.local_steps} local steps, batch "
             f"{study.batch_size} (DP-SGD on the networks that see real {record}s; noise derived from the target "
             f"epsilon, delta {base.target_delta:g}). Epsilon is {unit} (privacy-unit = {base.unit!r}, the same "
             "for every variant). Federated = in-process FedAvg with Flower's own aggregation, weighted by "
             "num-examples; local = mean over the sites' own models; centralized = all training patients pooled. "
             f"Scores: held-out patients, macro over classes {' and '.join(modality.class_names)}, "
             f"{study.synthetic_per_class} synthetic {record}s per class, one shared domain encoder; TSTR = small "
             f"CNN ({study.classifier_epochs} epochs, seeds {list(study.classifier_seeds)}) trained on synthetic "
             f"{record}s. One GAN seed per cell. Wall time {seconds / 60:.1f} min.", "",
             f"| model | setting | target ε ({unit}) | ε spent | FD ↓ | MMD² ↓ | precision ↑ | recall ↑ | "
             f"coverage ↑ | {metric} ({modality.sample_unit}) ↓ | TSTR bal. acc. ↑ | TSTR AUROC ↑ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spent = r.get("epsilon_spent")
        spent_text = "-" if spent is None else ("∞" if math.isinf(spent) else f"{spent:.2f}")
        lines.append(
            f"| {r['model']} | {r['setting']} | {_eps_label(r['target_epsilon'])} | {spent_text} | {r['fd']:.1f} | "
            f"{r['mmd2']:.3f} | {r['precision']:.2f} | {r['recall']:.2f} | {r['coverage']:.2f} | {r[metric]:.3f} | "
            f"{r['tstr_balanced_accuracy']:.3f} ± {r['tstr_std']:.3f} | {r['tstr_auroc']:.3f} |")
    lines += ["", f"## TSTR AUROC by variant and setting (columns: target ε {unit})", "",
              compact_table(rows, unit=unit)]
    lines += ["", "## What the table says", ""] + [f"* {c}" for c in conclusions]
    lines += ["", "![study](study.png)", ""]
    return "\n".join(lines)


def compact_table(rows: list[dict], *, unit: str, key: str = "tstr_auroc") -> str:
    """Markdown: one row per (variant, setting), one column per target epsilon, ``key`` in the cells.

    Args:
        rows: The study's rows (``study.json``'s, with ``"inf"`` for no DP, also work).
        unit: What an epsilon protects, for the header ("per beat").
        key: The figure in the cells.
    """
    def eps(row: dict) -> float:
        return math.inf if row["target_epsilon"] in ("inf", math.inf) else float(row["target_epsilon"])

    cells = [r for r in rows if r["target_epsilon"] is not None]
    epsilons = sorted({eps(r) for r in cells})
    lines = ["| variant | setting | " + " | ".join(f"ε = {_eps_label(e)}" if math.isfinite(e) else "no DP"
                                                  for e in epsilons) + " |",
             "|---|---|" + "---|" * len(epsilons)]
    for model in dict.fromkeys(r["model"] for r in cells):
        for setting in SETTINGS:
            found = {eps(r): r[key] for r in cells if r["model"] == model and r["setting"] == setting}
            if found:
                lines.append(f"| {model} | {setting} | "
                             + " | ".join(f"{found[e]:.3f}" if e in found else "-" for e in epsilons) + " |")
    reference = "".join(f" Real training data (TRTR): {r[key]:.3f}." for r in rows
                        if r["target_epsilon"] is None)
    return "\n".join([f"ε {unit}; one GAN seed per cell.{reference}", "", *lines])


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    import medgan_core.plots  # noqa: F401  (selects the Agg backend)

    cells = [r for r in rows if r["target_epsilon"] is not None]
    reference = next((r for r in rows if r["target_epsilon"] is None), None)
    finite = sorted({r["target_epsilon"] for r in cells if math.isfinite(r["target_epsilon"])})
    nodp_x = (finite[-1] * 3.0) if finite else 1.0

    def x_of(eps: float) -> float:
        return nodp_x if math.isinf(eps) else eps

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "tstr_balanced_accuracy", "TSTR balanced accuracy (higher is better)"),
                           (axes[1], "fd", "Fréchet distance, encoder features (lower is better)")):
        for i, (model, setting) in enumerate(sorted({(r["model"], r["setting"]) for r in cells})):
            series = sorted((r for r in cells if r["model"] == model and r["setting"] == setting),
                            key=lambda r: x_of(r["target_epsilon"]))
            ax.plot([x_of(r["target_epsilon"]) for r in series], [r[key] for r in series], marker="o",
                    color=f"C{SETTINGS.index(setting)}", linestyle=("-", "--", ":", "-.")[i // len(SETTINGS) % 4],
                    label=f"{setting} ({model})")
        if reference is not None:
            ax.axhline(reference[key], color="k", linestyle="--", lw=1, label="real data (TRTR / reference)")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks([*finite, nodp_x], [*(f"{e:g}" for e in finite), "no DP"])
        ax.set_xlabel("target epsilon per data holder")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
