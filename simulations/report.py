"""End-of-run report for an ECG federation: privacy spent, fidelity, utility, figures.

Everything is recomputed from the run directory (config, checkpoints, metrics.jsonl,
ledgers, ``encoder.pt``) and the bundled data, seeded and single-threaded, so
``medgan report --run-dir ...`` reproduces the numbers of a saved run exactly. The
metrics themselves are :mod:`medgan_core.evaluation`, shared with the sites and the study.

The domain encoder (``encoder.pt``) is trained here, once, on the REAL TRAINING beats of
every site's training patients (in simulation the researcher holds them all), then reused.
It is a non-private model of that data: keep it with the run, never with a data release.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.data.ecg import EcgConfig
from medgan_core.evaluation import (
    EvaluationSettings,
    LabelledSet,
    augmentation_gain,
    classifier_scores,
    ecg_labelled_set,
    evaluate_generator,
    feature_bandwidth,
    load_or_train_encoder,
)
from medgan_core.export.wfdb_export import write_synthetic_wfdb
from medgan_core.generate import load_run_gan
from medgan_core.io_utils import atomic_write_text
from medgan_core.models.state import load_gan_state
from medgan_core.plots import plot_beats_real_vs_synthetic, plot_curves
from medgan_core.progress import track
from medgan_core.run_dir import RunDirectory, simulated_sites_root
from privacy.ledger import PrivacyLedger

__all__ = ["ecg_report", "refusal_summary", "refusals_md", "run_training_sets", "single_threaded",
           "site_privacy_summary"]

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
    """Each simulated site's training beats and the held-out beats."""
    sites = []
    for patients in run.site_record_groups():
        sites.append(ecg_labelled_set(run.record_paths(list(patients)), patients))
    holdout = run.holdout_records.split()
    return sites, ecg_labelled_set(run.record_paths(holdout), holdout)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Same numbers on every machine: float reductions depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _macro(per_class: dict[str, dict], key: str) -> float | None:
    values = [scores[key] for scores in per_class.values() if key in scores]
    return float(np.mean(values)) if values else None


def _central_rounds(directory: RunDirectory, run: RunConfig, *, encoder, holdout: LabelledSet, train: LabelledSet,
                    settings: EvaluationSettings, bandwidth: float, seed: int) -> list[dict]:
    """FD and DTW of every saved round's generator on the held-out patients (macro over classes)."""
    from medgan_core.models import build_gan

    rows = []
    for path in track(sorted(directory.checkpoints.glob("round-*.pt")), description="report: scoring each round"):
        checkpoint = directory.load_checkpoint(path.name)
        gan = build_gan(run)
        load_gan_state(gan, checkpoint["state"])
        scores = evaluate_generator(gan=gan, encoder=encoder, holdout=holdout, train=train,
                                    class_names=EcgConfig().class_names, settings=settings, bandwidth=bandwidth,
                                    seed=seed, with_reference=False)["per_class"]
        rows.append({"round": int(checkpoint["round"]), "fd": _macro(scores, "fd"),
                     "dtw_syn_to_real_mv": _macro(scores, "dtw_syn_to_real"),
                     "coverage": _macro(scores, "coverage")})
    return rows


def ecg_report(run_dir: str | Path, *, n_per_class: int = 500, dtw_samples: int = 150, seed: int = 0,
               wfdb_per_class: int = 500, encoder_epochs: int = 5, classifier_epochs: int = 8,
               classifier_seeds: Sequence[int] = (0, 1, 2), round_samples: int = 200,
               inception: str | Path | None = None) -> dict:
    """Write ``report.json``, ``report.md``, figures and the synthetic WFDB export.

    Args:
        run_dir: A finished (or running) federation's run directory.
        n_per_class: Synthetic beats per class scored (and added in the augmentation test).
        dtw_samples: Synthetic beats per class for DTW (real: twice as many).
        seed: Seeds sampling, subsets and the classifiers.
        wfdb_per_class: Synthetic beats per class exported as WFDB.
        encoder_epochs: Epochs of the domain encoder, if ``encoder.pt`` is not there yet.
        classifier_epochs: Epochs of every TSTR/TRTR/augmentation classifier.
        classifier_seeds: One classifier per seed, scores averaged.
        round_samples: Synthetic beats per class for the per-round curves.
        inception: A TorchScript Inception-v3 file; conventional FID applies to images
            only, so for ECG it is recorded as not applicable (never downloaded).

    Returns:
        The report as a dict (also written to ``report.json``).
    """
    with single_threaded():
        return _ecg_report(Path(run_dir), n_per_class=n_per_class, dtw_samples=dtw_samples, seed=seed,
                           wfdb_per_class=wfdb_per_class, encoder_epochs=encoder_epochs,
                           classifier_epochs=classifier_epochs, classifier_seeds=tuple(classifier_seeds),
                           round_samples=round_samples, inception=inception)


