"""PNG / JPEG radiograph -> one grey image in [0, 1] at full resolution, via Pillow."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medgan_core.errors import InvalidRecordError

__all__ = ["RASTER_SUFFIXES", "read_raster_image"]

logger = logging.getLogger(__name__)

RASTER_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg"})

# Pillow format names accepted (the JPEG opener also returns multi-picture MPO files).
_FORMATS = ("PNG", "JPEG")
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def _to_unit(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> float64 grey in [0, 1] (1 is white)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image, dtype=np.float64) / 65535.0
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit PNGs often open as mode "I"; keep their nominal scale when it fits.
        if image.mode == "I" and values.min() >= 0 and values.max() <= 65535:
            return values / 65535.0
        low, high = float(values.min()), float(values.max())
        return (values - low) / (high - low) if high > low else np.zeros_like(values)
    if image.mode not in ("L", "1"):
        # RGB/RGBA/P/CMYK/LA -> BT.601 luma, as for colour DICOM; alpha is ignored.
        logger.debug("converting %s image to grey", image.mode)
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def read_raster_image(path: str | Path) -> np.ndarray:
    """Read a PNG or JPEG radiograph as grey levels.

    Colour images are converted with Pillow's ``convert("L")`` (BT.601 luma); 16-bit PNGs
    keep their 16-bit precision; an EXIF orientation tag is applied.

    Args:
        path: A ``.png``, ``.jpg`` or ``.jpeg`` file.

    Returns:
        A float64 ``(H, W)`` array in [0, 1], 1 being white.

    Raises:
        InvalidRecordError: an empty file, bytes that are not a PNG/JPEG, or a truncated
            or corrupt image.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) on huge images; the error variant
            # above ~179 Mpx is caught below like any other unreadable image.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=_FORMATS) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                if image.width == 0 or image.height == 0:
                    raise InvalidRecordError(
                        path, f"zero-size image ({image.width}x{image.height})",
                        "re-export the image",
                    )
                return _to_unit(image)
    except InvalidRecordError:
        raise
    except UnidentifiedImageError as err:
        raise InvalidRecordError(
            path, "not a readable PNG or JPEG image (unrecognised content)",
            "remove the file from the image folder, or re-save it as PNG/JPEG",
        ) from err
    except Exception as err:  # Pillow raises OSError/SyntaxError/ValueError on damage
        raise InvalidRecordError(
            path, f"image is truncated or corrupt ({type(err).__name__}: {err})",
            "re-copy or re-export the image",
        ) from err
