"""``report.md`` from ``report.json``: the same sections for every modality.

Row labels and units come from :mod:`medgan_core.metrics.names`; what differs between
modalities (the sample unit, the record word, the export format) comes from the modality.
"""

from __future__ import annotations

import math

from medgan_core.metrics.names import (
    AUROC,
    BALANCED_ACCURACY,
    BALANCED_ACCURACY_STD,
    COVERAGE,
    FD,
    HOLDOUT_TO_TRAIN_RMSE,
    MACRO_F1,
    SENSITIVITY,
    SYNTHETIC_TO_TRAIN_RMSE,
    gain_key,
    metric,
)
from medgan_core.metrics.registry import set_metric_keys
from medgan_core.modalities import Modality, get_modality

__all__ = ["privacy_table_md", "refusals_md", "report_markdown"]


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _patients(patients: list[str]) -> str:
    return ", ".join(patients) if len(patients) <= 8 else f"{len(patients)} patients"


def refusals_md(summary: dict) -> list[str]:
    """Markdown from ``refusal_summary``: every round in which a site refused, with the code."""
    lines = ["", "## Refusals", ""]
    if not summary["total"]:
        return lines + ["No site refused a request.", ""]
    lines += ["| round | sites that trained | sites that refused | codes |", "|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['trained']} | {r['refused']} | {', '.join(r['codes'])} |" for r in summary["rounds"]]
    return lines + [""]


def privacy_table_md(privacy: dict[str, dict], record_word: str = "record") -> list[str]:
    """Markdown rows: each site's spend from its ledger (``site_privacy_summary``); ``record_word``
    names one record of the run's modality ("beat", "image")."""
    units = sorted({s.get("unit", "record") for s in privacy.values()}) or ["record"]
    meaning = {"record": f"per {record_word} (one record), not per patient",
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


def report_markdown(report: dict, *, model: str) -> str:
    """The whole ``report.md`` of a ``report.json`` dict."""
    modality = get_modality(report["modality"])
    lines = [f"# Federation report: {report['run_dir']}", ""]
    lines += [f"Modality {modality.name}, model {model}, {report['rounds']} rounds, "
              f"DP {'on' if report['dp_enabled'] else 'OFF (non-private control)'}.", ""]
    public = report.get("public_pretraining")
    if public:
        counts = ", ".join(f"{n:,} {c}" for c, n in public["class-counts"].items())
        lines += [f"Round 1 started from a public pretraining (`{public['pretrained']}`, {public['steps']} steps, "
                  f"no privacy: no site's data) on {counts} {modality.record_word}s (public-records `{public['public-records']}`) "
                  f"(data sha256 {public['data-sha256'][:12]}...). Licence: {public['licence']}. The sites' epsilons "
                  "below are what their DP fine-tuning spent.", ""]
    lines += privacy_table_md(report["privacy"], modality.record_word)
    lines += refusals_md(report["refusals"])
    lines += _final_metrics_md(report, modality)
    lines += _memorisation_md(report, modality)
    lines += _utility_md(report, modality)
    lines += _rounds_md(report, modality)
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in report["figures"]]
    export = report["export"]
    lines += ["", f"Synthetic {modality.record_word}s as {export['format']} ({export['files']} files): "
              f"`{export['dir']}/`", ""]
    return "\n".join(lines)


def _final_metrics_md(report: dict, modality: Modality) -> list[str]:
    final, ref = report["final_metrics"], report["reference_metrics"]
    names = list(final)
    enc, word = report["encoder"], modality.record_word
    settings = report["settings"]
    lines = ["", f"## Final metrics: global generator vs held-out patients {_patients(report['holdout_patients'])}",
             "", f"Per class, {report['synthetic_per_class']} synthetic {word}s per class. *Reference* scores "
             f"the same number of real {word}s of the sites' training patients against the held-out patients: what "
             "a generator that reproduced the training patients exactly would get (patients differ, so it is not 0). "
             f"Features: domain encoder `{enc['path']}` ({enc['feature_dim']}-d, {enc['backbone']} backbone, trained "
             f"{enc['epochs']} epochs, seed {enc['seed']}, on the real training {word}s of "
             f"{_patients(enc['trained_on'])}); MMD bandwidth {_fmt(enc['mmd_bandwidth'])}. Sample-space metrics in "
             f"{modality.sample_unit}.", ""]
    if report.get("inception_fid") is not None:
        lines += [f"Inception-v3 FID (user-supplied TorchScript model): {report['inception_fid']}.", ""]
    lines += ["| metric | " + " | ".join(f"{n} synthetic | {n} reference" for n in names) + " |",
              "|---|" + "---|---|" * len(names)]
    for key in set_metric_keys():
        if names and all(key in final[n] for n in names):
            cells = " | ".join(f"{_fmt(final[n][key])} | {_fmt(ref.get(n, {}).get(key))}" for n in names)
            lines.append(f"| {metric(key).label_in(modality.sample_unit)} | {cells} |")
    if "dtw_radius_samples" in settings and any("dtw_syn_to_real" in final[n] for n in names):
        lines += ["", f"DTW: Sakoe-Chiba radius {settings['dtw_radius_samples']} samples."]
    lines += ["", f"What the sample-space rows mean: RMSE/MAE/PSNR/SSIM pair each synthetic {word} with its nearest "
              f"real {word}, so they say how close a synthetic {word} is to *some* real {word}. They are not "
              "reconstruction quality (a GAN sample has no true partner), and copying the training data would "
              "score best. Read them with the feature-space rows, and with the memorisation check below."]
    return lines