def _ecg_report(run_dir: Path, *, n_per_class: int, dtw_samples: int, seed: int, wfdb_per_class: int,
                encoder_epochs: int, classifier_epochs: int, classifier_seeds: tuple[int, ...], round_samples: int,
                inception: str | Path | None) -> dict:
    directory = RunDirectory(run_dir)
    gan, run = load_run_gan(run_dir)
    config = EcgConfig()
    sites, holdout = run_training_sets(run)
    train = LabelledSet.concat(sites)
    logger.info("report: %d training beats from site patients, %d held-out beats from %s",
                len(train), len(holdout), run.holdout_records)
    encoder = load_or_train_encoder(directory.root / ENCODER_FILE, train, modality="ecg", epochs=encoder_epochs,
                                    seed=run.seed)
    bandwidth = feature_bandwidth(encoder, train)
    settings = EvaluationSettings(synthetic_per_class=n_per_class, dtw_samples=dtw_samples,
                                  dtw_radius=max(1, config.window // 10), physical_scale=config.amplitude_scale_mv,
                                  classifier_epochs=classifier_epochs, classifier_seeds=classifier_seeds)
    final = evaluate_generator(gan=gan, encoder=encoder, holdout=holdout, train=train,
                               class_names=config.class_names, settings=settings, bandwidth=bandwidth, seed=seed)
    synthetic = final.pop("synthetic")
    num_classes = len(config.class_names)
    trtr = classifier_scores(train, holdout, num_classes=num_classes, epochs=classifier_epochs,
                             seeds=classifier_seeds)
    smallest = int(np.argmin([len(s) for s in sites]))
    gain = augmentation_gain(site=sites[smallest], synthetic=synthetic, test=holdout, num_classes=num_classes,
                             epochs=classifier_epochs, seeds=classifier_seeds)
    gain["site"] = f"site-{smallest}"
    round_settings = replace(settings, synthetic_per_class=round_samples, max_real_per_class=2 * round_samples,
                             dtw_samples=max(10, dtw_samples // 4), classifier_seeds=())
    central_rounds = _central_rounds(directory, run, encoder=encoder, holdout=holdout, train=train,
                                     settings=round_settings, bandwidth=bandwidth, seed=seed)
    history = directory.read_metrics()
    privacy = site_privacy_summary(run)
    figures = _figures(directory, run, holdout=holdout, synthetic=synthetic, privacy=privacy, history=history,
                       central_rounds=central_rounds)
    wfdb_dir = directory.root / "synthetic_wfdb"
    beats, labels = synthetic.samples[:, 0].numpy(), synthetic.labels.numpy()
    picks = np.concatenate([np.flatnonzero(labels == c)[:wfdb_per_class] for c in range(num_classes)])
    written = write_synthetic_wfdb(beats[picks], labels[picks], wfdb_dir, config=config)
    # The exported files are what a user gets: read them back with wfdb (the project's
    # reader: rdrecord + rdann, resampling, beat windows) and train the same classifier.
    exported = ecg_labelled_set(written, [path.name for path in written])
    tstr_exported = classifier_scores(exported, holdout, num_classes=num_classes, epochs=classifier_epochs,
                                      seeds=classifier_seeds)
    tstr_exported["num_beats"] = len(exported)
    if inception is not None:
        logger.warning("--inception %s ignored: Inception-v3 FID is for images; ECG uses the domain encoder's FD",
                       inception)
    report = {
        "run_dir": str(directory.root.resolve()),
        "modality": run.modality,
        "dp_enabled": run.dp_enabled,
        "rounds": len(history),
        "privacy": privacy,
        "refusals": refusal_summary(history),
        "holdout_patients": run.holdout_records.split(),
        "holdout_class_counts": _counts(holdout, config),
        "train_class_counts": _counts(train, config),
        "dtw_nearest_neighbour": {
            name: {"synthetic_to_real_mv": s["dtw_syn_to_real"], "real_to_synthetic_mv": s["dtw_real_to_syn"],
                   "reference_train_to_holdout_mv": final["reference"][name]["dtw_syn_to_real"]}
            for name, s in final["per_class"].items() if "dtw_syn_to_real" in s},
        "utility": {"tstr": final["tstr"], "tstr_exported_wfdb": tstr_exported, "trtr": trtr},
        "final_metrics": final["per_class"],
        "reference_metrics": final["reference"],
        "memorisation": final["memorisation"],
        "augmentation_gain": gain,
        "rounds_central": central_rounds,
        "encoder": {"path": ENCODER_FILE, "trained_on": sorted(set(train.patients)), "epochs": encoder_epochs,
                    "seed": run.seed, "feature_dim": encoder.config.feature_dim, "mmd_bandwidth": bandwidth},
        "inception_fid": None if inception is None else "not applicable to 1-D ECG beats",
        "settings": {"synthetic_per_class": n_per_class, "dtw_samples": dtw_samples,
                     "dtw_radius_samples": settings.dtw_radius, "classifier_epochs": classifier_epochs,
                     "classifier_seeds": list(classifier_seeds), "seed": seed, "round_samples": round_samples},
        "synthetic_per_class": n_per_class,
        "figures": figures,
        "synthetic_wfdb": str(wfdb_dir.relative_to(directory.root)),
    }
    directory.write_json("report.json", report)
    atomic_write_text(directory.root / "report.md", _markdown(report, run))
    return report


def _counts(data: LabelledSet, config: EcgConfig) -> dict[str, int]:
    return {name: int((data.labels == i).sum()) for i, name in enumerate(config.class_names)}


def _figures(directory: RunDirectory, run: RunConfig, *, holdout: LabelledSet, synthetic: LabelledSet,
             privacy: dict, history: list[dict], central_rounds: list[dict]) -> list[str]:
    config = EcgConfig()
    figures = directory.root / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    plot_beats_real_vs_synthetic(holdout.samples[:, 0].numpy(), holdout.labels.numpy(),
                                 synthetic.samples[:, 0].numpy(), synthetic.labels.numpy(), config.class_names,
                                 figures / "real_vs_synthetic_beats.png", fs=config.model_fs,
                                 to_mv=config.amplitude_scale_mv)
    train = [h for h in history if h.get("train")]
    plot_curves(
        _non_empty({
            "epsilon (ledger)": {site: s["epsilon_by_round"] for site, s in privacy.items()},
            "discriminator loss on fakes": {"mean of sites": [(h["round"], h["train"]["d-loss-fake"]) for h in train]},
            "generator loss": {"mean of sites": [(h["round"], h["train"]["g-loss"]) for h in train]},
        }),
        figures / "training_curves.png", title=f"{run.modality} federation, target epsilon {run.target_epsilon}",
    )

    def points(rows: list[dict], key: str) -> list[tuple[float, float]]:
        return [(r["round"], r[key]) for r in rows if r.get(key) is not None]

    plot_curves(
        _non_empty({
            "Frechet distance (encoder)": {"central, held-out patients": points(central_rounds, "fd")},
            "nearest-neighbour DTW syn->real (mV)": {
                "central, held-out patients": points(central_rounds, "dtw_syn_to_real_mv")},
            "coverage (PRDC)": {"central, held-out patients": points(central_rounds, "coverage")},
        }),
        figures / "utility_curves.png", title="utility of the global generator per round",
    )
    return sorted(str(p.relative_to(directory.root)) for p in figures.glob("*.png"))


def _non_empty(panels: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
    """Panels and series that have points (a non-private run has no epsilon curve)."""
    kept = {title: {name: pts for name, pts in lines.items() if pts} for title, lines in panels.items()}
    return {title: lines for title, lines in kept.items() if lines} or {"(no data)": {}}


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


_METRIC_ROWS = (
    ("fd", "Fréchet distance, encoder features (lower = closer)"),
    ("precision", "PRDC precision (share of synthetic inside real manifold)"),
    ("recall", "PRDC recall (share of real inside synthetic manifold)"),
    ("density", "PRDC density"),
    ("coverage", "PRDC coverage (share of real neighbourhoods hit)"),
    ("mmd2", "MMD^2, RBF on encoder features"),
    ("dtw_syn_to_real", "DTW synthetic -> nearest real (mV)"),
    ("dtw_real_to_syn", "DTW real -> nearest synthetic (mV)"),
    ("rmse", "RMSE to nearest real (mV)"),
    ("mae", "MAE to nearest real (mV)"),
    ("psnr_db", "PSNR to nearest real (dB)"),
    ("ssim", "SSIM (1-D) to nearest real"),
)


def refusal_summary(history: list[dict]) -> dict:
    """Refusals in ``metrics.jsonl``: total, by fixed code, and per round."""
    by_code: dict[str, int] = {}
    rounds = []
    for h in history:
        codes = [str(reason).split(": ")[0] for reason in (h.get("refusals") or {}).values()]
        for code in codes:
            by_code[code] = by_code.get(code, 0) + 1
        if codes:
            rounds.append({"round": h["round"], "refused": len(codes), "trained": h.get("trained", 0),
                           "codes": sorted(set(codes))})
    return {"total": sum(by_code.values()), "by_code": by_code, "rounds": rounds}


def refusals_md(summary: dict) -> list[str]:
    """Markdown from :func:`refusal_summary`: every round in which a site refused, with the code."""
    lines = ["", "## Refusals", ""]
    if not summary["total"]:
        return lines + ["No site refused a request.", ""]
    lines += ["| round | sites that trained | sites that refused | codes |", "|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['trained']} | {r['refused']} | {', '.join(r['codes'])} |" for r in summary["rounds"]]
    return lines + [""]


def privacy_table_md(privacy: dict[str, dict]) -> list[str]:
    """Markdown rows: each site's spend from its ledger (``site_privacy_summary``)."""
    units = sorted({s.get("unit", "record") for s in privacy.values()}) or ["record"]
    meaning = {"record": "per record (one beat or one image), not per patient",
               "patient": "per patient (all of a person's records; user-level DP)"}
    lines = ["## Privacy spent per site (from each site's ledger)", "",
             "Epsilon is " + "; ".join(meaning[u] for u in units) + "; delta as given; composed over everything "
             "the site released (class counts, every round, audit releases).", "",
             "| site | unit | epsilon spent | target | delta | noise multiplier | DP steps | within budget |",
             "|---|---|---|---|---|---|---|---|"]
    for site, s in privacy.items():
        lines.append(f"| {site} | {s.get('unit', 'record')} | {_fmt(s['epsilon_spent'])} | {s['target_epsilon']:g} | "
                     f"{s['target_delta']:g} | {_fmt(s['noise_multiplier'])} | {s['steps']} | {s['within_budget']} |")
    return lines


def _markdown(report: dict, run: RunConfig) -> str:
    lines = [f"# Federation report: {report['run_dir']}", ""]
    lines += [f"Modality {run.modality}, model {run.model}, {report['rounds']} rounds, "
              f"DP {'on' if report['dp_enabled'] else 'OFF (non-private control)'}.", ""]
    lines += privacy_table_md(report["privacy"])
    lines += refusals_md(report["refusals"])
    lines += _final_metrics_md(report)
    lines += _utility_md(report)
    lines += _rounds_md(report)
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in report["figures"]]
    lines += ["", f"Synthetic beats as WFDB (mV, 360 Hz, `.atr` symbols N/V): `{report['synthetic_wfdb']}/`", ""]
    return "\n".join(lines)


def _final_metrics_md(report: dict) -> list[str]:
    final, ref = report["final_metrics"], report["reference_metrics"]
    names = list(final)
    enc = report["encoder"]
    lines = ["", f"## Final metrics: global generator vs held-out patients {', '.join(report['holdout_patients'])}", "",
             f"Per class, {report['synthetic_per_class']} synthetic beats per class. *Reference* scores "
             "the same number of real beats of the sites' training patients against the held-out patients: what "
             "a generator that reproduced the training patients exactly would get (patients differ, so it is not 0). "
             f"Features: domain encoder `{enc['path']}` ({enc['feature_dim']}-d, trained {enc['epochs']} epochs, "
             f"seed {enc['seed']}, on the real training beats of {', '.join(enc['trained_on'])}); MMD bandwidth "
             f"{_fmt(enc['mmd_bandwidth'])}. DTW: Sakoe-Chiba radius {report['settings']['dtw_radius_samples']} "
             "samples.", "",
             "| metric | " + " | ".join(f"{n} synthetic | {n} reference" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    for key, label in _METRIC_ROWS:
        if all(key in final[n] for n in names):
            cells = " | ".join(f"{_fmt(final[n][key])} | {_fmt(ref.get(n, {}).get(key))}" for n in names)
            lines.append(f"| {label} | {cells} |")
    lines += ["", "What the sample-space rows mean: RMSE/MAE/PSNR/SSIM pair each synthetic beat with its nearest "
              "real beat, so they say how close a synthetic beat is to *some* real beat. They are not "
              "reconstruction quality (a GAN sample has no true partner), and copying the training data would "
              "score best. Read them with the feature-space rows, and with the memorisation check below.", "",
              "Memorisation check (nearest-neighbour RMSE to the training beats, mV): synthetic beats closer to the "
              "training set than fresh held-out beats are a warning sign, either of memorisation or of collapse onto "
              "the most typical training beats (then PRDC recall and coverage are near 0). DP bounds what any beat "
              "can reveal; the membership-inference audits (privacy/audit) test it directly.", "",
              "| class | synthetic -> training | held-out real -> training | synthetic closer |", "|---|---|---|---|"]
    for name, m in report["memorisation"].items():
        closer = m["synthetic_to_train_rmse"] < m["holdout_to_train_rmse"]
        lines.append(f"| {name} | {_fmt(m['synthetic_to_train_rmse'])} | {_fmt(m['holdout_to_train_rmse'])} | "
                     f"{'yes' if closer else 'no'} |")
    return lines


def _scores_row(label: str, u: dict) -> str:
    return (f"| {label} | {_fmt(u['balanced_accuracy'])} ± {_fmt(u.get('balanced_accuracy_std'))} | "
            f"{_fmt(u['auroc'])} | {_fmt(u['macro_f1'])} |")


def _utility_md(report: dict) -> list[str]:
    s, gain = report["settings"], report["augmentation_gain"]
    head = ["| training data | balanced accuracy (mean ± std over seeds) | AUROC (V vs N) | macro F1 |",
            "|---|---|---|---|"]
    lines = ["", f"## Utility on held-out patients {', '.join(report['holdout_patients'])} "
             f"({report['holdout_class_counts']})", "",
             f"The same small CNN ({s['classifier_epochs']} epochs, seeds {s['classifier_seeds']}), trained on "
             "synthetic beats (TSTR) or on all sites' real training beats (TRTR).", ""] + head
    lines.append(_scores_row("synthetic (TSTR)", report["utility"]["tstr"]))
    exported = report["utility"].get("tstr_exported_wfdb")
    if exported is not None:
        lines.append(_scores_row(f"exported WFDB read back ({exported['num_beats']} beats)", exported))
    lines.append(_scores_row("real site data (TRTR)", report["utility"]["trtr"]))
    lines += ["", f"## Augmentation gain at the smallest site ({gain['site']}: {', '.join(gain['site_patients'])}, "
              f"{gain['num_site']} beats)", "",
              f"The site's classifier trained on its own beats alone, and on its own beats plus "
              f"{gain['num_synthetic']} synthetic beats from the federation's generator; both tested on the "
              f"held-out patients {', '.join(gain['test_patients'])}, whom no site trained on.", ""] + head
    lines.append(_scores_row("own data only", gain["own_data"]))
    lines.append(_scores_row("own data + synthetic", gain["own_plus_synthetic"]))
    lines += ["", f"Gain from synthetic data: balanced accuracy {gain['gain_balanced_accuracy']:+.3f}, "
              f"AUROC {gain['gain_auroc']:+.3f}, macro F1 {gain['gain_macro_f1']:+.3f}."]
    return lines


def _rounds_md(report: dict) -> list[str]:
    central = report["rounds_central"]
    if not central:
        return []
    lines = ["", "## Per round", "",
             "The round's global generator scored here on the held-out patients (macro over classes, "
             f"{report['settings']['round_samples']} synthetic beats per class). Sites score nothing on their "
             "own records: that would be an uncharged release.", "",
             "| round | FD | DTW (mV) | coverage |", "|---|---|---|---|"]
    for c in central:
        lines.append(f"| {c['round']} | {_fmt(c.get('fd'), 1)} | {_fmt(c.get('dtw_syn_to_real_mv'))} | "
                     f"{_fmt(c.get('coverage'))} |")
    return lines


if __name__ == "__main__":  # pragma: no cover
    import sys

    logging.basicConfig(level=logging.INFO)
    print(json.dumps(ecg_report(sys.argv[1])["utility"], indent=2))
