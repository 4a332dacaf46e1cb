"""``medgan explain`` on a run: attributions of its discriminator and of a TSTR classifier.

Both models are explained on synthetic samples of the run's generator and, when this
machine holds the run's simulated hold-out patients (a researcher's simulation), on those
too. A deployed run has no hold-out data here, so it is explained on synthetic samples
only. Nothing is computed at or sent from a site: the GAN is the released global model,
and a site's training records are never read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.explain.attributions import ATTRIBUTION_METHODS, attribute, fold_discriminator
from medgan_core.explain.figures import plot_attribution_grid
from medgan_core.explain.summary import REST, attribution_share_map, region_shares
from medgan_core.generate import load_run_gan, sample_per_class
from medgan_core.metrics.tstr import evaluate_classifier, train_classifier
from medgan_core.modalities import Modality, get_modality
from medgan_core.progress import track

__all__ = ["Explanation", "explain_run", "explanation_markdown", "focus_rows", "write_explanation"]

logger = logging.getLogger(__name__)

MODELS = ("discriminator", "classifier")


@dataclass
class Explanation:
    """Attribution summaries of one run.

    Attributes:
        modality: The run's modality name.
        class_names: Class order; the last class is the one the report focuses on (V, PNEUMONIA).
        share_maps: data set -> model -> method -> class -> ``(C, ...)`` mean share map.
        mean_samples: data set -> class -> ``(C, ...)`` mean explained sample.
        summary: explain.json's content (region shares, counts, classifier scores).
    """

    modality: str
    class_names: tuple[str, ...]
    share_maps: dict[str, dict[str, dict[str, dict[str, np.ndarray]]]] = field(default_factory=dict)
    mean_samples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def explain_run(*, run_dir: str | Path, n_per_class: int = 64, methods: tuple[str, ...] = ("shap", "lrp", "lime"),
                seed: int = 0, train_per_class: int = 500, classifier_epochs: int = 8,
                lime_per_class: int = 16) -> Explanation:
    """Attributions of the run's discriminator and of a classifier trained on its synthetic data.

    Args:
        run_dir: A run directory with ``config.json`` and ``checkpoints/latest.pt``.
        n_per_class: Synthetic (and at most this many held-out) samples explained per class.
        methods: Names in :data:`ATTRIBUTION_METHODS`.
        seed: Seeds sampling, the classifier and the attribution methods.
        train_per_class: Synthetic samples per class the TSTR classifier is trained on
            (drawn apart from the explained ones).
        classifier_epochs: Its training epochs.
        lime_per_class: LIME fits one surrogate per sample, so it explains only the first
            this many samples of each class.

    Raises:
        ValueError: an unknown method or a count below 1.
        ConfigError: no run or no checkpoint in ``run_dir``.
    """
    unknown = [m for m in methods if m not in ATTRIBUTION_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods {list(methods)}: use one or more of {', '.join(ATTRIBUTION_METHODS)}")
    for name, value in (("n_per_class", n_per_class), ("train_per_class", train_per_class),
                        ("lime_per_class", lime_per_class)):
        if value < 1:
            raise ValueError(f"{name}={value}: must be at least 1")
    gan, run = load_run_gan(run_dir)
    modality = get_modality(run.modality)
    classes = modality.class_names[:gan.num_classes]
    train_x, train_y = sample_per_class(gan, train_per_class, seed=seed)
    classifier = train_classifier(torch.from_numpy(train_x), torch.from_numpy(train_y).long(),
                                  num_classes=gan.num_classes, epochs=classifier_epochs, seed=seed)
    synthetic_x, synthetic_y = sample_per_class(gan, n_per_class, seed=seed + 1)
    data_sets = {"synthetic": (torch.from_numpy(synthetic_x), torch.from_numpy(synthetic_y).long())}
    held_out = _held_out(modality, run, n_per_class=n_per_class, seed=seed)
    if held_out is not None:
        data_sets["held-out real"] = held_out
    explanation = Explanation(modality=run.modality, class_names=tuple(classes))
    sample_shape = tuple(data_sets["synthetic"][0].shape[1:])
    regions = modality.attribution_regions(sample_shape)
    results: dict = {}
    # LIME fits one surrogate model per sample: it explains fewer samples than the gradient methods.
    per_method = {"lime": min(lime_per_class, n_per_class)}
    jobs = [(d, m, method, c) for d in data_sets for m in MODELS for method in methods for c in range(len(classes))]
    for data_name, model_name, method, label in track(jobs, description="attributions"):
        x, y = data_sets[data_name]
        inputs = x[y == label][:per_method.get(method, n_per_class)]
        if not len(inputs):
            continue
        model, target = ((fold_discriminator(gan.discriminator, label), 0) if model_name == "discriminator"
                         else (classifier, label))
        share = attribution_share_map(attribute(method, model, inputs, target=target, seed=seed))
        explanation.share_maps.setdefault(data_name, {}).setdefault(model_name, {}).setdefault(method, {})[
            classes[label]] = share
        results.setdefault(data_name, {}).setdefault(model_name, {}).setdefault(method, {})[classes[label]] = {
            "n": len(inputs), "regions": region_shares(share, regions)}
    for data_name, (x, y) in data_sets.items():
        explanation.mean_samples[data_name] = {name: x[y == k].mean(0).numpy() for k, name in enumerate(classes)
                                               if (y == k).any()}
    explanation.summary = {
        "modality": run.modality, "classes": list(classes), "focus_class": classes[-1], "methods": list(methods),
        "seed": seed, "regions": list(regions) + [REST],
        # A region's share under uniform attribution: its fraction of the sample.
        "uniform_shares": region_shares(np.ones(sample_shape), regions), "data": {k: int(len(v[1])) for k, v in data_sets.items()},
        "classifier": _classifier_summary(classifier, held_out, train_per_class, classifier_epochs),
        "results": results,
    }
    return explanation


def _held_out(modality: Modality, run: RunConfig, *, n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Up to ``n_per_class`` records per class of the run's simulated hold-out patients, if
    this machine has them; ``None`` otherwise (a deployed run, or data not here)."""
    try:
        missing = modality.simulation_data_missing(run)
        site = modality.simulated_site(run, 0)
    except (ConfigError, ValueError, IndexError) as error:  # a deployed run need not describe a simulation
        logger.info("no simulated hold-out set in the run config (%s); synthetic samples only", error)
        return None
    if missing or not site.audit_paths:
        logger.info("the run's hold-out data is not on this machine (%s); synthetic samples only",
                    ", ".join(missing[:3]) or "none named")
        return None
    data = modality.load(site.audit_paths, image_size=run.image_size, patient_share=site.audit_share)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(len(data.class_names)):
        indices = np.flatnonzero(data.labels.numpy() == label)
        chosen += sorted(rng.choice(indices, size=min(n_per_class, len(indices)), replace=False).tolist())
    if not chosen:
        return None
    index = torch.tensor(chosen, dtype=torch.long)
    return data.samples[index].float(), data.labels[index].long()


