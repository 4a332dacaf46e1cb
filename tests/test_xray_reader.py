"""Chest X-ray reader: real DICOM fixtures, display transforms, PNG/JPEG and resizing."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.pixels import convert_color_space

from medgan_core.data.xray import read_xray
from tests.conftest import XRAY_DICOM_FIXTURES

RG1 = XRAY_DICOM_FIXTURES / "rg1_chest_cr.dcm"  # MONOCHROME1, 15-bit, window 15000/30000
SIIM = XRAY_DICOM_FIXTURES / "siim_chest_cr.dcm"  # MONOCHROME2, JPEG Baseline


def _mediastinum_minus_lungs(image: np.ndarray) -> float:
    """Mean of the central column (spine, heart) minus the mean of both lung fields."""
    n = image.shape[0]
    rows = slice(n // 4, n // 2)
    centre = image[rows, int(0.45 * n) : int(0.55 * n)].mean()
    lungs = np.r_[
        image[rows, int(0.17 * n) : int(0.33 * n)].ravel(),
        image[rows, int(0.67 * n) : int(0.83 * n)].ravel(),
    ].mean()
    return float(centre - lungs)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape
    return image.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


# ------------------------------------------------------------------ real DICOM fixtures
@pytest.mark.parametrize("size", [64, 128])
def test_monochrome1_fixture_shows_dark_lungs_and_bright_mediastinum(size: int) -> None:
    image = read_xray(RG1, size=size)

    assert image.shape == (size, size) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    # Stored MONOCHROME1 values are high in the lungs; after inversion lungs must be dark.
    assert _mediastinum_minus_lungs(image) > 0.15


def test_monochrome1_is_exactly_the_inverse_of_monochrome2(tmp_path: Path) -> None:
    ds = pydicom.dcmread(RG1)
    ds.PhotometricInterpretation = "MONOCHROME2"
    as_mono2 = tmp_path / "rg1_mono2.dcm"
    ds.save_as(as_mono2)

    mono1, mono2 = read_xray(RG1, size=64), read_xray(as_mono2, size=64)

    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-5)
    assert _mediastinum_minus_lungs(mono2) < -0.15  # the uninverted image is a negative


def test_monochrome1_window_matches_hand_computation(tmp_path: Path) -> None:
    # Same window as the rg1 fixture; 8x8 so no resizing is involved.
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 500  # 0 .. 31500
    dcm = tmp_path / "w.dcm"
    from tests.conftest import write_test_dicom

    write_test_dicom(dcm, stored, photometric="MONOCHROME1", bits_stored=15,
                     WindowCenter=15000, WindowWidth=30000)

    # PS3.3 C.11.2.1.2.1 LINEAR: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped, then inverted.
    expected = 1.0 - np.clip((stored - 14999.5) / 29999.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(read_xray(dcm, size=8), expected, atol=1e-6)


def test_jpeg_baseline_fixture_decodes_like_a_plain_jpeg_decoder() -> None:
    ds = pydicom.dcmread(SIIM)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    reference = np.asarray(Image.open(io.BytesIO(frame)).convert("L"), np.float64) / 255.0

    image = read_xray(SIIM, size=128)

    # 1024 -> 128 is an exact factor 8, so area resizing is an 8x8 block mean; the two JPEG
    # decoders (libjpeg vs libjpeg-turbo) may differ by a grey level here and there.
    np.testing.assert_allclose(image, _block_mean(reference, 8), atol=0.01)
    assert _mediastinum_minus_lungs(image) > 0.1


# ------------------------------------------------------------------ crafted DICOMs
def test_twelve_bit_without_window_uses_image_min_max(make_xray_dicom, tmp_path: Path) -> None:
    stored = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 40 + 100)  # 100 .. 2620
    make_xray_dicom(tmp_path / "a.dcm", stored, bits_stored=12)

    expected = (stored - 100.0) / (2620.0 - 100.0)
    np.testing.assert_allclose(read_xray(tmp_path / "a.dcm", size=8), expected, atol=1e-6)


def test_eight_bit_without_window_uses_the_stored_range(make_xray_dicom, tmp_path: Path) -> None:
    stored = np.full((8, 8), 50, np.uint8)
    stored[:4] = 100  # min-max would give 0 and 1; the stored range keeps 50/255, 100/255
    make_xray_dicom(tmp_path / "b.dcm", stored)

    np.testing.assert_allclose(read_xray(tmp_path / "b.dcm", size=8), stored / 255.0, atol=1e-6)


def test_rescale_slope_intercept_applies_before_window(make_xray_dicom, tmp_path: Path) -> None:
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 16  # 0 .. 1008
    make_xray_dicom(tmp_path / "c.dcm", stored, bits_stored=10, RescaleSlope=2,
                    RescaleIntercept=-1000, WindowCenter=0, WindowWidth=1000)

    modality = 2.0 * stored - 1000.0
    expected = np.clip((modality + 0.5) / 999.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(read_xray(tmp_path / "c.dcm", size=8), expected, atol=1e-6)


def test_signed_sixteen_bit_monochrome1(make_xray_dicom, tmp_path: Path) -> None:
    stored = (np.arange(64, dtype=np.int16).reshape(8, 8) - 32) * 700  # -22400 .. 21700
    make_xray_dicom(tmp_path / "d.dcm", stored, photometric="MONOCHROME1")

    values = stored.astype(np.float64)
    expected = 1.0 - (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(read_xray(tmp_path / "d.dcm", size=8), expected, atol=1e-6)


def test_voi_lut_sequence_is_preferred_and_scaled_by_lut_range(make_xray_dicom,
                                                              tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    stored = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)  # 0 .. 252
    lut = Dataset()
    lut.add_new(0x00283002, "US", [256, 0, 8])  # LUT Descriptor: entries, first, bits
    lut.add_new(0x00283006, "US", [v // 2 for v in range(256)])  # LUT Data: 0 .. 127
    make_xray_dicom(tmp_path / "e.dcm", stored, VOILUTSequence=[lut],
                    WindowCenter=10, WindowWidth=2)  # a window that must be ignored

    expected = (stored // 2) / 127.0
    np.testing.assert_allclose(read_xray(tmp_path / "e.dcm", size=8), expected, atol=1e-6)


def test_rgb_dicom_becomes_bt601_luminance_with_a_logged_note(
    make_xray_dicom, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    make_xray_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB")

    with caplog.at_level(logging.INFO, logger="medgan_core.data.dicom_reader"):
        image = read_xray(tmp_path / "rgb.dcm", size=8)

    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255.0
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert any("converted to grey" in r.message for r in caplog.records)
    assert any(r.levelno == logging.WARNING for r in caplog.records)  # real colour content


def test_ybr_full_dicom_matches_its_rgb_luminance(make_xray_dicom, tmp_path: Path) -> None:
    grey = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    make_xray_dicom(tmp_path / "ybr.dcm", convert_color_space(rgb, "RGB", "YBR_FULL"),
                    photometric="YBR_FULL")

    np.testing.assert_allclose(read_xray(tmp_path / "ybr.dcm", size=8), grey / 255.0,
                               atol=2 / 255)


# ------------------------------------------------------------------ PNG / JPEG
def _first_png(xray_data_dir: Path, name: str = "NORMAL") -> Path:
    return sorted((xray_data_dir / name).glob("*.png"))[0]


def test_bundled_png_reads_exactly_at_native_size_and_block_averages_at_64(
    xray_data_dir: Path,
) -> None:
    png = _first_png(xray_data_dir)
    raw = np.asarray(Image.open(png), np.float64) / 255.0

    np.testing.assert_allclose(read_xray(png, size=128), raw, atol=1e-6)
    np.testing.assert_allclose(read_xray(png, size=64), _block_mean(raw, 2), atol=1e-6)


def test_jpeg_reads_close_to_the_png_it_was_made_from(xray_data_dir: Path,
                                                      tmp_path: Path) -> None:
    png = _first_png(xray_data_dir, "PNEUMONIA")
    jpeg = tmp_path / "x.jpeg"
    Image.open(png).convert("RGB").save(jpeg, quality=95)  # RGB like the Kermany originals

    difference = np.abs(read_xray(jpeg, size=64) - read_xray(png, size=64))

    assert difference.mean() < 0.01


def test_sixteen_bit_png_matches_eight_bit(xray_data_dir: Path, tmp_path: Path) -> None:
    png = _first_png(xray_data_dir)
    grey = np.asarray(Image.open(png), np.uint16)
    wide = tmp_path / "wide.png"
    Image.fromarray(grey * 257).save(wide)  # 255 * 257 = 65535: same fractions

    np.testing.assert_allclose(read_xray(wide, size=64), read_xray(png, size=64), atol=1e-6)


def test_non_square_image_is_center_cropped(tmp_path: Path) -> None:
    bands = np.full((60, 100), 128, np.uint8)
    bands[:, :20], bands[:, 80:] = 255, 0  # only the margins the crop removes differ
    Image.fromarray(bands).save(tmp_path / "wide.png")

    np.testing.assert_allclose(read_xray(tmp_path / "wide.png", size=8), 128 / 255.0, atol=1e-6)


def test_small_image_is_upsampled_without_overshoot(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(tmp_path / "tiny.png")

    image = read_xray(tmp_path / "tiny.png", size=64)

    assert image.shape == (64, 64) and image.min() >= 0.0 and image.max() <= 1.0


@pytest.mark.parametrize("size", [0, 4, 64.5])
def test_invalid_size_is_rejected(size: float) -> None:
    with pytest.raises(ValueError, match="size"):
        read_xray(SIIM, size=size)  # type: ignore[arg-type]
