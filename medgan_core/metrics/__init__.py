"""Utility metrics for synthetic ECG beats and chest X-rays (numpy/scipy/scikit-learn/torch, no Flower).

* :mod:`.dtw` - exact and Sakoe-Chiba banded DTW, all-pairs matrices, nearest-neighbour DTW.
* :mod:`.frechet` - Fréchet distance with an injected feature extractor (FID-style).
* :mod:`.encoder` - supervised domain encoders whose features feed the set metrics.
* :mod:`.distribution` - RBF MMD^2 and precision/recall/density/coverage in feature space.
* :mod:`.fidelity` - PSNR, SSIM and nearest-real-neighbour RMSE/MAE (read their caveats).
* :mod:`.feature_space` - FD, PRDC and MMD^2 of two feature sets at once.
* :mod:`.names` - the one key, label and unit of every metric.
* :mod:`.registry` - metrics users add: one file with a :func:`register_metric` call, plus one
  import line here (``from medgan_core.metrics import my_metric as _my_metric  # noqa: F401``).
"""

from medgan_core.metrics.distribution import PRDC, median_heuristic_bandwidth, mmd2, prdc
from medgan_core.metrics.dtw import (
    NearestNeighbourDTW,
    band_radius,
    dtw_distance,
    dtw_matrix,
    dtw_metrics,
    mean_nn_dtw,
    to_dtaidistance_window,
)
from medgan_core.metrics.encoder import (
    Encoder,
    EncoderConfig,
    build_encoder,
    load_encoder,
    load_or_train_encoder,
    train_encoder,
)
from medgan_core.metrics.feature_space import feature_metrics
from medgan_core.metrics.fidelity import (
    NearestNeighbourFidelity,
    nearest_neighbour_fidelity,
    nearest_real_fidelity,
    psnr,
    ssim,
)
from medgan_core.metrics.registry import register_metric, registered_metric_keys, set_metric_keys
from medgan_core.metrics.frechet import (
    FeatureSums,
    FrechetDistance,
    TorchScriptFeatureExtractor,
    feature_statistics,
    frechet_distance,
    inception_fid,
    statistics_from_sums,
    update_feature_sums,
)

__all__ = [
    # dtw
    "NearestNeighbourDTW",
    "band_radius",
    "dtw_distance",
    "dtw_matrix",
    "dtw_metrics",
    "mean_nn_dtw",
    "to_dtaidistance_window",
    # frechet
    "FeatureSums",
    "FrechetDistance",
    "TorchScriptFeatureExtractor",
    "feature_statistics",
    "frechet_distance",
    "inception_fid",
    "statistics_from_sums",
    "update_feature_sums",
    # encoder
    "Encoder",
    "EncoderConfig",
    "build_encoder",
    "load_encoder",
    "load_or_train_encoder",
    "train_encoder",
    # distribution
    "PRDC",
    "median_heuristic_bandwidth",
    "mmd2",
    "prdc",
    # fidelity
    "NearestNeighbourFidelity",
    "nearest_neighbour_fidelity",
    "nearest_real_fidelity",
    # feature space
    "feature_metrics",
    "psnr",
    "ssim",
    # registry
    "register_metric",
    "registered_metric_keys",
    "set_metric_keys",
]
