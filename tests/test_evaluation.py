"""medgan_core.evaluation and the metric wrappers it uses: hand-computed or brute-force
references, augmentation on disjoint patients, one name per metric."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from medgan_core.data.labelled import LabelledSet
from medgan_core.evaluation import augmentation_gain, classifier_scores
from medgan_core.metrics.dtw import dtw_metrics
from medgan_core.metrics.feature_space import feature_metrics
from medgan_core.metrics.fidelity import nearest_real_fidelity
from medgan_core.metrics.frechet import inception_fid
from medgan_core.metrics.names import METRICS, SET_METRICS, gain_key, metric


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


def _brute_dtw(x: np.ndarray, y: np.ndarray, radius: int) -> float:
    n, m = len(x), len(y)
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(max(1, i - radius), min(m, i + radius) + 1):
            cost[i, j] = (x[i - 1] - y[j - 1]) ** 2 + min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
    return math.sqrt(cost[n, m])


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
    assert gain[gain_key("balanced_accuracy")] == pytest.approx(
        gain["own_plus_synthetic"]["balanced_accuracy"] - gain["own_data"]["balanced_accuracy"])


# ---- one name per metric -----------------------------------------------------------------

def test_every_metric_a_wrapper_returns_is_registered_under_that_one_name():
    real = _beats(20, 0, seed=3)
    keys = set(feature_metrics(real[:, 0], real[:, 0] + 0.1, bandwidth=1.0))
    keys |= set(nearest_real_fidelity(real[:5], real, data_range=2.0))
    keys |= set(dtw_metrics(real[:3, :, :16], real[:4, :, :16], radius=2))
    assert keys <= set(METRICS) and set(SET_METRICS) <= keys
    assert metric("rmse").label_in("mV") == "RMSE to nearest real (mV)"
    assert metric("fd").label_in("mV") == metric("fd").label  # unitless: no unit appended
    with pytest.raises(ValueError, match="unknown metric 'dtw_mv'; known: fd"):
        metric("dtw_mv")


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


def test_per_patient_scores_against_hand_computed_values() -> None:
    """Two patients, two seeds: recalls and AUROC per patient, averaged over the seeds."""
    from medgan_core.evaluation.utility import per_patient_scores

    test = LabelledSet(torch.zeros(6, 1, 4), torch.tensor([0, 0, 1, 0, 0, 0]), ("a", "a", "a", "b", "b", "b"))
    p_v = [np.array([0.1, 0.6, 0.9, 0.2, 0.7, 0.8]), np.array([0.1, 0.2, 0.3, 0.2, 0.3, 0.4])]
    scores = per_patient_scores([np.stack([1 - p, p], axis=1) for p in p_v], test)
    assert scores["a"]["num_per_class"] == [2, 1]
    assert scores["a"]["recall_per_class"] == pytest.approx([(0.5 + 1.0) / 2, (1.0 + 0.0) / 2])
    assert scores["a"]["auroc"] == pytest.approx(1.0)  # V ranked above both N beats in each seed
    assert scores["b"]["num_per_class"] == [3, 0]
    assert scores["b"]["recall_per_class"][0] == pytest.approx((1 / 3 + 1.0) / 2)
    assert math.isnan(scores["b"]["recall_per_class"][1]) and math.isnan(scores["b"]["auroc"])
    with pytest.raises(ValueError, match="patient ids"):
        per_patient_scores(p_v, LabelledSet(test.samples, test.labels))


def test_per_patient_breakdown_only_for_few_patients() -> None:
    from medgan_core.evaluation.utility import PER_PATIENT_MAX, gbt_scores

    generator = torch.Generator().manual_seed(0)
    train = LabelledSet(torch.randn(40, 1, 16, generator=generator), torch.arange(2).repeat(20))
    few = LabelledSet(torch.randn(20, 1, 16, generator=generator), torch.arange(2).repeat(10),
                      tuple(f"p{i % 2}" for i in range(20)))
    many = LabelledSet(few.samples, few.labels, tuple(f"p{i}" for i in range(20)))
    assert set(gbt_scores(train, few, num_classes=2, seeds=(0,), per_patient=True)["per_patient"]) == {"p0", "p1"}
    assert 20 > PER_PATIENT_MAX and "per_patient" not in gbt_scores(train, many, num_classes=2, seeds=(0,),
                                                                    per_patient=True)
    assert "per_patient" not in gbt_scores(train, few, num_classes=2, seeds=(0,))
