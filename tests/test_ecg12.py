"""12-lead ECG (modality ecg12) on the bundled PhysioNet/CinC 2021 records."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medgan_core.config import RunConfig
from medgan_core.data.ecg12 import STANDARD_LEADS, Ecg12Config, load_ecg12_records, read_ecg12_record
from medgan_core.modalities import get_modality
from medgan_core.models.registry import create_gan
from medgan_core.training import dp_gan

ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg12" / "cinc2021"
CONFIG = Ecg12Config()


def _copy(record: str, to: Path) -> Path:
    for ext in (".hea", ".mat"):
        shutil.copy(ROOT / f"{record}{ext}", to / f"{record}{ext}")
        (to / f"{record}{ext}").chmod(0o644)
    return to / record


def test_a_12_lead_record_reads_as_beats_of_its_records_label():
    sinus = read_ecg12_record(ROOT / "HR06004", CONFIG)  # Dx: 426783006 (sinus rhythm only)
    abnormal = read_ecg12_record(ROOT / "E07500", CONFIG)  # Dx: 67741000119109, 426177001
    assert sinus.beats.shape[1:] == (12, 128) and sinus.beats.dtype == np.float32
    assert set(sinus.labels.tolist()) == {0} and set(abnormal.labels.tolist()) == {1}
    assert set(sinus.record_ids.tolist()) == {"HR06004"}
    assert np.abs(sinus.beats).max() <= 1.0
    # A window is centred on its median per lead: the isoelectric level is 0.
    np.testing.assert_allclose(np.median(sinus.beats, axis=2), 0.0, atol=1e-6)


def test_a_lead_subset_keeps_those_leads_in_order():
    full = read_ecg12_record(ROOT / "HR06004", CONFIG)
    subset = read_ecg12_record(ROOT / "HR06004", Ecg12Config(leads=("V1", "II")))
    np.testing.assert_array_equal(subset.beats, full.beats[:, [STANDARD_LEADS.index("V1"), 1]])


def test_detected_beats_have_a_plausible_rr_interval():
    beats = read_ecg12_record(ROOT / "HR06004", CONFIG)
    rr = beats.median_rr_s["HR06004"]
    assert 0.4 <= rr <= 1.5  # 40-150 bpm
    # 10 s of signal: the beats found (minus the few at the edges) fill about 10 s.
    assert 10 / rr - 3 <= len(beats) <= 10 / rr + 1


def test_bad_records_are_skipped_with_a_message_naming_the_file(tmp_path):
    truncated = _copy("E07501", tmp_path)
    data = (tmp_path / "E07501.mat").read_bytes()
    (tmp_path / "E07501.mat").write_bytes(data[: len(data) // 2])
    missing_lead = _copy("E07502", tmp_path)
    header = (tmp_path / "E07502.hea").read_text().splitlines()
    lines = [header[0].replace(" 12 ", " 11 ", 1)] + [h for h in header[1:] if not h.endswith(" V6")]
    (tmp_path / "E07502.hea").write_text("\n".join(lines) + "\n")
    good = _copy("HR06004", tmp_path)

    beats, report = load_ecg12_records([truncated, missing_lead, good], CONFIG)

    assert set(beats.record_ids.tolist()) == {"HR06004"}
    assert report.loaded == [str(good)]
    reasons = {Path(s["path"]).name: s["reason"] for s in report.skipped}
    assert set(reasons) == {"E07501.mat", "E07502.hea"}
    assert "lead(s) V6 missing" in reasons["E07502.hea"]
    assert "E07501" in reasons["E07501.mat"] or "signal" in reasons["E07501.mat"]


def test_dcgan1d_with_12_channels_trains_one_dp_step_with_opacus():
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    real = torch.from_numpy(read_ecg12_record(ROOT / "HR06004", CONFIG).beats)
    labels = torch.zeros(len(real), dtype=torch.long)
    gan = create_gan("dcgan1d", channels=12)
    assert gan.generator(torch.randn(3, gan.latent_dim), torch.tensor([0, 1, 0])).shape == (3, 12, 128)
    before = {k: v.clone() for k, v in gan.discriminator.state_dict().items()}
    optimizer = torch.optim.SGD(gan.discriminator.parameters(), lr=1e-2)
    loader = DataLoader(TensorDataset(real, labels), batch_size=len(real))
    discriminator, optimizer, _ = PrivacyEngine().make_private(
        module=gan.discriminator, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0,
        max_grad_norm=1.0, poisson_sampling=True)
    dp_gan._discriminator_step(gan, discriminator, optimizer, torch.nn.BCEWithLogitsLoss(), real, labels,
                               fake_count=len(real), prior=torch.tensor([0.5, 0.5]),
                               rng=torch.Generator().manual_seed(1))
    first = discriminator._module.features[0]
    # Per-sample gradients of the 12-channel input convolution: one (O, 12, K) per beat.
    assert first.weight.shape == (32, 12, 7)
    after = {k.removeprefix("_module."): v for k, v in discriminator.state_dict().items()}
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_export_reads_back_the_same_12_lead_beats(tmp_path):
    modality = get_modality("ecg12")
    beats = read_ecg12_record(ROOT / "HR06004", CONFIG).beats[:4]
    samples = np.concatenate([beats, beats[::-1]])
    labels = np.array([0] * 4 + [1] * 4)

    written = modality.export(samples, labels, tmp_path / "out")
    back = modality.read_back(written, image_size=0)

    assert [p.name for p in written] == ["synthetic_sinus", "synthetic_abnormal"]
    assert back.samples.shape == (8, 12, 128)
    assert back.labels.tolist() == labels.tolist()
    # Written at 500 Hz, read back and resampled to 180 Hz: the two band-limiting filters
    # blur the sharpest QRS edges a little, nothing else.
    error = np.abs(back.samples.numpy() - samples)[:, :, 20:-20]
    assert np.median(error) < 1e-3 and error.mean() < 5e-3


def test_a_tiny_federation_of_the_three_institutions(tmp_path):
    from simulations.inprocess import run_inprocess_federation, simulated_sites

    run = RunConfig(modality="ecg12", data_root=str(ROOT), site_records="E|JS|HR", holdout_records="0.2",
                    num_server_rounds=1, local_steps=2, batch_size=16, run_dir=str(tmp_path / "run"),
                    min_nodes=3, seed=7)
    sites = simulated_sites(run)
    result = run_inprocess_federation(run, sites=sites)

    assert len(sites) == 3
    assert result.weights["generator.to_signal.weight"].shape[0] == 12
    assert len(result.epsilon) == 3 and all(0 < eps <= run.target_epsilon for eps in result.epsilon.values())
    split = get_modality("ecg12").evaluation_data(run)
    institutions = [{p.rstrip("0123456789") for p in site.patients} for site in split[0]]
    assert institutions == [{"E"}, {"JS"}, {"HR"}]
    held_out = set(split[1].patients)
    assert len(held_out) == 10 and not held_out & {p for site in split[0] for p in site.patients}


@pytest.mark.parametrize("channels", [1, 12])
def test_dtw_metrics_of_a_set_against_itself_is_zero(channels):
    from medgan_core.metrics.dtw import dtw_metrics

    x = torch.from_numpy(read_ecg12_record(ROOT / "HR06004", CONFIG).beats[:5, :channels])
    scores = dtw_metrics(x, x, radius=12)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in scores.values())
