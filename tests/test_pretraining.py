"""Public pretraining (medgan_core.pretraining, `medgan pretrain`): trained only on public data
kept apart from every site and the hold-out, loaded as the round-1 model, its provenance
recorded, and a run refused where its sites or hold-out hold data the pretraining saw."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.modalities import get_modality
from medgan_core.modalities.xray import split_xray_patients
from medgan_core.models import build_gan, initial_gan
from medgan_core.models.state import gan_state, load_gan_state
from medgan_core.pretraining import (
    PROVENANCE_FILE,
    WEIGHTS_FILE,
    PretrainingConfig,
    balanced_indices,
    check_public_split,
    dataset_licence,
    load_pretrained,
    pretrain,
    save_pretrained,
)
from simulations.federation import resolve_run_config

PUBLIC = "cpsc2021/data_8_2 cpsc2021/data_8_3"


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    run = resolve_run_config({"public-records": PUBLIC, "batch-size": 16})
    result = pretrain(run, PretrainingConfig(steps=3, seed=5))
    out = tmp_path_factory.mktemp("pretrained")
    save_pretrained(out, result.gan, result.provenance)
    return out, result


def test_balanced_indices_give_every_class_the_largest_class_size():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 7)
    index = balanced_indices(labels, seed=0)
    assert np.bincount(labels[index]).tolist() == [50, 50, 50]
    assert sorted(index[labels[index] == 0].tolist()) == list(range(50))  # the largest class: each once
    assert np.array_equal(index, balanced_indices(labels, seed=0))


def test_pretraining_reads_only_the_public_records_and_records_its_provenance(pretrained_dir):
    out, result = pretrained_dir
    provenance = json.loads((out / PROVENANCE_FILE).read_text())
    assert provenance["public-records"] == PUBLIC
    assert provenance["split"] == {"data-root": "data/ecg", "records": sorted(PUBLIC.split())}
    assert "CC BY 4.0" in provenance["licence"] and "CPSC 2021" in provenance["licence"]
    assert provenance["class-counts"] == {"N": 567, "V": 10}  # data_8_2 + data_8_3 as the reader reads them
    assert provenance["training"]["dp"] is False and provenance["training"]["steps"] == 3
    assert {p.split("/")[-1] for p in provenance["patients"]} <= {"data_8_2", "data_8_3"}
    assert len(provenance["data-sha256"]) == 64


def test_the_round1_model_is_the_pretrained_one(pretrained_dir):
    out, result = pretrained_dir
    run = resolve_run_config({"public-records": PUBLIC, "batch-size": 16, "pretrained": str(out)})
    loaded = gan_state(initial_gan(run))
    saved = gan_state(result.gan)
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    random_start = gan_state(initial_gan(replace(run, pretrained="")))
    assert not all(torch.equal(random_start[k], saved[k]) for k in saved)


def test_pretraining_is_reproducible_from_its_public_seed():
    run = resolve_run_config({"public-records": "cpsc2021/data_8_2", "batch-size": 16})
    first = gan_state(pretrain(run, PretrainingConfig(steps=2, seed=3)).gan)
    second = gan_state(pretrain(run, PretrainingConfig(steps=2, seed=3)).gan)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_pretraining_for_another_model_is_refused_with_the_fix(pretrained_dir):
    out, _ = pretrained_dir
    with pytest.raises(ConfigError, match=r"weights.pt was pretrained for .*dcgan1d_smooth.*pretrain again"):
        initial_gan(RunConfig(model="dcgan1d", pretrained=str(out)))
    with pytest.raises(ConfigError, match=r"latent-dim"):
        initial_gan(RunConfig(latent_dim=16, pretrained=str(out)))


def test_a_simulation_with_another_models_pretraining_is_refused_before_flower_starts():
    with pytest.raises(ConfigError, match=r"was pretrained for .*dcgan2d.*pretrain again"):
        resolve_run_config({"pretrained": "pretrained/xray-kermany-public"})


def test_a_missing_or_truncated_pretraining_names_the_file_and_the_fix(tmp_path, pretrained_dir):
    with pytest.raises(ConfigError, match=r"weights.pt is missing; make it with `medgan pretrain"):
        initial_gan(RunConfig(pretrained=str(tmp_path / "nowhere")))
    out, _ = pretrained_dir
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / WEIGHTS_FILE).write_bytes((out / WEIGHTS_FILE).read_bytes()[:100])
    (broken / PROVENANCE_FILE).write_text((out / PROVENANCE_FILE).read_text())
    with pytest.raises(ConfigError, match=r"unreadable pretrained weights"):
        initial_gan(RunConfig(pretrained=str(broken)))


def test_save_refuses_to_overwrite_unless_told(pretrained_dir):
    out, result = pretrained_dir
    with pytest.raises(ConfigError, match="--overwrite"):
        save_pretrained(out, result.gan, result.provenance)
    save_pretrained(out, result.gan, result.provenance, overwrite=True)


def test_ecg_public_records_must_be_no_sites_or_holdouts():
    run = RunConfig(public_records="cpsc2021/data_8_2 mitdb/114")
    with pytest.raises(ConfigError, match=r"names \['mitdb/114'\], which a site or the hold-out holds"):
        get_modality("ecg").public_data(run)
    with pytest.raises(ConfigError, match="public-records is empty"):
        get_modality("ecg").public_data(RunConfig())


def test_a_run_whose_holdout_the_pretraining_saw_is_refused(pretrained_dir):
    out, result = pretrained_dir
    run = RunConfig(data_root=str(resolve_run_config({}).data_root), pretrained=str(out),
                    holdout_records="cpsc2021/data_8_2 mitdb/116")
    with pytest.raises(ConfigError, match=r"was trained on \['cpsc2021/data_8_2'\]"):
        check_public_split(run, result.provenance)


def test_pretraining_without_public_records_says_so_before_anything_else():
    with pytest.raises(ConfigError, match="public-records is empty"):
        pretrain(RunConfig(), PretrainingConfig(steps=1))


def test_an_unknown_public_dataset_needs_its_licence_stated():
    run = RunConfig(public_records="hospital-export/rec1")
    with pytest.raises(ConfigError, match="--licence"):
        dataset_licence(run)
    assert dataset_licence(run, "Mine, CC0") == "Mine, CC0"


def test_xray_public_share_is_apart_from_every_site_and_the_holdout():
    patients = [f"p{i}" for i in range(400) for _ in range(1 + i % 3)]
    labels = np.array([i % 2 for i in range(len(patients))])
    weights = (1.0, 1.0, 1.0, 1.0, 1.0)
    for alpha in (None, 0.5):
        groups = split_xray_patients(patients, weights=weights, seed=7, labels=labels, alpha=alpha, num_sites=3,
                                     min_patients=5)
        assert len(groups) == 5
        owners = [{patients[i] for i in group} for group in groups]
        public, holdout = owners[4], owners[3]
        assert public and holdout and not public & holdout
        assert all(not public & site and not holdout & site for site in owners[:3])
        assert set().union(*owners) == set(patients)
    # The hold-out and the public share do not move with the sites' Dirichlet draw.
    plain = split_xray_patients(patients, weights=weights, seed=7, num_sites=3)
    skewed = split_xray_patients(patients, weights=weights, seed=7, labels=labels, alpha=0.5, num_sites=3,
                                 min_patients=5)
    assert all(np.array_equal(a, b) for a, b in zip(plain[3:], skewed[3:]))


def test_an_xray_run_must_split_as_its_pretraining_did():
    provenance = {"split": {"data-root": "data/xray/kermany", "shares": [1.0, 1.0, 1.0, 1.0, 1.0], "seed": 42}}
    bundled = resolve_run_config({"modality": "xray", "model": "dcgan2d", "data-root": "data/xray/kermany",
                                  "site-records": "1|1|1",
                                  "holdout-records": "1", "public-records": "1"})
    check_public_split(bundled, provenance)  # the same split: fine
    with pytest.raises(ConfigError, match="would hold patients the pretraining saw"):
        check_public_split(replace(bundled, public_records=""), provenance)
    with pytest.raises(ConfigError, match="would hold patients the pretraining saw"):
        check_public_split(replace(bundled, seed=1), provenance)


def test_pretrain_command_writes_weights_provenance_and_a_figure(tmp_path, capsys):
    from medgan_cli.main import main

    out = tmp_path / "pre"
    assert main(["pretrain", "--out", str(out), "--steps", "2", "--run-config",
                 f"public-records='{PUBLIC}' batch-size=16"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["class-counts"] == {"N": 567, "V": 10}
    assert (out / WEIGHTS_FILE).is_file() and (out / "samples.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        main(["pretrain", "--out", str(out), "--steps", "2", "--run-config", f"public-records='{PUBLIC}'"])
    state, provenance = load_pretrained(RunConfig(pretrained=str(out)))
    load_gan_state(build_gan(RunConfig()), state)  # the saved state is this model's
    assert provenance["training"]["steps"] == 2 and state
    # --redraw: the figure again from the saved weights, nothing trained or rewritten.
    weights = (out / WEIGHTS_FILE).read_bytes()
    (out / "samples.png").unlink()
    capsys.readouterr()
    assert main(["pretrain", "--redraw", "--out", str(out), "--run-config", f"public-records='{PUBLIC}' batch-size=16"]) == 0
    assert (out / "samples.png").stat().st_size > 10_000 and (out / WEIGHTS_FILE).read_bytes() == weights
    with pytest.raises(SystemExit, match="reads other data than this pretraining was trained on"):
        main(["pretrain", "--redraw", "--out", str(out), "--run-config", "public-records='cpsc2021/data_8_2'"])



def test_the_shipped_ecg_pretraining_loads_into_the_main_job_and_holds_no_site_record():
    # scripts/run_federation.sh starts from it; resolve_run_config checks its public split.
    run = resolve_run_config({"pretrained": "pretrained/ecg-cpsc2021"})
    state, provenance = load_pretrained(run)
    assert provenance["class-counts"] == {"N": 5210, "V": 13} and provenance["training"]["dp"] is False
    assert all(r.startswith("cpsc2021/") for r in provenance["split"]["records"])
    assert "CC BY 4.0" in provenance["licence"]
    loaded = gan_state(initial_gan(run))
    assert all(torch.equal(loaded[k], torch.as_tensor(state[k])) for k in state)


@pytest.mark.parametrize(("model", "directory"), [("dcgan2d", "xray-kermany-public"),
                                                 ("dcgan2d_smooth", "xray-kermany-public-smooth")])
def test_the_shipped_xray_pretrainings_need_the_split_that_keeps_their_patients_out(model, directory):
    xray = {"modality": "xray", "model": model, "data-root": "data/xray/kermany", "image-size": 64,
            "site-records": "1|1|1", "holdout-records": "1", "pretrained": f"pretrained/{directory}"}
    run = resolve_run_config({**xray, "public-records": "1"})
    state, provenance = load_pretrained(run)
    assert provenance["model"] == model and provenance["training"]["dp"] is False
    assert provenance["split"] == {"data-root": "data/xray/kermany", "shares": [1.0] * 5, "seed": 42}
    assert sum(provenance["class-counts"].values()) == provenance["samples"] > 1000
    with pytest.raises(ConfigError, match="would hold patients the pretraining saw"):
        resolve_run_config(xray)  # no public share: its patients would be the sites' and the hold-out's
