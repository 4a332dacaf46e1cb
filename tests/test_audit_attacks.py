"""Membership-inference attacks fire where membership is obvious and stay silent where not."""

from __future__ import annotations

import numpy as np
import pytest

from privacy.audit import (
    DomiasAttack,
    PcaEmbedding,
    MembershipAttack,
    available_attacks,
    create_attack,
    min_l2_distances,
    register_attack,
    roc_auc,
    torch_discriminator_score,
)

BEAT_LEN = 64


def _beats(rng: np.random.Generator, n: int) -> np.ndarray:
    # ECG-like beats (n, L): three Gaussian bumps with random heights and positions.
    t = np.linspace(0.0, 1.0, BEAT_LEN)
    heights = rng.normal(size=(n, 3, 1))
    centres = rng.uniform(0.2, 0.8, size=(n, 3, 1))
    return (heights * np.exp(-(((t - centres) / 0.08) ** 2))).sum(axis=1)


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, 8, 8))  # (n, H, W)


def _memorised(rng: np.random.Generator, members: np.ndarray, n: int, noise: float) -> np.ndarray:
    # A generator that memorised its training set: members plus a little noise.
    picks = members[rng.integers(0, len(members), n)]
    return picks + noise * rng.normal(size=picks.shape)


def _candidates(members: np.ndarray, non_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.r_[np.ones(len(members), bool), np.zeros(len(non_members), bool)]
    return np.concatenate([members, non_members]), labels


@pytest.mark.parametrize("make", [_beats, _images])
def test_gan_leaks_fires_on_memorised_samples(make) -> None:
    rng = np.random.default_rng(0)
    members, non_members = make(rng, 200), make(rng, 200)
    synthetic = _memorised(rng, members, 1000, noise=0.01)
    candidates, labels = _candidates(members, non_members)

    auc = roc_auc(create_attack("gan_leaks", synthetic=synthetic).score(candidates), labels)

    assert auc > 0.95


@pytest.mark.parametrize("make", [_beats, _images])
def test_gan_leaks_silent_when_synthetic_independent_of_members(make) -> None:
    rng = np.random.default_rng(1)
    members, non_members = make(rng, 200), make(rng, 200)
    candidates, labels = _candidates(members, non_members)

    auc = roc_auc(create_attack("gan_leaks", synthetic=make(rng, 1000)).score(candidates), labels)

    assert abs(auc - 0.5) < 0.1


def test_gan_leaks_calibrated_fires_and_stays_silent() -> None:
    rng = np.random.default_rng(2)
    members, non_members = _beats(rng, 200), _beats(rng, 200)
    candidates, labels = _candidates(members, non_members)
    reference = _beats(rng, 1000)

    leaky = create_attack(
        "gan_leaks_calibrated", synthetic=_memorised(rng, members, 1000, 0.05), reference_synthetic=reference
    )
    clean = create_attack("gan_leaks_calibrated", synthetic=_beats(rng, 1000), reference_synthetic=reference)

    assert roc_auc(leaky.score(candidates), labels) > 0.95
    assert abs(roc_auc(clean.score(candidates), labels) - 0.5) < 0.1


def test_gan_leaks_calibrated_score_is_reference_minus_target_distance() -> None:
    synthetic = np.array([[0.0, 0.0], [10.0, 0.0]])
    reference = np.array([[0.0, 3.0]])
    candidates = np.array([[0.0, 1.0], [10.0, 4.0]])

    scores = create_attack("gan_leaks_calibrated", synthetic=synthetic, reference_synthetic=reference).score(
        candidates
    )

    # d_target = (1, 4), d_reference = (2, sqrt(100 + 1)); score = d_reference - d_target.
    np.testing.assert_allclose(scores, [2.0 - 1.0, np.sqrt(101.0) - 4.0])


def test_min_l2_distances_chunked_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    queries, samples = rng.normal(size=(53, 5)), rng.normal(size=(41, 5))
    brute = np.sqrt(((queries[:, None, :] - samples[None, :, :]) ** 2).sum(-1)).min(axis=1)

    np.testing.assert_allclose(min_l2_distances(queries, samples, chunk_size=7), brute, rtol=1e-10)


def test_min_l2_distances_handles_5000_by_5000() -> None:
    rng = np.random.default_rng(4)
    samples = rng.normal(size=(5000, 16)) * 10.0
    offsets = np.zeros((5000, 16))
    offsets[:, 0] = 1e-3  # each query is 1e-3 from one sample, far from all others
    queries = samples[rng.permutation(5000)] + offsets

    distances = min_l2_distances(queries, samples)

    np.testing.assert_allclose(distances, 1e-3, rtol=1e-4)


def test_logan_fires_with_member_favouring_discriminator() -> None:
    rng = np.random.default_rng(5)
    members, non_members = _images(rng, 100), _images(rng, 100)
    candidates, labels = _candidates(members, non_members)

    def overfit_discriminator(x: np.ndarray) -> np.ndarray:
        # "Real" confidence falls with distance to the nearest training record.
        return -min_l2_distances(x.reshape(len(x), -1), members.reshape(len(members), -1))

    scores = create_attack("logan", discriminator_score=overfit_discriminator).score(candidates)

    assert roc_auc(scores, labels) == pytest.approx(1.0)


def test_logan_silent_with_member_blind_discriminator() -> None:
    rng = np.random.default_rng(6)
    members, non_members = _images(rng, 200), _images(rng, 200)
    candidates, labels = _candidates(members, non_members)

    scores = create_attack("logan", discriminator_score=lambda x: x.mean(axis=(1, 2))).score(candidates)

    assert abs(roc_auc(scores, labels) - 0.5) < 0.1


@pytest.mark.parametrize("bad", [lambda x: np.zeros(len(x) + 1), lambda x: np.full(len(x), np.nan)])
def test_logan_rejects_malformed_discriminator_output(bad) -> None:
    with pytest.raises(ValueError, match="discriminator_score"):
        create_attack("logan", discriminator_score=bad).score(np.zeros((4, 8)))


def test_torch_discriminator_score_matches_module_and_keeps_train_mode() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Conditional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(8, 1)
            self.embed = torch.nn.Embedding(2, 1)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # x: (B, 1, 8)
            return self.linear(x[:, 0]).squeeze(1) + self.embed(y).squeeze(1)  # (B,)

    module = Conditional().train()
    beats = np.random.default_rng(7).normal(size=(5, 8)).astype(np.float32)
    labels = np.array([0, 1, 1, 0, 1])

    scores = torch_discriminator_score(module, labels=labels, batch_size=2)(beats)

    with torch.no_grad():
        expected = module(torch.from_numpy(beats)[:, None], torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert module.training
    assert all(p.grad is None for p in module.parameters())


def test_domias_fires_on_generator_concentrated_at_members() -> None:
    rng = np.random.default_rng(8)
    members, non_members = _beats(rng, 50), _beats(rng, 50)
    synthetic = _memorised(rng, members, 2000, noise=0.05)
    candidates, labels = _candidates(members, non_members)

    attack = create_attack("domias", synthetic=synthetic, reference=_beats(rng, 2000))

    assert roc_auc(attack.score(candidates), labels) > 0.9


def test_domias_fires_on_images() -> None:
    rng = np.random.default_rng(9)
    members, non_members = _images(rng, 200), _images(rng, 200)
    synthetic = _memorised(rng, members, 2000, noise=0.05)
    candidates, labels = _candidates(members, non_members)

    attack = create_attack("domias", synthetic=synthetic, reference=_images(rng, 2000))

    assert roc_auc(attack.score(candidates), labels) > 0.9


def test_domias_silent_when_synthetic_independent_of_members() -> None:
    rng = np.random.default_rng(10)
    members, non_members = _beats(rng, 200), _beats(rng, 200)
    candidates, labels = _candidates(members, non_members)

    attack = create_attack("domias", synthetic=_beats(rng, 2000), reference=_beats(rng, 2000))

    assert abs(roc_auc(attack.score(candidates), labels) - 0.5) < 0.1


def test_domias_uses_injected_embedding_on_original_shapes() -> None:
    rng = np.random.default_rng(11)
    seen_shapes: list[tuple[int, ...]] = []

    def embed(x: np.ndarray) -> np.ndarray:
        seen_shapes.append(x.shape[1:])
        return x[:, 0, :2]  # (N, 2): first two pixels of the first row

    attack = DomiasAttack(synthetic=_images(rng, 300), reference=_images(rng, 300), embed=embed)
    scores = attack.score(_images(rng, 10))

    assert scores.shape == (10,) and np.all(np.isfinite(scores))
    assert set(seen_shapes) == {(8, 8)}


def test_domias_reports_mode_collapse_instead_of_crashing() -> None:
    rng = np.random.default_rng(12)
    collapsed = np.repeat(_beats(rng, 1), 500, axis=0)

    with pytest.raises(ValueError, match="degenerate"):
        create_attack("domias", synthetic=collapsed, reference=_beats(rng, 500))


def test_attacks_reject_records_of_another_modality() -> None:
    rng = np.random.default_rng(13)
    attack = create_attack("gan_leaks", synthetic=_beats(rng, 10))

    with pytest.raises(ValueError, match="same modality"):
        attack.score(_images(rng, 3))


def test_create_attack_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError) as err:
        create_attack("no_such_attack")

    for name in ("domias", "gan_leaks", "gan_leaks_calibrated", "logan"):
        assert name in str(err.value)


def test_register_attack_adds_and_protects_names() -> None:
    class Constant(MembershipAttack):
        def score(self, candidates: np.ndarray) -> np.ndarray:
            return np.zeros(len(candidates))

    register_attack("test_constant", Constant)

    assert "test_constant" in available_attacks()
    assert isinstance(create_attack("test_constant"), Constant)
    with pytest.raises(ValueError, match="already registered"):
        register_attack("test_constant", Constant)
    with pytest.raises(ValueError, match="not a subclass"):
        register_attack("test_not_an_attack", dict)  # type: ignore[arg-type]


def test_pca_embedding_large_input_recovers_exact_subspace() -> None:
    # 300 x 300 takes the randomized path; a clear rank-5 signal must give the same
    # subspace as the exact SVD (all principal-angle cosines ~1).
    rng = np.random.default_rng(14)
    data = rng.normal(size=(300, 5)) @ (5.0 * rng.normal(size=(5, 300))) + 0.1 * rng.normal(size=(300, 300))
    exact = np.linalg.svd(data - data.mean(axis=0), full_matrices=False)[2][:5]

    fitted = PcaEmbedding(data, n_components=5)

    np.testing.assert_allclose(np.linalg.svd(fitted.components @ exact.T, compute_uv=False), 1.0, atol=1e-6)
    assert fitted(data[:3]).shape == (3, 5)


def _exact_pca(data: np.ndarray, k: int):
    # The embedding as first written by hand: exact numpy SVD of the centred records.
    mean = data.mean(axis=0)
    components = np.linalg.svd(data - mean, full_matrices=False)[2][:k]
    return lambda x: (x - mean) @ components.T


def test_domias_default_embedding_equals_exact_svd_pca() -> None:
    # 64-value beats take the exact solver: the same density ratios as a numpy-SVD PCA.
    rng = np.random.default_rng(8)
    members, non_members = _beats(rng, 50), _beats(rng, 50)
    synthetic, reference = _memorised(rng, members, 2000, noise=0.05), _beats(rng, 2000)
    candidates, _ = _candidates(members, non_members)

    default = DomiasAttack(synthetic=synthetic, reference=reference).score(candidates)
    exact = DomiasAttack(synthetic=synthetic, reference=reference, embed=_exact_pca(reference, 5))

    np.testing.assert_allclose(default, exact.score(candidates), rtol=0, atol=1e-12)


def test_domias_randomized_pca_matches_exact_pca() -> None:
    # 300 reference records of 400 values take the randomized solver; with a clear rank-5
    # signal it finds the exact subspace, so scores and AUC are those of the exact PCA.
    rng = np.random.default_rng(15)
    mixing = 5.0 * rng.normal(size=(5, 400))

    def records(n: int) -> np.ndarray:
        return rng.normal(size=(n, 5)) @ mixing + 0.1 * rng.normal(size=(n, 400))

    members, non_members, reference = records(150), records(150), records(300)
    synthetic = _memorised(rng, members, 1000, noise=1.0)
    candidates, labels = _candidates(members, non_members)

    default = DomiasAttack(synthetic=synthetic, reference=reference).score(candidates)
    exact = DomiasAttack(synthetic=synthetic, reference=reference, embed=_exact_pca(reference, 5))

    np.testing.assert_allclose(default, exact.score(candidates), rtol=0, atol=1e-9)
    assert roc_auc(default, labels) > 0.9


def test_pca_embedding_randomized_path_is_seeded() -> None:
    data = np.random.default_rng(16).normal(size=(300, 300))  # flat spectrum: the seed matters

    first, again = PcaEmbedding(data, n_components=5, seed=3), PcaEmbedding(data, n_components=5, seed=3)
    other = PcaEmbedding(data, n_components=5, seed=4)

    np.testing.assert_array_equal(first.components, again.components)
    assert not np.allclose(np.abs(first.components), np.abs(other.components))