def _memorisation_md(report: dict, modality: Modality) -> list[str]:
    word = modality.record_word
    lines = ["", f"## Memorisation check (nearest-neighbour RMSE to the training {word}s, {modality.sample_unit})", "",
             f"Synthetic {word}s closer to the training set than fresh held-out {word}s are a warning sign, either "
             f"of memorisation or of collapse onto the most typical training {word}s (then PRDC recall and coverage "
             "are near 0). DP bounds what any record can reveal; the membership-inference audits (privacy/audit) "
             "test it directly.", "",
             "| class | synthetic -> training | held-out real -> training | synthetic closer |", "|---|---|---|---|"]
    for name, m in report["memorisation"].items():
        closer = m[SYNTHETIC_TO_TRAIN_RMSE] < m[HOLDOUT_TO_TRAIN_RMSE]
        lines.append(f"| {name} | {_fmt(m[SYNTHETIC_TO_TRAIN_RMSE])} | {_fmt(m[HOLDOUT_TO_TRAIN_RMSE])} | "
                     f"{'yes' if closer else 'no'} |")
    return lines


def _scores_row(label: str, u: dict) -> str:
    return (f"| {label} | {_fmt(u[BALANCED_ACCURACY])} ± {_fmt(u.get(BALANCED_ACCURACY_STD))} | "
            f"{_fmt(u[AUROC])} | {_fmt(u.get(SENSITIVITY))} | {_fmt(u[MACRO_F1])} |")


def _utility_md(report: dict, modality: Modality) -> list[str]:
    s, gain, word = report["settings"], report["augmentation_gain"], modality.record_word
    classes = modality.class_names
    head = [f"| training data | balanced accuracy (mean ± std over seeds) | AUROC ({classes[-1]} vs "
            f"{', '.join(classes[:-1])}) | sensitivity (recall of {classes[-1]}) | macro F1 |", "|---|---|---|---|---|"]
    lines = ["", f"## Utility on held-out patients {_patients(report['holdout_patients'])} "
             f"({report['holdout_class_counts']})", "",
             f"The same small CNN ({s['classifier_epochs']} epochs, seeds {s['classifier_seeds']}), trained on "
             f"synthetic {word}s (TSTR), on the exported files read back, or on all sites' real training {word}s "
             f"(TRTR) {report['train_class_counts']}.", ""] + head
    lines.append(_scores_row("synthetic (TSTR)", report["utility"]["tstr"]))
    exported = report["utility"]["tstr_exported"]
    lines.append(_scores_row(f"exported {report['export']['format'].split(' ')[0]} read back "
                             f"({exported['num_samples']} {word}s)", exported))
    lines.append(_scores_row("real site data (TRTR)", report["utility"]["trtr"]))
    lines += _public_row(report["utility"].get("public"), word)
    lines += _per_patient_md(report["utility"]["tstr"], report["utility"]["trtr"], modality, explain=True)
    lines += _independent_utility_md(report, modality, head)
    lines += ["", f"## Augmentation gain at the smallest site ({gain['site']}: {_patients(gain['site_patients'])}, "
              f"{gain['num_site']} {word}s)", "",
              f"The site's classifier trained on its own {word}s alone, and on its own {word}s plus "
              f"{gain['num_synthetic']} synthetic {word}s from the federation's generator; both tested on the "
              f"held-out patients {_patients(gain['test_patients'])}, whom no site trained on.", ""] + head
    lines.append(_scores_row("own data only", gain["own_data"]))
    lines.append(_scores_row("own data + synthetic", gain["own_plus_synthetic"]))
    lines += ["", f"Gain from synthetic data: balanced accuracy {gain[gain_key(BALANCED_ACCURACY)]:+.3f}, "
              f"AUROC {gain[gain_key(AUROC)]:+.3f}, macro F1 {gain[gain_key(MACRO_F1)]:+.3f}."]
    return lines


