"""Explanations of a run's discriminator and TSTR classifier: SHAP, LRP and LIME (captum).

Attributions are computed on synthetic samples, or on the researcher's own held-out data;
nothing here runs at a site or reads a site's training data.
"""

from medgan_core.explain.attributions import (
    ATTRIBUTION_METHODS,
    attribute,
    block_feature_mask,
    fold_discriminator,
    gradient_shap,
    lime,
    lrp,
)
from medgan_core.explain.run import Explanation, explain_run, explanation_markdown, focus_rows, write_explanation
from medgan_core.explain.summary import REST, attribution_share_map, region_shares

__all__ = ["ATTRIBUTION_METHODS", "REST", "Explanation", "attribute", "attribution_share_map", "block_feature_mask",
           "explain_run", "explanation_markdown", "focus_rows", "fold_discriminator", "gradient_shap", "lime", "lrp",
           "region_shares", "write_explanation"]
