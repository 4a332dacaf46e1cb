"""Domain encoders: the feature space for Fréchet distance, PRDC and DOMIAS on ECG and X-rays.

Why these features mean something: the encoder is trained, supervised, to separate the
diagnostic classes of the REAL training data (beat types, X-ray findings). Its penultimate
layer therefore keeps the morphology that distinguishes those classes (QRS width, ST
shape, opacities) and discards what does not (small noise, baseline offsets), so distances
in it reflect clinically relevant differences. ImageNet Inception features, the usual FID
space, were never trained on ECG and respond to natural-image texture; on a beat plotted
as an image they measure the wrong thing. Scores from different encoders (or seeds) are
not comparable: save the encoder and reuse the file for every run you compare.

Privacy: the encoder is a non-private model of the training data and can memorise it.
Keep it with the data holder (it is an evaluation tool), never ship it with a synthetic
data release.

Inputs are standardised with the training set's mean and std (stored in the config), so
real and synthetic data must be on the same scale as the training data.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from medgan_core.io_utils import atomic_write_bytes

__all__ = ["Encoder", "EncoderConfig", "build_encoder", "load_encoder", "load_or_train_encoder", "train_encoder"]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1
# Encoders saved before the backbones were named by sample shape named them by modality.
_LEGACY_BACKBONE_NAMES = {"ecg": "signal"}
# Pool to a coarse grid, not to a single value: beats are R-peak aligned and X-rays are
# roughly registered, so *where* a feature occurs (P wave before QRS, left vs right lung)
# is diagnostic and global pooling would throw it away.
_SIGNAL_BINS = 16
_IMAGE_BINS = 4


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to rebuild an :class:`Encoder` (saved next to its weights)."""

    backbone: str  # "signal": (B, C, L), C leads; "image": (B, C, H, W)
    input_shape: tuple[int, ...]  # per-sample shape seen in training, e.g. (1, 128) or (12, 128)
    num_classes: int
    feature_dim: int = 64
    width: int = 16  # channels of the first convolution; doubled per stage
    input_mean: float = 0.0
    input_std: float = 1.0


