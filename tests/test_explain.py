"""Attributions against cases with a known answer: a model that reads only one window of a
beat (or one patch of an image) must be explained by that window, by every method; the
region summary on handcrafted attributions; ``medgan explain`` end to end on a saved run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from medgan_core.explain import (
    REST,
    attribute,
    attribution_share_map,
    block_feature_mask,
    fold_discriminator,
    region_shares,
)
from medgan_core.modalities import get_modality

WINDOW = slice(40, 61)  # samples 40..60 of a 128-sample beat
PATCH = (slice(16, 32), slice(40, 56))  # rows 16..31, columns 40..55 of a 64x64 image


def _one_window_beat_model() -> nn.Module:
    """(B, 1, 128) -> (B, 2): class 1's score reads samples 40..60 only, class 0's nothing.

    The layers are those of the ECG discriminator (Conv1d, LeakyReLU, Flatten, Linear); the
    convolution is pointwise, so position i of the flattened features is sample i."""
    torch.manual_seed(0)
    conv = nn.Conv1d(1, 2, kernel_size=1)
    linear = nn.Linear(2 * 128, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0]], [[-0.5]]]))
        conv.bias.zero_()
        weights = torch.zeros(2, 2, 128)
        weights[1, :, WINDOW] = torch.linspace(0.5, 1.5, 21)
        linear.weight.copy_(weights.reshape(2, -1))
        linear.bias.zero_()
    return nn.Sequential(conv, nn.LeakyReLU(0.2), nn.Flatten(), linear).eval()


def _one_patch_image_model() -> nn.Module:
    """(B, 1, 64, 64) -> (B, 2): class 1's score reads one 16x16 patch only (ReLU net)."""
    conv = nn.Conv2d(1, 1, kernel_size=1)
    linear = nn.Linear(64 * 64, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(0.1)
        weights = torch.zeros(2, 64, 64)
        weights[1][PATCH] = 1.0
        linear.weight.copy_(weights.reshape(2, -1))
        linear.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), linear).eval()


def _share_inside(attributions: np.ndarray, inside: np.ndarray) -> float:
    mass = np.abs(attributions).sum(0)
    return float(mass[inside].sum() / mass.sum())


@pytest.mark.parametrize("method", ["shap", "lrp"])
def test_gradient_methods_put_a_one_window_beat_model_in_that_window(method):
    torch.manual_seed(1)
    beats = torch.randn(16, 1, 128).abs() + 0.1  # positive, so LeakyReLU's slope is 1 everywhere

    attributions = attribute(method, _one_window_beat_model(), beats, target=1, seed=0)

    assert attributions.shape == beats.shape
    inside = np.zeros((1, 128), dtype=bool)
    inside[:, WINDOW] = True
    assert _share_inside(attributions, inside) > 0.9


def test_lime_ranks_the_read_window_first_for_a_beat():
    torch.manual_seed(2)
    beats = torch.randn(4, 1, 128).abs() + 0.1

    attributions = attribute("lime", _one_window_beat_model(), beats, target=1, seed=0)

    # Blocks of 8 samples: blocks 5, 6, 7 (samples 40..63) overlap the read window.
    for sample in attributions:
        block_coefficients = sample[0, ::8]
        assert int(np.argmax(np.abs(block_coefficients))) in (5, 6, 7)
    inside = np.zeros((1, 128), dtype=bool)
    inside[:, 40:64] = True
    assert _share_inside(attributions, inside) > 0.9


@pytest.mark.parametrize("method", ["shap", "lrp", "lime"])
def test_every_method_puts_a_one_patch_image_model_in_that_patch(method):
    torch.manual_seed(3)
    images = torch.rand(3, 1, 64, 64) + 0.1

    attributions = attribute(method, _one_patch_image_model(), images, target=1, seed=0)

    inside = np.zeros((1, 64, 64), dtype=bool)
    inside[(slice(None), *PATCH)] = True  # 16-pixel aligned: exactly LIME's 8x8 blocks 2..3 x 5..6
    assert _share_inside(attributions, inside) > 0.9
    if method == "lime":
        top = np.unravel_index(np.argmax(np.abs(attributions[0, 0])), (64, 64))
        assert inside[0][top]


def test_the_folded_discriminator_is_the_conditional_discriminator():
    from medgan_core.models.ecg import Discriminator1D, EcgGanConfig

    torch.manual_seed(4)
    discriminator = Discriminator1D(EcgGanConfig()).eval()
    beats = torch.randn(5, 1, 128)

    for label in (0, 1):
        folded = fold_discriminator(discriminator, label)
        expected = discriminator(beats, torch.full((5,), label))
        assert torch.allclose(folded(beats)[:, 0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="classes 0..1"):
        fold_discriminator(discriminator, 2)
    with pytest.raises(ValueError, match="not a projection discriminator"):
        fold_discriminator(nn.Linear(3, 1), 0)


def test_lrp_refuses_a_layer_without_a_rule():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.GroupNorm(1, 2), nn.Flatten(), nn.Linear(2 * 126, 1))

    with pytest.raises(ValueError, match="no propagation rule for GroupNorm"):
        attribute("lrp", model, torch.randn(2, 1, 128), target=0)