def _classifier_summary(classifier: nn.Module, held_out: tuple[torch.Tensor, torch.Tensor] | None,
                        train_per_class: int, epochs: int) -> dict:
    summary: dict = {"trained_on": "synthetic", "train_per_class": train_per_class, "epochs": epochs}
    if held_out is not None:
        summary["held_out_scores"] = evaluate_classifier(classifier, *held_out).to_dict()
    return summary


def write_explanation(explanation: Explanation, out: Path, *, regions: dict[str, np.ndarray],
                      sample_scale: float = 1.0, sample_unit: str = "") -> list[Path]:
    """Write ``explain.json``, ``explain.md`` and one PNG per data set and model into ``out``.

    Returns:
        The written paths.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for data_name, models in explanation.share_maps.items():
        for model_name, maps in models.items():
            path = out / f"{data_name.replace(' ', '_')}_{model_name}.png"
            paths.append(plot_attribution_grid(
                maps, explanation.mean_samples[data_name], regions, path, sample_scale=sample_scale,
                sample_unit=sample_unit, title=f"{model_name} on {data_name} samples: mean |attribution| share"))
    summary = {**explanation.summary, "figures": [p.name for p in paths]}
    (out / "explain.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "explain.md").write_text(explanation_markdown(summary))
    return [*paths, out / "explain.json", out / "explain.md"]


def focus_rows(summary: dict) -> list[dict]:
    """One row per data set, model and method: the focus class's region shares and top region."""
    rows = []
    focus = summary["focus_class"]
    for data_name, models in summary["results"].items():
        for model_name, methods in models.items():
            for method, per_class in methods.items():
                if focus in per_class:
                    shares = per_class[focus]["regions"]
                    named = {k: v for k, v in shares.items() if k != REST}
                    rows.append({"data": data_name, "model": model_name, "method": method,
                                 "n": per_class[focus]["n"], "top": max(named, key=named.__getitem__),
                                 "shares": shares})
    return rows


def explanation_markdown(summary: dict) -> str:
    """The report section: per method and model, the regions carrying the focus class's attribution."""
    focus, regions = summary["focus_class"], summary["regions"]
    lines = [
        "## Explanations",
        "",
        f"Share of the mean absolute attribution of class **{focus}** in each region (each sample's "
        "attribution normalised to 1, then averaged). The discriminator is explained for its "
        f"class-{focus} score; the classifier (trained on synthetic samples only) for its {focus} logit. "
        "SHAP: GradientShap against a zero baseline; LRP: epsilon rule, gamma rule on the first layer; "
        "LIME: ridge surrogate on blocks of the input.",
        "",
        "| data | model | method | n | " + " | ".join(regions) + " | top region |",
        "|---" * (len(regions) + 5) + "|",
    ]
    uniform = summary["uniform_shares"]
    lines.append("| (uniform attribution) | | | | " + " | ".join(f"{uniform[r]:.2f}" for r in regions) + " | |")
    for row in focus_rows(summary):
        cells = " | ".join(f"{row['shares'][r]:.2f}" for r in regions)
        lines.append(f"| {row['data']} | {row['model']} | {row['method']} | {row['n']} | {cells} | {row['top']} |")
    scores = summary["classifier"].get("held_out_scores")
    lines.append("")
    if scores:
        lines.append(f"The classifier's balanced accuracy on the held-out real records: "
                     f"{scores['balanced_accuracy']:.3f} (AUROC {scores['auroc']:.3f}).")
    else:
        lines.append("No held-out real data on this machine: synthetic samples only.")
    lines += ["", "Figures: " + ", ".join(f"![{f}]({f})" for f in summary.get("figures", [])), ""]
    return "\n".join(lines)
