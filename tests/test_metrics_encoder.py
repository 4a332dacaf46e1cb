"""Domain encoder: learns class-relevant morphology, reproducible, round-trips through disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from medgan_core.metrics.encoder import EncoderConfig, build_encoder, load_encoder, train_encoder
from medgan_core.metrics.frechet import feature_statistics, frechet_distance


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # On a shared 2-core box intra-op threads fight other jobs and training gets ~10x slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _beats(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three beat classes that differ only in where the same bump sits (needs position)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([40.0, 64.0, 88.0])[labels]
    t = torch.arange(128.0)
    bump = torch.exp(-(((t[None] - centres[:, None]) / 5.0) ** 2))
    x = bump + 0.2 * torch.randn(n, 128, generator=g)
    return x[:, None], labels  # (N, 1, 128)


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 'findings': an opacity in the left or the right half of a noisy 64x64 image."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 64, 64, generator=g)
    for i, label in enumerate(labels.tolist()):
        col = 8 if label == 0 else 40
        x[i, 0, 24:40, col : col + 16] += 1.0
    return x, labels


def test_ecg_encoder_learns_position_dependent_classes() -> None:
    x, y = _beats(600, seed=0)
    x_test, y_test = _beats(300, seed=1)
    encoder = train_encoder(x, y, backbone="signal", epochs=3, seed=0)
    accuracy = (encoder(x_test).argmax(dim=1) == y_test).float().mean().item()
    assert accuracy > 0.95


def test_feature_distances_separate_classes_not_samples() -> None:
    x, y = _beats(600, seed=2)
    encoder = train_encoder(x, y, backbone="signal", epochs=3, seed=0)
    x_test, y_test = _beats(600, seed=3)
    feats = encoder.features(x_test).double()
    class0 = feats[y_test == 0]
    half = class0.shape[0] // 2
    within = frechet_distance(
        *feature_statistics(class0[:half]), *feature_statistics(class0[half:])
    )
    between = frechet_distance(*feature_statistics(class0), *feature_statistics(feats[y_test == 1]))
    assert between > 10 * within


def test_image_encoder_learns_left_versus_right() -> None:
    x, y = _images(160, seed=4)
    x_test, y_test = _images(100, seed=5)
    encoder = train_encoder(x, y, backbone="image", epochs=3, seed=0, feature_dim=32)
    assert encoder.features(x_test).shape == (100, 32)
    assert (encoder(x_test).argmax(dim=1) == y_test).float().mean().item() > 0.9


def test_features_are_eval_mode_no_grad_and_seed_deterministic() -> None:
    x, y = _beats(200, seed=6)
    first = train_encoder(x, y, backbone="signal", epochs=1, seed=7)
    second = train_encoder(x, y, backbone="signal", epochs=1, seed=7)
    other = train_encoder(x, y, backbone="signal", epochs=1, seed=8)
    feats = first.features(x[:10])
    assert feats.shape == (10, 64) and not feats.requires_grad and not first.training
    torch.testing.assert_close(feats, second.features(x[:10]), rtol=0, atol=0)
    assert not torch.equal(feats, other.features(x[:10]))


def test_training_leaves_global_rng_untouched() -> None:
    x, y = _beats(64, seed=9)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_encoder(x, y, backbone="signal", epochs=1, seed=0)
    torch.testing.assert_close(torch.rand(3), expected)


def test_save_load_round_trip(tmp_path: Path) -> None:
    x, y = _beats(100, seed=10)
    encoder = train_encoder(x, y, backbone="signal", epochs=1, seed=0, feature_dim=16)
    path = tmp_path / "encoders" / "ecg.pt"
    encoder.save(path)
    loaded = load_encoder(path)
    assert loaded.config == encoder.config
    torch.testing.assert_close(loaded.features(x), encoder.features(x), rtol=0, atol=0)


def test_load_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_encoder(tmp_path / "missing.pt")
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(1)}, bogus)
    with pytest.raises(ValueError, match="not an encoder checkpoint"):
        load_encoder(bogus)


def test_invalid_configurations_are_rejected() -> None:
    with pytest.raises(ValueError, match="'image', 'signal'"):
        build_encoder(EncoderConfig(backbone="eeg", input_shape=(1, 128), num_classes=2))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_encoder(EncoderConfig(backbone="image", input_shape=(1, 128), num_classes=2))
    with pytest.raises(ValueError, match="at least 2 classes"):
        one_class = torch.zeros(8, dtype=torch.long)
        train_encoder(torch.zeros(8, 1, 128), one_class, backbone="signal", epochs=1, seed=0)
    x, y = _beats(32, seed=11)
    encoder = train_encoder(x, y, backbone="signal", epochs=1, seed=0)
    with pytest.raises(ValueError, match="training shape"):
        encoder.features(torch.zeros(4, 1, 256))