def test_an_unknown_method_names_the_known_ones():
    with pytest.raises(ValueError, match="use one of shap, lrp, lime"):
        attribute("saliency", nn.Linear(2, 1), torch.randn(1, 2), target=0)


def test_block_feature_mask_cuts_windows_and_patches():
    beat = block_feature_mask((1, 20), block=8)[0, 0]
    assert beat.tolist() == [0] * 8 + [1] * 8 + [2] * 4  # the last window is short
    image = block_feature_mask((1, 4, 6), block=3)[0, 0]
    assert image.tolist() == [[0, 0, 0, 1, 1, 1]] * 3 + [[2, 2, 2, 3, 3, 3]]


def test_ecg_wave_windows_sit_around_the_r_peak():
    # The reader puts R at sample 50 of 128 at 180 Hz: QRS = R +- 60 ms = samples 39..60.
    regions = get_modality("ecg").attribution_regions((1, 128))

    assert list(regions) == ["P wave", "QRS", "ST segment", "T wave"]
    spans = {name: np.flatnonzero(mask[0]) for name, mask in regions.items()}
    assert (spans["QRS"][0], spans["QRS"][-1]) == (39, 60)
    assert (spans["P wave"][0], spans["P wave"][-1]) == (14, 35)  # R - 200 ms .. R - 80 ms
    assert (spans["T wave"][0], spans["T wave"][-1]) == (72, 121)  # R + 120 ms .. R + 400 ms


def test_ecg_window_shares_of_a_handcrafted_attribution():
    # Two beats: one all in the QRS, one split 3:1 between T wave and a sample before P.
    attributions = np.zeros((2, 1, 128))
    attributions[0, 0, 45:55] = -0.5  # the sign does not matter, the magnitude does
    attributions[1, 0, 80] = 3.0
    attributions[1, 0, 2] = 1.0

    shares = region_shares(attribution_share_map(attributions), get_modality("ecg").attribution_regions((1, 128)))

    assert shares == pytest.approx({"P wave": 0.0, "QRS": 0.5, "ST segment": 0.0, "T wave": 0.375, REST: 0.125})


def test_xray_lung_zones_split_the_central_area():
    regions = get_modality("xray").attribution_regions((1, 64, 64))
    share_map = np.zeros((1, 64, 64))
    share_map[0, 12, 10] = 1.0  # upper half of the image's left: the patient's right upper zone
    share_map[0, 0, 0] = 1.0  # corner: outside the lung fields

    shares = region_shares(share_map, regions)

    assert shares["right lung, upper"] == pytest.approx(0.5) and shares[REST] == pytest.approx(0.5)
    assert sum(mask.sum() for mask in regions.values()) < 64 * 64


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory as the ServerApp leaves it: config.json and an (untrained) round-1
    checkpoint of the initial global model; hold-out patient mitdb/116 is in the repo."""
    from medgan_core.models import initial_gan
    from medgan_core.models.state import gan_state
    from medgan_core.run_dir import RunDirectory
    from simulations.federation import resolve_run_config

    root = tmp_path_factory.mktemp("explain") / "run"
    run = resolve_run_config({"run-dir": str(root), "site-records": "mitdb/106|mitdb/105",
                              "holdout-records": "mitdb/116"})
    directory = RunDirectory(root)
    directory.write_json("config.json", run.to_mapping())
    directory.save_checkpoint(1, gan_state(initial_gan(run)), {"model": run.model})
    return root


def test_explain_command_end_to_end(tiny_run, capsys):
    from medgan_cli.main import main

    code = main(["explain", "--run-dir", str(tiny_run), "--n", "6", "--train-n", "20", "--lime-n", "2",
                 "--seed", "3"])

    assert code == 0
    out = tiny_run / "explain"
    summary = json.loads((out / "explain.json").read_text())
    assert summary["focus_class"] == "V" and summary["data"]["synthetic"] == 12
    assert "held-out real" in summary["data"]  # mitdb/116 is local: explained too
    for data_name, models in summary["results"].items():
        for model in ("discriminator", "classifier"):
            for method in ("shap", "lrp", "lime"):
                shares = models[model][method]["V"]["regions"]
                assert set(shares) == {"P wave", "QRS", "ST segment", "T wave", REST}
                assert sum(shares.values()) == pytest.approx(1.0)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(summary["figures"]) and len(summary["figures"]) == 4
    markdown = (out / "explain.md").read_text()
    assert markdown.startswith("## Explanations") and "| synthetic | discriminator | lrp |" in markdown
    printed = json.loads(capsys.readouterr().out)
    assert printed["focus_class"] == "V" and len(printed["top_regions"]) == 12


def test_explain_command_refuses_an_unknown_method(tiny_run):
    from medgan_cli.main import main

    with pytest.raises(SystemExit, match="--methods 'shap,grad': use one or more of shap,lrp,lime"):
        main(["explain", "--run-dir", str(tiny_run), "--methods", "shap,grad"])
