"""Patient-level DP-SGD: one patient with all its records is the unit of privacy.

Sensitivity is checked on the real discriminator step (sampler, fakes, per-patient
clipping, noise, division by m) with the noise at 0; the accountant and the feasibility
verdict against golden numbers from Opacus's RDP accountant."""

import shutil

import numpy as np

import pytest
import torch
from opacus import GradSampleModule

from medgan_core.errors import ConfigError
from medgan_core.models.registry import create_gan
from medgan_core.training import patient_dp
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan
from medgan_core.training.patient_dp import (
    PatientDPSettings,
    clipped_unit_sum,
    group_by_patient,
    sample_patient_records,
)
from privacy.accounting import epsilon_from_history
from privacy.feasibility import MAX_NOISE_TO_SIGNAL, patient_level_feasibility


class _Recorder:
    """Stands in for the discriminator's optimizer: keeps the gradient it is asked to apply."""

    def __init__(self, params):
        self.params = list(params)
        self.grads: list[torch.Tensor] = []

    def step(self):
        self.grads = [p.grad.detach().clone() for p in self.params]


def _settings(**overrides) -> PatientDPSettings:
    values = dict(noise_multiplier=0.0, public_patient_count=None, expected_patients_per_step=4,
                  records_per_patient=4, max_grad_norm=1.0)
    return PatientDPSettings(**{**values, **overrides})


def _step(beats, labels, ids, settings, *, seed=0, spy=None):
    """The summed noisy gradient of one discriminator step (before the division by m)."""
    torch.manual_seed(0)  # the same discriminator and generator in every call
    gan = create_gan("dcgan1d")
    discriminator = GradSampleModule(gan.discriminator, loss_reduction="sum")
    recorder = _Recorder(discriminator.parameters())
    groups = group_by_patient(ids)
    step = patient_dp._PatientStep(
        gan=gan, discriminator=discriminator, optimizer=recorder, dp=settings, prior=torch.tensor([0.5, 0.5]),
        sample_rate=settings.sample_rate(len(groups)),
        rngs=tuple(torch.Generator().manual_seed(seed + i) for i in range(3)))
    step(beats, labels, groups)
    return torch.cat([g.flatten() for g in recorder.grads]) * settings.expected_patients_per_step


