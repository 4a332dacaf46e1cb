"""BiLSTM-DCGAN for ECG beats (``bilstm_dcgan1d``): a bidirectional LSTM generator and the
convolutional discriminator of ``dcgan1d`` (:class:`~medgan_core.models.ecg.Discriminator1D`).

A beat is a sequence: the generator feeds the latent code and the class, plus a learned
embedding of the time step, into a bidirectional LSTM over the ``beat_length`` steps, and a
linear head maps each step's hidden state to the ``channels`` leads.

Only the discriminator sees real records, so it is the network DP-SGD wraps; it is
``dcgan1d``'s, whose per-sample gradients Opacus computes. The generator never touches real
data (it is trained through the discriminator's outputs on fakes, with the discriminator
frozen), so whether Opacus supports LSTMs does not matter for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medgan_core.models.ecg import Discriminator1D, EcgGanConfig
from medgan_core.models.registry import GanPair, register_gan

__all__ = ["BiLstmGanConfig", "BiLstmGenerator", "build_bilstm_dcgan1d"]


@dataclass(frozen=True)
class BiLstmGanConfig:
    latent_dim: int = 32
    num_classes: int = 2
    beat_length: int = 128  # a multiple of 16, for the discriminator's four strided layers
    channels: int = 1
    lstm_input: int = 32  # features fed to the LSTM at each time step
    lstm_hidden: int = 64  # per direction
    lstm_layers: int = 1
    discriminator_width: int = 32

    def discriminator_config(self) -> EcgGanConfig:
        return EcgGanConfig(latent_dim=self.latent_dim, num_classes=self.num_classes, beat_length=self.beat_length,
                            channels=self.channels, discriminator_width=self.discriminator_width)


class BiLstmGenerator(nn.Module):
    """z, class -> beat in [-1, 1]."""

    def __init__(self, config: BiLstmGanConfig) -> None:
        super().__init__()
        self.config = config
        self.class_embedding = nn.Embedding(config.num_classes, config.latent_dim)
        self.project = nn.Linear(config.latent_dim * 2, config.lstm_input)
        self.time_embedding = nn.Parameter(torch.randn(config.beat_length, config.lstm_input) * 0.1)
        self.lstm = nn.LSTM(config.lstm_input, config.lstm_hidden, num_layers=config.lstm_layers,
                            batch_first=True, bidirectional=True)
        self.to_leads = nn.Linear(config.lstm_hidden * 2, config.channels)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        code = self.project(torch.cat([z, self.class_embedding(labels)], dim=1))  # (B, I)
        steps = torch.relu(code.unsqueeze(1) + self.time_embedding)  # (B, L, I)
        hidden, _ = self.lstm(steps)  # (B, L, 2H)
        return torch.tanh(self.to_leads(hidden)).transpose(1, 2)  # (B, leads, L)


def build_bilstm_dcgan1d(**kwargs: object) -> GanPair:
    config = BiLstmGanConfig(**kwargs)  # type: ignore[arg-type]
    return GanPair(generator=BiLstmGenerator(config), discriminator=Discriminator1D(config.discriminator_config()),
                   latent_dim=config.latent_dim, num_classes=config.num_classes, loss="bce")


register_gan("bilstm_dcgan1d", build_bilstm_dcgan1d, sample_kinds=("signal",))