def _independent_utility_md(report: dict, modality: Modality, head: list[str]) -> list[str]:
    gbt = report.get("utility_gbt")
    if gbt is None:  # a report written before the independent classifier existed
        return []
    word, classes, config = modality.record_word, modality.class_names, gbt["config"]
    last, rest = classes[-1], ", ".join(classes[:-1])
    lines = ["", f"### An independent classifier: {gbt['classifier']}", "",
             f"scikit-learn `HistGradientBoostingClassifier` ({config['max_iter']} iterations, "
             f"{config['max_features']:g} of the features per split, inverse-frequency class weights, seeds "
             f"{report['settings']['classifier_seeds']}) on each {word} flattened and z-normalised on its own "
             f"(images first averaged down to at most {config['max_side']}x{config['max_side']}), trained on the same "
             "sets and tested on the same held-out patients as the CNN above. Read AUROC with sensitivity: a high "
             f"AUROC with a low sensitivity means the trees rank {last} above {rest} but, at the default threshold, "
             f"call most real {last} {word}s {rest}.", ""] + head
    lines.append(_scores_row("synthetic (TSTR)", gbt["tstr"]))
    exported = gbt["tstr_exported"]
    lines.append(_scores_row(f"exported {report['export']['format'].split(' ')[0]} read back "
                             f"({exported['num_samples']} {word}s)", exported))
    lines.append(_scores_row("real site data (TRTR)", gbt["trtr"]))
    lines += _public_row(gbt.get("public"), word, explain=False)
    lines += _per_patient_md(gbt["tstr"], gbt["trtr"], modality, explain=False)
    return lines


def _public_row(public: dict | None, word: str, *, explain: bool = True) -> list[str]:
    """The row of a classifier trained on the public pretraining's real records alone: the
    baseline the synthetic data has to beat to be worth the sites' privacy."""
    if public is None:
        return []
    if "unavailable" in public:
        return ["", f"Public data alone: not scored ({public['unavailable']})."] if explain else []
    lines = [_scores_row(f"public data alone ({public['num_samples']} real {word}s of the pretraining, "
                         f"{public['class_counts']}; no site's)", public)]
    if explain:
        lines += ["", "Public data alone is the baseline: the synthetic data is worth the sites' privacy where "
                  "TSTR beats it. The public pretraining is where the generator started, so a TSTR at or below "
                  "this row says the sites' DP fine-tuning added nothing a classifier could not get from the "
                  "public records directly."]
    return lines


def _per_patient_md(tstr: dict, trtr: dict, modality: Modality, *, explain: bool) -> list[str]:
    """The classifier's TSTR and TRTR patient by patient (only for a hold-out of few patients)."""
    if "per_patient" not in tstr or "per_patient" not in trtr:
        return []
    word, classes = modality.record_word, modality.class_names
    called = [f"{c} called {c}" for c in classes]
    intro = (f"Per held-out patient: the patient's {word}s of each class, the share of each class called that "
             "class at the default threshold, and AUROC (trained on synthetic, then on real site data). A patient "
             f"whom the classifier trained on real site data also misses has {word}s unlike every site's: no "
             "generator trained on the sites can be expected to teach what the sites' own data does not."
             if explain else "Per held-out patient, as for the CNN:")
    lines = ["", intro, "",
             f"| patient | {' / '.join(classes)} {word}s | " + " | ".join(f"synthetic: {c}" for c in called)
             + " | synthetic: AUROC | " + " | ".join(f"real site data: {c}" for c in called) + " | real site data: AUROC |",
             "|---|---|" + "---|" * (2 * len(classes) + 2)]
    for patient, synthetic in tstr["per_patient"].items():
        real = trtr["per_patient"][patient]
        lines.append(f"| {patient} | {' / '.join(str(n) for n in synthetic['num_per_class'])} | "
                     + " | ".join(_fmt(r) for r in synthetic["recall_per_class"]) + f" | {_fmt(synthetic[AUROC])} | "
                     + " | ".join(_fmt(r) for r in real["recall_per_class"]) + f" | {_fmt(real[AUROC])} |")
    return lines


def _rounds_md(report: dict, modality: Modality) -> list[str]:
    central = report["rounds_central"]
    if not central:
        return []
    keys = (FD, modality.round_metric, COVERAGE)
    labels = [metric(k).label_in(modality.sample_unit).split(",")[0].split(" (lower")[0] for k in keys]
    lines = ["", "## Per round", "",
             "The round's global generator scored here on the held-out patients (macro over classes, "
             f"{report['settings']['round_samples']} synthetic {modality.record_word}s per class). Sites score "
             "nothing on their own records: that would be an uncharged release.", "",
             "| round | " + " | ".join(labels) + " |", "|---|---|---|---|"]
    for c in central:
        lines.append(f"| {c['round']} | {_fmt(c.get(FD), 1)} | {_fmt(c.get(keys[1]))} | {_fmt(c.get(COVERAGE))} |")
    return lines