def _beats(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.tanh(torch.randn(n, 1, 128, generator=g)), torch.randint(0, 2, (n,), generator=g)


def _site_with_big_patient(big_records=500):
    """Ten patients of 3 beats, and the same site plus one patient of ``big_records``
    near-identical beats (a Holter-like patient whose per-record gradients align)."""
    beats, labels = _beats(30, seed=1)
    ids = [f"p{i // 3}" for i in range(30)]
    one = torch.tanh(torch.randn(1, 1, 128, generator=torch.Generator().manual_seed(2)))
    big = one + 1e-3 * torch.randn(big_records, 1, 128, generator=torch.Generator().manual_seed(3))
    with_big = (torch.cat([beats, big]), torch.cat([labels, torch.ones(big_records, dtype=torch.long)]),
                ids + ["big"] * big_records)
    return (beats, labels, ids), with_big


@pytest.mark.parametrize("k", [8, 500])
def test_adding_a_patient_with_500_records_moves_the_sum_by_at_most_c(k):
    clip = 0.01
    # The public count and m are the same for both neighbours (public), and q = 1: the
    # new patient is sampled, and the rest of the step (other patients, fakes) is equal.
    settings = _settings(public_patient_count=10, expected_patients_per_step=10, records_per_patient=k,
                         max_grad_norm=clip)
    without, with_big = _site_with_big_patient()
    change = (_step(*with_big, settings) - _step(*without, settings)).norm()
    assert clip * 0.99 <= change <= clip * (1 + 1e-4)  # tight: the patient's gradient is clipped to C

    # Record-level clipping of the same rows: each of the k records adds its own C.
    torch.manual_seed(0)
    discriminator = GradSampleModule(create_gan("dcgan1d").discriminator, loss_reduction="sum")
    beats, labels, _ = with_big
    rows = slice(30, 30 + k)
    per_record, _ = clipped_unit_sum(
        discriminator, torch.nn.BCEWithLogitsLoss(reduction="none"), inputs=beats[rows], labels=labels[rows],
        targets=torch.ones(k), units=torch.arange(k), max_grad_norm=clip)
    record_level_change = torch.cat([g.flatten() for g in per_record]).norm()
    assert record_level_change >= 0.99 * k * clip


def test_every_unit_is_clipped_to_c_and_the_noise_has_std_sigma_c():
    beats, labels = _beats(40, seed=4)
    ids = [f"p{i % 8}" for i in range(40)]
    quiet = _step(beats, labels, ids, _settings(max_grad_norm=0.05, expected_patients_per_step=8))
    noisy = _step(beats, labels, ids, _settings(max_grad_norm=0.05, expected_patients_per_step=8,
                                                noise_multiplier=2.0))
    # 8 patient units and 8 fake units, each of norm <= C.
    assert quiet.norm() <= 16 * 0.05 * (1 + 1e-4)
    noise = noisy - quiet
    assert noise.std().item() == pytest.approx(2.0 * 0.05, rel=0.02)  # ~45k coordinates


def test_a_sampled_patient_contributes_at_most_k_records_uniformly():
    groups = group_by_patient(["big"] * 10 + ["small"] * 2)
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(12)
    for _ in range(2000):
        big, small = sample_patient_records(groups, sample_rate=1.0, records_per_patient=3, generator=generator)
        assert len(big) == 3 and len(set(big.tolist())) == 3 and set(big.tolist()) <= set(range(10))
        assert sorted(small.tolist()) == [10, 11]  # fewer than k: all of them
        counts[big] += 1
    # Uniform without replacement: each of the 10 records in 3/10 of the steps (600 of 2000).
    assert ((counts[:10] - 600).abs() < 75).all()  # ~4.1 binomial standard deviations


def test_patients_are_poisson_sampled_at_the_public_rate():
    groups = group_by_patient([f"p{i}" for i in range(200)])
    generator = torch.Generator().manual_seed(0)
    sizes = [len(sample_patient_records(groups, sample_rate=0.1, records_per_patient=1, generator=generator))
             for _ in range(500)]
    mean = sum(sizes) / len(sizes)
    assert mean == pytest.approx(20, abs=0.6)  # std of the mean: sqrt(200 * 0.09 / 500) = 0.19
    assert min(sizes) < 20 < max(sizes)  # a random size, not a fixed batch


def test_training_feeds_at_most_k_records_of_a_patient_per_step(monkeypatch):
    seen = []
    original = patient_dp.clipped_unit_sum

    def spy(discriminator, criterion, *, inputs, labels, targets, units, max_grad_norm):
        seen.append((units[targets == 1], units[targets == 0]))
        return original(discriminator, criterion, inputs=inputs, labels=labels, targets=targets, units=units,
                        max_grad_norm=max_grad_norm)

    monkeypatch.setattr(patient_dp, "clipped_unit_sum", spy)
    _, (beats, labels, ids) = _site_with_big_patient(big_records=200)
    train_local_gan(gan=create_gan("dcgan1d"), beats=beats, labels=labels, patient_ids=ids,
                    config=LocalTrainingConfig(local_steps=6, batch_size=16, seed=0),
                    dp=_settings(noise_multiplier=1.0, public_patient_count=11, expected_patients_per_step=11,
                                 records_per_patient=2))
    assert len(seen) == 6
    for real_units, fake_units in seen:
        assert torch.bincount(real_units).max() <= 2  # q = 1: every patient, at most k records each
        assert len(real_units) == 10 * 2 + 2
        assert torch.equal(torch.bincount(fake_units)[-11:], torch.full((11,), 2))  # m public units of k fakes


def test_accountant_history_counts_patients_not_records():
    beats, labels = _beats(300, seed=5)
    ids = [f"p{i % 40}" for i in range(300)]
    config = LocalTrainingConfig(local_steps=3, batch_size=32, seed=0)
    public = train_local_gan(gan=create_gan("dcgan1d"), beats=beats, labels=labels, patient_ids=ids, config=config,
                             dp=_settings(noise_multiplier=1.3, public_patient_count=50, expected_patients_per_step=8))
    assert public.dp_history == [(1.3, 8 / 50, 3)]  # the public count, not 40 patients nor 300 records
    assert public.sample_rate == 8 / 50
    exact = train_local_gan(gan=create_gan("dcgan1d"), beats=beats, labels=labels, patient_ids=ids, config=config,
                            dp=_settings(noise_multiplier=1.3, expected_patients_per_step=8))
    assert exact.dp_history == [(1.3, 8 / 40, 3)]  # public_patient_count=None: the exact count, no claim


def test_golden_epsilon_of_a_patient_level_schedule():
    # Opacus RDP, delta 1e-5: 1000 steps at sigma 1.0 and q = 0.05 over patients, in one
    # release or two; the number is the accountant's, hard-coded.
    assert epsilon_from_history([(1.0, 0.05, 1000)], delta=1e-5) == pytest.approx(11.9795, abs=1e-4)
    assert epsilon_from_history([(1.0, 0.05, 500)] * 2, delta=1e-5) == pytest.approx(11.9795, abs=1e-4)


def test_three_patients_cannot_train_at_epsilon_10():
    verdict = patient_level_feasibility(patients=3, expected_patients_per_step=64, local_steps=200, rounds=4,
                                        target_epsilon=10.0, delta=1e-5)
    assert verdict.sample_rate == 1.0 and verdict.expected_patients_per_step == 3
    assert verdict.noise_multiplier == pytest.approx(14.9795, abs=1e-4)  # golden: RDP, q = 1, 800 steps
    assert epsilon_from_history([(verdict.noise_multiplier, 1.0, 800)], delta=1e-5) <= 10.0
    assert verdict.noise_to_signal == pytest.approx(14.9795 / 3, abs=1e-4)
    assert not verdict.feasible
    assert "no useful training is possible" in verdict.verdict and "q = 1.0" in verdict.verdict
    assert 250 <= verdict.patients_needed <= 400  # the table's 300-patient row is just above the limit


def test_a_simulated_xray_site_of_950_patients_can_train_at_epsilon_10():
    verdict = patient_level_feasibility(patients=950, expected_patients_per_step=64, local_steps=200, rounds=4,
                                        target_epsilon=10.0, delta=1e-5)
    assert verdict.feasible and verdict.patients_needed is None
    assert verdict.noise_to_signal <= MAX_NOISE_TO_SIGNAL
    assert verdict.noise_to_signal == pytest.approx(verdict.noise_multiplier / 64)
    assert epsilon_from_history([(verdict.noise_multiplier, 64 / 950, 800)], delta=1e-5) <= 10.0
    assert "feasible" in verdict.verdict


def test_without_noise_clipping_or_sampling_it_is_the_plain_gradient(monkeypatch):
    # sigma = 0, C = inf, k >= every patient's records, q = 1: the step's sum must be the
    # autograd gradient of the summed loss over all records and the fakes.
    beats, labels = _beats(15, seed=6)
    ids = ["a"] * 1 + ["b"] * 2 + ["c"] * 3 + ["d"] * 4 + ["e"] * 5
    rows = {}
    original = patient_dp.clipped_unit_sum

    def spy(discriminator, criterion, **batch):
        rows.update(batch)
        return original(discriminator, criterion, **batch)

    monkeypatch.setattr(patient_dp, "clipped_unit_sum", spy)
    settings = _settings(max_grad_norm=float("inf"), expected_patients_per_step=5, records_per_patient=5)
    private = _step(beats, labels, ids, settings)
    assert (rows["targets"] == 1).sum() == 15  # every record of every patient

    torch.manual_seed(0)
    plain = create_gan("dcgan1d").discriminator
    loss = torch.nn.BCEWithLogitsLoss(reduction="sum")(plain(rows["inputs"], rows["labels"]), rows["targets"])
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(plain.parameters()))])
    assert expected.abs().max() > 0
    torch.testing.assert_close(private, expected, rtol=1e-4, atol=1e-6)


