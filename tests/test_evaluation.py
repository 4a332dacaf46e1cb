"""medgan_core.evaluation: site patient splits, metric wrappers against hand-computed or
brute-force references, augmentation on disjoint patients, and the sites' evaluate scalars."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from medgan_core.evaluation import (
    SITE_SCALAR_KEYS,
    LabelledSet,
    augmentation_gain,
    classifier_scores,
    dtw_metrics,
    feature_metrics,
    inception_fid,
    nearest_real_fidelity,
    site_scalars,
    split_site_patients,
)
from medgan_core.metrics.encoder import train_encoder
from medgan_core.models.registry import GanPair


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- tiny builders ------------------------------------------------------------------

def _beats(n: int, label: int, *, seed: int, length: int = 64) -> torch.Tensor:
    """Class 0: a narrow bump; class 1: a wide, inverted bump; plus noise. (n, 1, L)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(-1, 1, length)
    width, sign = (0.05, 1.0) if label == 0 else (0.3, -1.0)
    shift = 0.1 * torch.randn(n, 1, generator=g)
    clean = sign * 0.8 * torch.exp(-((t - shift) ** 2) / (2 * width**2))
    return (clean + 0.03 * torch.randn(n, length, generator=g)).unsqueeze(1)


def _set(n0: int, n1: int, *, seed: int, patient: str = "p") -> LabelledSet:
    x = torch.cat([_beats(n0, 0, seed=seed), _beats(n1, 1, seed=seed + 1)])
    y = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    return LabelledSet(x, y, (patient,) * (n0 + n1))


class _Copier(nn.Module):
    """A 'generator' that returns real beats of the requested class (a perfect generator)."""

    def __init__(self, real: LabelledSet, *, swap: bool = False) -> None:
        super().__init__()
        self.by_class = [real.samples[real.labels == c] for c in range(2)]
        if swap:  # beats of the other class: realistic beats with the wrong label
            self.by_class.reverse()

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        index = (z[:, 0].abs() * 1e6).long()
        return torch.stack([self.by_class[int(c)][int(i) % len(self.by_class[int(c)])]
                            for c, i in zip(labels, index)])


class _Noise(nn.Module):
    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(z[:, :1, None].expand(-1, 1, 64) * torch.linspace(-3, 3, 64))


def _pair(generator: nn.Module) -> GanPair:
    return GanPair(generator=generator, discriminator=nn.Identity(), latent_dim=4, num_classes=2)


def _brute_dtw(x: np.ndarray, y: np.ndarray, radius: int) -> float:
    n, m = len(x), len(y)
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(max(1, i - radius), min(m, i + radius) + 1):
            cost[i, j] = (x[i - 1] - y[j - 1]) ** 2 + min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
    return math.sqrt(cost[n, m])


# ---- site patient split ----------------------------------------------------------------

def test_small_site_evaluates_on_its_training_patients_and_says_so():
    for patients in (["mitdb/106"], ["mitdb/106", "mitdb/100"], ["mitdb/108", "mitdb/121", "svdb/800"]):
        split = split_site_patients(patients, min_patients=4)
        assert split.held_out is False
        assert split.train == split.evaluate == tuple(patients)


def test_large_site_holds_out_whole_patients_stably():
    patients = [f"db/{i}" for i in range(10)]
    split = split_site_patients(patients, min_patients=4)
    assert split.held_out is True
    assert set(split.train).isdisjoint(split.evaluate)
    assert set(split.train) | set(split.evaluate) == set(patients)
    assert len(split.evaluate) == 1  # max(1, round(10% of 10))
    assert len(split_site_patients([f"db/{i}" for i in range(40)], min_patients=4).evaluate) == 4
    # The choice depends on the patients, not on the order they are listed in.
    again = split_site_patients(list(reversed(patients)), min_patients=4)
    assert set(again.evaluate) == set(split.evaluate)
    four = split_site_patients(patients[:4], min_patients=4)
    assert len(four.evaluate) == 1 and len(four.train) == 3
    with pytest.raises(ValueError, match="duplicate"):
        split_site_patients(["a", "a", "b", "c"], min_patients=2)


# ---- metric wrappers vs references -----------------------------------------------------

