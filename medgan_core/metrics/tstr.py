"""Train-on-synthetic / test-on-real (TSTR), beside train-on-real / test-on-real (TRTR).

The classifier is deliberately small and fixed: the comparison is between training sets,
so the model, its budget and its seed are held constant and only the data changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score, roc_auc_score
from torch import nn

__all__ = ["ClassifierScores", "SmallClassifier", "classifier_probabilities", "evaluate_classifier",
           "scores_from_probabilities", "train_classifier", "tstr_trtr"]


class SmallClassifier(nn.Module):
    """A small CNN for (B, C, L) beats of C leads or (B, C, H, W) images."""

    def __init__(self, num_classes: int, spatial_dims: int = 1, channels: int = 1) -> None:
        super().__init__()
        conv = nn.Conv1d if spatial_dims == 1 else nn.Conv2d
        pool = nn.AdaptiveAvgPool1d if spatial_dims == 1 else nn.AdaptiveAvgPool2d
        self.net = nn.Sequential(
            conv(channels, 16, 5, stride=2, padding=2), nn.ReLU(),
            conv(16, 32, 5, stride=2, padding=2), nn.ReLU(),
            conv(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            pool(4), nn.Flatten(), nn.Linear(32 * 4 ** spatial_dims, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, num_classes) logits


@dataclass(frozen=True)
class ClassifierScores:
    balanced_accuracy: float
    auroc: float
    macro_f1: float
    num_test: int
    sensitivity: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def train_classifier(x: torch.Tensor, y: torch.Tensor, *, num_classes: int, epochs: int = 8,
                     batch_size: int = 128, seed: int = 0, device: torch.device | str = "cpu") -> SmallClassifier:
    """Class-balanced training (inverse-frequency weights), so rare classes count.

    The model is initialised on the CPU (the same weights for a seed on every device), then
    trained on ``device`` with each mini-batch moved there; it is returned on ``device``.
    """
    torch.manual_seed(seed)
    model = SmallClassifier(num_classes, spatial_dims=x.dim() - 2, channels=x.shape[1]).to(device)
    counts = torch.bincount(y, minlength=num_classes).float().clamp(min=1)
    loss_fn = nn.CrossEntropyLoss(weight=(counts.sum() / (num_classes * counts)).to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=rng)
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(x[idx].to(device)), y[idx].to(device)).backward()
            optimizer.step()
    return model.eval()


def evaluate_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> ClassifierScores:
    """Scores of ``model`` on labelled records ``x`` (B, 1, ...) with classes ``y`` (B,).

    See :func:`scores_from_probabilities` (balanced accuracy, AUROC of the last class vs
    the rest, macro F1, sensitivity). Runs on the model's device.
    """
    return scores_from_probabilities(classifier_probabilities(model, x), y.numpy())


def classifier_probabilities(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Class probabilities (B, num_classes) of ``model`` on records ``x``, on the model's device."""
    device = next(model.parameters(), torch.empty(0)).device  # a parameterless model (a stub) runs on the CPU
    with torch.no_grad():
        return torch.softmax(model(x.to(device)), dim=1).cpu().numpy()


def scores_from_probabilities(probs: np.ndarray, truth: np.ndarray) -> ClassifierScores:
    """Scores of class probabilities ``probs`` (B, num_classes) against classes ``truth`` (B,).

    Any classifier's probabilities (the CNN's softmax, the trees' ``predict_proba``) are
    scored here, so the rows of different classifiers mean the same thing. Predictions are
    the argmax (the default threshold). Balanced accuracy averages the recall of the classes
    present in ``truth``; macro F1 averages over all classes, 0 for a class never predicted
    correctly; AUROC ranks the last class against the rest and ``sensitivity`` is the recall
    of the last class (for N vs V: how well V is ranked above N, and the share of real V
    called V); both are NaN when ``truth`` lacks the last class (AUROC also without the rest).
    A high AUROC with a low sensitivity is a classifier whose ranking is right and whose
    threshold is not: it calls the last class the other.
    """
    pred = probs.argmax(1)
    classes = list(range(probs.shape[1]))
    last = truth == classes[-1]
    auroc = float(roc_auc_score(last, probs[:, -1])) if 0 < last.sum() < len(last) else float("nan")
    sensitivity = (float(recall_score(truth, pred, labels=[classes[-1]], average="macro", zero_division=0.0))
                   if last.any() else float("nan"))
    return ClassifierScores(
        balanced_accuracy=float(balanced_accuracy_score(truth, pred)),
        auroc=auroc,
        macro_f1=float(f1_score(truth, pred, labels=classes, average="macro", zero_division=0.0)),
        num_test=int(len(truth)),
        sensitivity=sensitivity,
    )


def tstr_trtr(*, synthetic: tuple[torch.Tensor, torch.Tensor], real_train: tuple[torch.Tensor, torch.Tensor],
              real_test: tuple[torch.Tensor, torch.Tensor], num_classes: int, seed: int = 0,
              epochs: int = 8, device: torch.device | str = "cpu") -> dict[str, ClassifierScores]:
    """The same classifier trained on synthetic and on real training data, both tested
    on held-out real patients."""
    tstr = train_classifier(*synthetic, num_classes=num_classes, seed=seed, epochs=epochs, device=device)
    trtr = train_classifier(*real_train, num_classes=num_classes, seed=seed, epochs=epochs, device=device)
    return {"tstr": evaluate_classifier(tstr, *real_test), "trtr": evaluate_classifier(trtr, *real_test)}