def test_ghost_clipping_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="ghost.*per-record gradient norms"):
        _settings(grad_sample_mode="ghost")


@pytest.mark.parametrize("overrides, match", [
    (dict(noise_multiplier=1.0, max_grad_norm=float("inf")), "infinite noise"),
    (dict(public_patient_count=3, expected_patients_per_step=4), "public_patient_count=3"),
    (dict(records_per_patient=0), "records_per_patient=0"),
    (dict(noise_multiplier=-1.0), "noise_multiplier=-1.0"),
])
def test_invalid_settings_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        _settings(**overrides)


def test_patient_ids_need_patient_level_settings_and_the_reverse():
    beats, labels = _beats(64, seed=7)
    ids = [f"p{i % 8}" for i in range(64)]
    config = LocalTrainingConfig(local_steps=1, batch_size=16)
    with pytest.raises(ConfigError, match="patient_ids are used only by patient-level DP"):
        train_local_gan(gan=create_gan("dcgan1d"), beats=beats, labels=labels, patient_ids=ids, config=config,
                        dp=DPSettings(noise_multiplier=1.0, grad_sample_mode="hooks"))
    with pytest.raises(ConfigError, match="needs patient_ids"):
        train_local_gan(gan=create_gan("dcgan1d"), beats=beats, labels=labels, config=config, dp=_settings())
    with pytest.raises(ConfigError, match="public_dataset_size is record-level"):
        train_local_gan(gan=create_gan("dcgan1d"), beats=beats, labels=labels, patient_ids=ids, dp=_settings(),
                        config=LocalTrainingConfig(local_steps=1, batch_size=16, public_dataset_size=64))
    with pytest.raises(ConfigError, match="site has 8 patients, fewer than expected_patients_per_step=9"):
        train_local_gan(gan=create_gan("dcgan1d"), beats=beats, labels=labels, patient_ids=ids, config=config,
                        dp=_settings(expected_patients_per_step=9))