def test_feature_metrics_identical_sets_and_pure_shift():
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(400, 3)))
    same = feature_metrics(real, real.clone(), bandwidth=1.0)
    assert same["fd"] == pytest.approx(0.0, abs=1e-6)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    # Equal covariances: FD is exactly the squared mean shift (3 dims x 0.5^2).
    shifted = feature_metrics(real, real + 0.5, bandwidth=1.0)
    assert shifted["fd"] == pytest.approx(3 * 0.25, rel=1e-6)
    # Biased-free MMD^2 against a direct numpy computation.
    a, b = real.numpy(), real.numpy() + 0.5
    k = lambda u, v: np.exp(-((u[:, None, :] - v[None, :, :]) ** 2).sum(-1) / 2.0)  # noqa: E731
    m = len(a)
    expected = ((k(a, a).sum() - m) / (m * (m - 1)) + (k(b, b).sum() - m) / (m * (m - 1)) - 2 * k(a, b).mean())
    assert shifted["mmd2"] == pytest.approx(expected, rel=1e-9)


def test_dtw_metrics_match_brute_force_in_physical_units():
    syn = _beats(4, 0, seed=1, length=24)
    real = _beats(5, 1, seed=2, length=24)
    scores = dtw_metrics(syn, real, radius=3, scale=5.0)
    d = np.array([[_brute_dtw(s[0].double().numpy(), r[0].double().numpy(), 3) for r in real] for s in syn])
    assert scores["dtw_syn_to_real"] == pytest.approx(5.0 * d.min(axis=1).mean(), rel=1e-9)
    assert scores["dtw_real_to_syn"] == pytest.approx(5.0 * d.min(axis=0).mean(), rel=1e-9)


def test_nearest_real_fidelity_hand_computed():
    real = _beats(20, 0, seed=3).double()
    copies = nearest_real_fidelity(real[:5].clone(), real, data_range=2.0, scale=5.0)
    assert copies["rmse"] == 0.0 and copies["exact_copies"] == 5 and copies["ssim"] == pytest.approx(1.0)
    # A constant offset of 0.001 keeps every sample's nearest neighbour its own source:
    # RMSE = MAE = 0.001 model units = 0.005 mV; PSNR = 20 log10(2 / 0.001).
    offset = nearest_real_fidelity(real[:5] + 1e-3, real, data_range=2.0, scale=5.0)
    assert offset["rmse"] == pytest.approx(5e-3, rel=1e-6) and offset["mae"] == pytest.approx(5e-3, rel=1e-6)
    assert offset["psnr_db"] == pytest.approx(20 * math.log10(2 / 1e-3), rel=1e-6)
    assert offset["exact_copies"] == 0


def test_classifier_scores_are_seeded_and_leave_the_global_rng_alone():
    train, test = _set(60, 30, seed=0, patient="a"), _set(40, 20, seed=10, patient="b")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = classifier_scores(train, test, num_classes=2, epochs=2, seeds=(0, 1))
    assert torch.rand(1) == before  # global RNG untouched
    assert classifier_scores(train, test, num_classes=2, epochs=2, seeds=(0, 1)) == first
    assert first["balanced_accuracy"] > 0.7 and first["seeds"] == 2 and first["num_test"] == 60


# ---- augmentation gain -----------------------------------------------------------------

def test_augmentation_gain_refuses_shared_patients_and_reports_disjoint_ones():
    site = LabelledSet.concat([_set(40, 2, seed=0, patient="mitdb/105"), _set(40, 2, seed=2, patient="mitdb/123")])
    generated = _set(30, 30, seed=4)
    synthetic = LabelledSet(generated.samples, generated.labels)  # no patients: generated
    leaky = _set(20, 10, seed=6, patient="mitdb/123")
    with pytest.raises(ValueError, match="mitdb/123"):
        augmentation_gain(site=site, synthetic=synthetic, test=leaky, num_classes=2, epochs=1, seeds=(0,))
    test = _set(40, 20, seed=8, patient="mitdb/114")
    gain = augmentation_gain(site=site, synthetic=synthetic, test=test, num_classes=2, epochs=3, seeds=(0,))
    assert gain["site_patients"] == ["mitdb/105", "mitdb/123"] and gain["test_patients"] == ["mitdb/114"]
    assert gain["num_synthetic"] == 60 and gain["num_site"] == 84
    assert gain["gain_balanced_accuracy"] == pytest.approx(
        gain["own_plus_synthetic"]["balanced_accuracy"] - gain["own_data"]["balanced_accuracy"])


# ---- site scalars ----------------------------------------------------------------------