def _conv_block(conv: type[nn.Module], c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: no train/eval mismatch, and Opacus-compatible if someone
    # later wants to train the encoder with DP.
    return nn.Sequential(
        conv(c_in, c_out, kernel, stride=2, padding=kernel // 2),
        nn.GroupNorm(4, c_out),
        nn.GELU(),
    )


def _signal_backbone(width: int, channels: int = 1) -> tuple[nn.Module, int]:
    layers = nn.Sequential(
        _conv_block(nn.Conv1d, channels, width, 7),  # (B, C, L) -> (B, w, L/2)
        _conv_block(nn.Conv1d, width, 2 * width, 5),  # (B, 2w, L/4)
        _conv_block(nn.Conv1d, 2 * width, 4 * width, 5),  # (B, 4w, L/8)
        nn.AdaptiveAvgPool1d(_SIGNAL_BINS),  # (B, 4w, 16)
        nn.Flatten(),  # (B, 4w * 16)
    )
    return layers, 4 * width * _SIGNAL_BINS


def _image_backbone(width: int, channels: int = 1) -> tuple[nn.Module, int]:
    layers = nn.Sequential(
        _conv_block(nn.Conv2d, channels, width, 3),  # (B, w, H/2, W/2)
        _conv_block(nn.Conv2d, width, 2 * width, 3),  # (B, 2w, H/4, W/4)
        _conv_block(nn.Conv2d, 2 * width, 4 * width, 3),  # (B, 4w, H/8, W/8)
        _conv_block(nn.Conv2d, 4 * width, 4 * width, 3),  # (B, 4w, H/16, W/16)
        nn.AdaptiveAvgPool2d(_IMAGE_BINS),  # (B, 4w, 4, 4)
        nn.Flatten(),  # (B, 4w * 16)
    )
    return layers, 4 * width * _IMAGE_BINS**2


_BACKBONES = {"signal": (_signal_backbone, 2), "image": (_image_backbone, 3)}  # builder, sample ndim


class Encoder(nn.Module):
    """Classifier whose penultimate layer is the metric feature space."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        backbone, channels = _BACKBONES[config.backbone][0](config.width, config.input_shape[0])
        self.backbone = nn.Sequential(backbone, nn.Linear(channels, config.feature_dim))
        self.head = nn.Sequential(nn.GELU(), nn.Linear(config.feature_dim, config.num_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable features (B, feature_dim) of standardised inputs."""
        return self.backbone((x - self.config.input_mean) / self.config.input_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.head(self.embed(x))

    def features(self, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
        """Metric features (B, feature_dim): eval mode, no grad, float32 on the CPU.

        Raises:
            ValueError: If the per-sample shape differs from the training shape.
        """
        if tuple(x.shape[1:]) != self.config.input_shape:
            raise ValueError(
                f"input shape {tuple(x.shape)} does not match the encoder's training shape "
                f"(B, {', '.join(map(str, self.config.input_shape))}); resample or crop first."
            )
        self.eval()
        device = next(self.parameters()).device
        with torch.no_grad():
            parts = [self.embed(b.to(device, torch.float32)) for b in x.split(batch_size)]
        return torch.cat(parts).cpu()

    def save(self, path: str | Path) -> None:
        """Write config and weights to ``path`` atomically (readable by :func:`load_encoder`)."""
        buffer = io.BytesIO()
        payload = {"format_version": _FORMAT_VERSION, "config": asdict(self.config)}
        payload["state_dict"] = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch.save(payload, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())


def build_encoder(config: EncoderConfig) -> Encoder:
    """Untrained encoder for ``config``.

    Raises:
        ValueError: On an unknown backbone or a shape that does not fit it.
    """
    if config.backbone not in _BACKBONES:
        raise ValueError(
            f"backbone={config.backbone!r} is unknown; choose one of {sorted(_BACKBONES)}."
        )
    ndim = _BACKBONES[config.backbone][1]
    if len(config.input_shape) != ndim or config.input_shape[0] < 1:
        raise ValueError(
            f"{config.backbone} encoder expects samples of shape "
            f"{'(C, L)' if ndim == 2 else '(C, H, W)'}, got {config.input_shape}."
        )
    if config.num_classes < 2:
        raise ValueError(f"num_classes={config.num_classes}: need at least 2 classes to train.")
    return Encoder(config)


def load_encoder(path: str | Path, *, map_location: str | torch.device = "cpu") -> Encoder:
    """Rebuild an encoder saved by :meth:`Encoder.save` (no network, no pickled code).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not an encoder checkpoint of a known format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"encoder checkpoint not found at {path}; train one with train_encoder() and "
            "save() it there first."
        )
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"{path} is not an encoder checkpoint (format_version {_FORMAT_VERSION}).")
    raw = dict(payload["config"])
    if "modality" in raw:  # saved before backbones were named by shape, not by modality
        legacy = raw.pop("modality")
        raw["backbone"] = _LEGACY_BACKBONE_NAMES.get(legacy, legacy)
    raw["input_shape"] = tuple(raw["input_shape"])
    encoder = build_encoder(EncoderConfig(**raw))
    encoder.load_state_dict(payload["state_dict"])
    return encoder.eval()


def train_encoder(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    backbone: str,
    epochs: int,
    seed: int,
    feature_dim: int = 64,
    batch_size: int = 256,
    lr: float = 3e-3,
    device: torch.device | str = "cpu",
) -> Encoder:
    """Train a class classifier on real training data and return it as a feature encoder.

    Args:
        x: Real training samples, (N, C, L) for ``"signal"`` or (N, C, H, W) for ``"image"``.
        y: Integer class labels (N,) in ``0 .. num_classes-1``.
        backbone: ``"signal"`` (1-D, any number of leads) or ``"image"``.
        epochs: Passes over the data.
        seed: Seeds initialisation and shuffling; the global RNG is left untouched.
        feature_dim: Width of the feature layer.
        batch_size: Mini-batch size.
        lr: AdamW learning rate.
        device: Where it trains; it is initialised on the CPU (the same weights for a
            seed on every device) and each mini-batch is moved there.

    Returns:
        The trained encoder, in eval mode, on the CPU.

    Raises:
        ValueError: On shape/label problems, fewer than two classes or ``epochs < 1``.
    """
    if x.ndim < 2 or y.shape != (x.shape[0],) or x.shape[0] < 2:
        raise ValueError(
            f"need x (N, 1, ...) and y (N,) with N >= 2, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}."
        )
    if y.dtype.is_floating_point or int(y.min()) < 0:
        raise ValueError("y must hold integer class indices >= 0.")
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1.")
    x = x.detach().to("cpu", torch.float32)
    y = y.detach().to("cpu", torch.int64)
    config = EncoderConfig(
        backbone=backbone, input_shape=tuple(x.shape[1:]), num_classes=int(y.max()) + 1,
        feature_dim=feature_dim, input_mean=float(x.mean()), input_std=float(x.std()) or 1.0,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = build_encoder(config).to(device)
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=1e-4)
        order = torch.Generator().manual_seed(seed)
        encoder.train()
        for epoch in range(epochs):
            total = 0.0
            for idx in torch.randperm(x.shape[0], generator=order).split(batch_size):
                loss = nn.functional.cross_entropy(encoder(x[idx].to(device)), y[idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * idx.numel()
            logger.info("encoder epoch %d/%d: loss %.4f", epoch + 1, epochs, total / x.shape[0])
    return encoder.cpu().eval()


def load_or_train_encoder(path: str | Path, samples: torch.Tensor, labels: torch.Tensor, *, backbone: str,
                          epochs: int, seed: int, device: torch.device | str = "cpu") -> Encoder:
    """The encoder saved at ``path``, or one trained on ``samples``/``labels`` and saved there.

    The data must be REAL TRAINING data of whoever runs this (never held-out data, which
    would then no longer be unseen). Reusing the file keeps scores comparable across
    rounds and runs; delete it to retrain (e.g. after the training data changed).

    Args:
        path: The cache file.
        samples: Real training samples (N, 1, ...), used only when ``path`` is absent.
        labels: Their class indices (N,).
        backbone: ``"signal"`` or ``"image"`` (``Modality.encoder_backbone``).
        epochs: Training epochs, when training.
        seed: Training seed, when training.
        device: Where it trains and where the returned encoder lives (its ``features``
            run there and come back to the CPU).
    """
    path = Path(path)
    if path.is_file():
        return load_encoder(path).to(device)
    logger.info("training the %s evaluation encoder on %d real training samples (%d epochs) -> %s",
                backbone, len(labels), epochs, path)
    encoder = train_encoder(samples, labels, backbone=backbone, epochs=epochs, seed=seed, device=device)
    encoder.save(path)
    return encoder.to(device)