@pytest.mark.parametrize("model", ["dcgan2d", "wgan2d"])
def test_two_steps_on_real_xrays_with_patients_from_file_names(tmp_path, xray_data_dir, monkeypatch, model):
    from medgan_core.data.xray import load_xray_dataset

    # Two patients with many images (person23: 30, person441: 18) and six with one.
    for pattern in ("person23_*", "person441_*"):
        for path in (xray_data_dir / "PNEUMONIA").glob(pattern):
            (tmp_path / "PNEUMONIA").mkdir(exist_ok=True)
            shutil.copy(path, tmp_path / "PNEUMONIA" / path.name)
    (tmp_path / "NORMAL").mkdir()
    for path in sorted((xray_data_dir / "NORMAL").glob("IM-0*-0001.png"))[:6]:
        shutil.copy(path, tmp_path / "NORMAL" / path.name)
    images, labels, patient_ids, _ = load_xray_dataset(tmp_path, size=32)
    assert len(images) == 54 and len(set(patient_ids)) == 8
    rows_per_patient = []
    original = patient_dp.clipped_unit_sum

    def spy(discriminator, criterion, **batch):
        rows_per_patient.append(torch.bincount(batch["units"][batch["targets"] == 1]))
        return original(discriminator, criterion, **batch)

    monkeypatch.setattr(patient_dp, "clipped_unit_sum", spy)
    torch.manual_seed(0)
    gan = create_gan(model, image_size=32)
    before = torch.cat([p.detach().flatten() for p in gan.discriminator.parameters()])
    beats = torch.as_tensor(images).unsqueeze(1) * 2 - 1  # (N, 1, 32, 32) in [-1, 1]
    result = train_local_gan(gan=gan, beats=beats, labels=torch.as_tensor(labels), patient_ids=patient_ids,
                             config=LocalTrainingConfig(local_steps=2, batch_size=8),
                             dp=_settings(noise_multiplier=1.0, expected_patients_per_step=4, records_per_patient=2))
    after = torch.cat([p.detach().flatten() for p in gan.discriminator.parameters()])
    assert result.dp_history == [(1.0, 4 / 8, 2)]
    assert all(len(r) == 0 or r.max() <= 2 for r in rows_per_patient) and len(rows_per_patient) == 2
    assert torch.isfinite(after).all() and not torch.equal(before, after)
    assert not any(hasattr(p, "grad_sample") for p in gan.discriminator.parameters())  # hooks removed


def test_patient_summary_moves_by_at_most_sqrt2_for_a_patient_with_any_records():
    from privacy.patient_release import PATIENT_SUMMARY_SENSITIVITY, ledger_entry, patient_summary

    labels = [0, 0, 1, 0, 1, 1, 0]
    ids = ["a", "a", "a", "b", "b", "c", "d"]
    base = patient_summary(labels=labels, patient_ids=ids, num_classes=2, records_per_patient=4)
    # By hand (k = 4): a: 3 records, w = 3/4, f = (2/3, 1/3); b: w = 2/4, f = (1/2, 1/2);
    # c: w = 1/4, f = (0, 1); d: w = 1/4, f = (1, 0); four patients.
    assert base == pytest.approx([0.5 + 0.25 + 0.25, 0.25 + 0.25 + 0.25, 4.0])
    for extra_labels in ([1] * 500, [0] * 250 + [1] * 250, [0] * 2):
        grown = patient_summary(labels=labels + extra_labels, patient_ids=ids + ["new"] * len(extra_labels),
                                num_classes=2, records_per_patient=4)
        assert np.linalg.norm(grown - base) <= PATIENT_SUMMARY_SENSITIVITY + 1e-12
    # Tight: >= k records of one class move the sum by exactly sqrt(2).
    one_class = patient_summary(labels=labels + [1] * 500, patient_ids=ids + ["new"] * 500, num_classes=2,
                                records_per_patient=4)
    assert np.linalg.norm(one_class - base) == pytest.approx(np.sqrt(2))
    assert ledger_entry(20.0) == pytest.approx((20.0 / np.sqrt(2), 1.0, 1))


def test_patient_summary_gives_the_class_mix_of_the_rows_a_step_draws():
    from privacy.patient_release import class_prior, patient_summary, public_patient_count

    labels = [1] * 100 + [0] * 1 + [0] * 2
    ids = ["holter"] * 100 + ["x"] + ["y"] * 2
    summary = patient_summary(labels=labels, patient_ids=ids, num_classes=2, records_per_patient=2)
    groups = group_by_patient(ids)
    drawn = torch.cat(sample_patient_records(groups, sample_rate=1.0, records_per_patient=2,
                                             generator=torch.Generator().manual_seed(0)))
    mix = torch.bincount(torch.tensor(labels)[drawn], minlength=2).double() / len(drawn)
    assert class_prior(summary) == pytest.approx(mix.numpy(), abs=1e-3)  # 2 of 5 rows are class 1, not 100 of 103
    assert public_patient_count(summary) == 3