def test_site_scalars_tell_a_perfect_generator_from_noise():
    real = _set(120, 60, seed=20, patient="s")
    encoder = train_encoder(real.samples, real.labels, modality="ecg", epochs=2, seed=0, feature_dim=8)
    kwargs = dict(encoder=encoder, real=real, num_classes=2, samples=96, classifier_epochs=3, seed=0)
    good = site_scalars(gan=_pair(_Copier(real)), **kwargs)
    bad = site_scalars(gan=_pair(_Noise()), **kwargs)
    assert tuple(good) == tuple(bad) == SITE_SCALAR_KEYS
    assert all(math.isfinite(v) for v in (*good.values(), *bad.values()))
    assert good["fd"] < 0.1 * bad["fd"]
    assert good["dtw-syn-to-real"] < 0.5 * bad["dtw-syn-to-real"]
    assert good["prdc-precision"] > bad["prdc-precision"]
    swapped = site_scalars(gan=_pair(_Copier(real, swap=True)), **kwargs)
    assert good["tstr-balanced-accuracy"] > 0.9 and swapped["tstr-balanced-accuracy"] < 0.2


def test_inception_fid_loads_only_from_disk(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        inception_fid(torch.zeros(4, 1, 8, 8), torch.zeros(4, 1, 8, 8), path=tmp_path / "missing.pt")

    class Tiny(nn.Module):  # stands in for the TorchScript Inception: features = channel means
        def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
            return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    path = tmp_path / "tiny.pt"
    torch.jit.script(Tiny()).save(str(path))
    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert inception_fid(images, images.clone(), path=path) == pytest.approx(0.0, abs=1e-6)
    assert inception_fid(images, images * 0.2, path=path) > 1.0
    with pytest.raises(ValueError, match="image"):
        inception_fid(torch.zeros(4, 1, 8), torch.zeros(4, 1, 8), path=path)


# ---- the sites' evaluate handler core ----------------------------------------------------

def _weights(run):
    from medgan_core.models.state import gan_state
    from medgan_core.site import build_gan

    torch.manual_seed(0)
    return {k: v.numpy() for k, v in gan_state(build_gan(run)).items()}


def test_every_site_returns_the_same_evaluate_keys(small_run):
    from dataclasses import replace

    from medgan_core.site import SiteConfig, evaluate_round

    run = replace(small_run, eval_samples=64, eval_encoder_epochs=1, eval_classifier_epochs=1)
    weights = _weights(run)
    replies = [evaluate_round(site=SiteConfig.for_simulation(run, k), run=run, weights=weights) for k in range(3)]
    assert set(replies[0]) == set(replies[1]) == set(replies[2])
    assert set(SITE_SCALAR_KEYS) | {"eval-held-out", "num-examples", "epsilon"} <= set(replies[0])
    # The bundled sites have 2-3 patients each: too few to hold one out, and they say so.
    assert [r["eval-held-out"] for r in replies] == [0.0, 0.0, 0.0]
    assert all(math.isfinite(v) for r in replies for k, v in r.items() if k != "epsilon")
    # Each site trained its own encoder on its own data and keeps it beside its ledger.
    for k in range(3):
        assert SiteConfig.for_simulation(run, k).ledger_path.with_name("evaluation_encoder.pt").is_file()


def test_a_site_never_trains_on_its_held_out_evaluation_patient(tmp_path):
    from medgan_core.data.ecg import EcgConfig, load_ecg_records
    from medgan_core.site import SiteConfig, evaluate_round, train_round
    from simulations.federation import resolve_run_config

    records = ["mitdb/106", "mitdb/100", "mitdb/105", "mitdb/123"]
    run = resolve_run_config({"run-dir": str(tmp_path / "run"), "site-records": " ".join(records) + "|mitdb/108",
                              "local-steps": 1, "batch-size": 32, "dp-enabled": False, "eval-samples": 64,
                              "eval-encoder-epochs": 1, "eval-classifier-epochs": 1})
    split = split_site_patients(records, min_patients=run.site_eval_min_patients)
    assert split.held_out and len(split.evaluate) == 1

    def beats(names):
        return len(load_ecg_records(run.record_paths(list(names)), EcgConfig())[0])

    site = SiteConfig.for_simulation(run, 0)
    weights = _weights(run)
    _, trained = train_round(site=site, run=run, run_id="t", server_round=1, weights=weights)
    assert trained["num-examples"] == beats(split.train)  # the held-out patient is not trained on
    evaluated = evaluate_round(site=site, run=run, weights=weights)
    assert evaluated["eval-held-out"] == 1.0 and evaluated["num-examples"] == beats(split.evaluate)
