"""DICOM radiograph -> one grey image in [0, 1] at full resolution, as a viewer would show it.

The display pipeline of PS3.4 N.2 is followed for grey images: stored values -> Modality
LUT (``RescaleSlope``/``RescaleIntercept`` or a Modality LUT Sequence) -> VOI LUT (a VOI
LUT Sequence, else ``WindowCenter``/``WindowWidth``) -> presentation (``MONOCHROME1`` is
inverted so that, as in ``MONOCHROME2``, 1.0 is white). The output range of the VOI step
is the *range of the transform*, not of this image, so a window keeps its meaning: a
dense image stays bright after windowing instead of being stretched.

Without any VOI information the image is scaled to [0, 1] by:

* ``BitsStored <= 8`` (and no Modality LUT): the stored range 0..2**BitsStored - 1, exactly
  as an 8-bit PNG; secondary captures of radiographs are stored like that.
* otherwise: the image's own min..max, as viewers auto-window. Detectors seldom fill a
  16-bit container, so scaling by the nominal bit depth would give near-black images.

Decisions documented in :func:`read_dicom_image`: only radiograph modalities are read,
multi-frame objects are rejected, colour (RGB / YBR) images are converted to luminance with
a logged note.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import UID

from medgan_core.data.dicom_checks import (
    check_modality,
    check_numbers,
    cut_short,
    first_number,
    has_pixel_data,
    sop_class_name,
)
from medgan_core.errors import InvalidRecordError

__all__ = ["read_dicom_image", "is_dicom_file"]

logger = logging.getLogger(__name__)

# ITU-R BT.601 luma weights: the same weights Pillow's ``convert("L")`` uses, so an RGB
# DICOM and the same picture as an RGB JPEG give the same grey image.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])

# Extra packages that give pydicom a decoder, by transfer syntax UID prefix (JPEG 2000,
# HTJ2K, JPEG-LS, JPEG 1 processes, RLE). pydicom's own `missing_dependencies` text is added.
_J2K = "pip install pylibjpeg pylibjpeg-openjpeg"
_LIBJPEG = "pip install pylibjpeg pylibjpeg-libjpeg"
_DECODER_PACKAGES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.1.2.4.9", _J2K),
    ("1.2.840.10008.1.2.4.20", _J2K),
    ("1.2.840.10008.1.2.4.8", _LIBJPEG),
    ("1.2.840.10008.1.2.4.5", _LIBJPEG),
    ("1.2.840.10008.1.2.4.70", _LIBJPEG),
    ("1.2.840.10008.1.2.5", "pip install pylibjpeg pylibjpeg-rle"),
)
_CONVERT_HINT = (
    "convert the file to an uncompressed transfer syntax "
    "(e.g. `gdcmconv --raw in.dcm out.dcm` or `dcmdjpeg in.dcm out.dcm`)"
)


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` starts with the DICOM Part 10 preamble and ``DICM`` marker."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _parse(path: Path) -> FileDataset:
    """Read the dataset; a file that is not DICOM or ends early is an invalid record."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise InvalidRecordError(
            path,
            f"not a DICOM file ({err})",
            "remove it from the image folder; if it is a DICOM without the 128-byte "
            "preamble, re-save it with pydicom.dcmread(path, force=True).save_as(path, "
            "enforce_file_format=True)",
        ) from err
    except Exception as err:  # pydicom raises OSError/EOFError/struct.error/... on damage
        raise InvalidRecordError(
            path, f"DICOM file is truncated or corrupt ({type(err).__name__}: {err})",
            "re-copy or re-export the file from the source system",
        ) from err
    # pydicom drops an encapsulated Pixel Data element cut off by end-of-file with only a
    # warning; keep that evidence so "truncated" is reported instead of "no pixel data".
    truncated = [str(w.message) for w in caught if "End of file" in str(w.message)]
    if truncated:
        raise InvalidRecordError(
            path, f"DICOM file is truncated ({truncated[0]})",
            "re-copy or re-export the file from the source system",
        )
    if not has_pixel_data(ds):
        cut = cut_short(path, ds)
        if cut:
            raise InvalidRecordError(path, f"DICOM file is truncated: {cut}",
                                     "re-copy or re-export the file from the source system")
    return ds


def _check_structure(path: Path, ds: FileDataset) -> None:
    """Reject datasets that are not one 2-D image before spending time decoding them."""
    if not has_pixel_data(ds):
        sop, is_image = sop_class_name(ds)
        if is_image or "Rows" in ds:
            raise InvalidRecordError(
                path, f"DICOM has no Pixel Data (7FE0,0010) although it describes an image (SOP "
                f"class {sop}): the file is truncated or its pixels were stripped",
                "re-copy or re-export it from the source system; remove non-image objects "
                "(reports, presentation states) from the image folder",
            )
        raise InvalidRecordError(
            path, f"DICOM has no Pixel Data (7FE0,0010); SOP class {sop} is not an image",
            "remove non-image objects (reports, presentation states) from the image folder",
        )
    check_modality(path, ds)
    check_numbers(path, ds)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows == 0 or cols == 0:
        raise InvalidRecordError(
            path, f"zero-size image (Rows={rows}, Columns={cols})",
            "re-export the image; Rows and Columns must both be positive",
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        # Which frame of a cine, tomosynthesis or dual-energy object is "the" radiograph is
        # ambiguous; silently taking frame 0 could train on a scout or a soft-tissue image.
        raise InvalidRecordError(
            path,
            f"multi-frame DICOM ({frames} frames); which frame is the radiograph is ambiguous",
            "export the single frame you want as its own single-frame DICOM",
        )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith("PALETTE") or photometric == "ARGB":
        raise InvalidRecordError(
            path, f"photometric interpretation {photometric} is not a radiograph encoding",
            "re-export the image as MONOCHROME2",
        )


def _decoder_fix(tsyntax: UID, missing: list[str]) -> str:
    pip = next((cmd for prefix, cmd in _DECODER_PACKAGES if tsyntax.startswith(prefix)), None)
    head = pip or "install a pydicom pixel decoder plugin"
    tail = f" ({'; '.join(missing)})" if missing else ""
    return f"{head}{tail}, or {_CONVERT_HINT}"


def _check_native_length(path: Path, ds: FileDataset) -> None:
    """Uncompressed pixel data shorter than Rows x Columns x samples means a cut-off file."""
    allocated = int(ds.get("BitsAllocated", 8) or 8)
    if "PixelData" not in ds or allocated == 1:  # 1-bit data is bit-packed; pydicom checks it
        return
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
    expected *= (allocated + 7) // 8
    actual = len(ds.PixelData)
    if actual < expected:
        raise InvalidRecordError(
            path, f"DICOM file is truncated: Pixel Data holds {actual} of {expected} bytes",
            "re-copy or re-export the file from the source system",
        )


def _decode(path: Path, ds: FileDataset) -> np.ndarray:
    """Decode the pixels; a missing decoder is reported with the package that provides it."""
    tsyntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    label = f"{tsyntax.name} ({tsyntax})" if tsyntax.name != str(tsyntax) else str(tsyntax)
    if not tsyntax.is_transfer_syntax:
        # Private or future syntaxes: pydicom cannot even tell whether they are compressed.
        raise InvalidRecordError(
            path, f"unknown transfer syntax {label}; no pixel decoder exists for it",
            "re-export it from the source system in a standard transfer syntax such as "
            "Explicit VR Little Endian (1.2.840.10008.1.2.1)",
        )
    if tsyntax.is_compressed:
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError as err:
            raise InvalidRecordError(
                path, f"no pixel decoder exists for transfer syntax {label}",
                _decoder_fix(tsyntax, []),
            ) from err
        if not decoder.is_available:
            raise InvalidRecordError(
                path, f"no pixel decoder installed for transfer syntax {label}",
                _decoder_fix(tsyntax, list(decoder.missing_dependencies)),
            )
    else:
        _check_native_length(path, ds)
    try:
        return np.asarray(ds.pixel_array)
    except Exception as err:  # decoders raise many types on corrupt data; one file only
        raise InvalidRecordError(
            path, f"pixel data could not be decoded as {label} "
            f"({type(err).__name__}: {err})",
            "the file is truncated or corrupt; re-copy or re-export it from the source system",
        ) from err


def _voi_output_range(ds: FileDataset) -> tuple[float, float] | None:
    """The output range of the VOI transform pydicom's ``apply_voi_lut`` will apply, if any.

    Found by pushing probe values through the same pydicom functions, so every LUT
    function (LINEAR, LINEAR_EXACT, SIGMOID, LUT data of any depth) is covered without
    re-implementing its range rules.
    """
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        entries, first = int(seq[0].LUTDescriptor[0]) or 2**16, int(seq[0].LUTDescriptor[1])
        out = apply_voi_lut(np.arange(first, first + entries, dtype=np.int64), ds)
        return float(out.min()), float(out.max())
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = first_number(ds, "WindowCenter"), first_number(ds, "WindowWidth")
        # Ten widths either side saturate LINEAR windows and SIGMOID to within 1e-17.
        probe = np.array([center - 10 * abs(width) - 1, center + 10 * abs(width) + 1])
        out = apply_voi_lut(probe, ds)
        return float(out.min()), float(out.max())
    return None


def _grey_to_unit(path: Path, ds: FileDataset, stored: np.ndarray) -> np.ndarray:
    """Modality LUT -> VOI LUT -> [0, 1], with MONOCHROME1 inverted."""
    values = apply_modality_lut(stored, ds)
    # An identity rescale (slope 1, intercept 0) leaves stored values meaningful as such.
    has_modality_lut = bool(ds.get("ModalityLUTSequence")) or (
        float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    ) != (1.0, 0.0)
    scaled: np.ndarray | None = None
    try:
        voi_range = _voi_output_range(ds)
        if voi_range is not None and voi_range[1] > voi_range[0]:
            if ds.get("VOILUTSequence"):
                # LUTs are indexed by integers; rounding avoids pydicom's float warning.
                values = np.rint(values).astype(np.int64)
            voi = apply_voi_lut(values, ds).astype(np.float64)
            scaled = (voi - voi_range[0]) / (voi_range[1] - voi_range[0])
    except (ValueError, NotImplementedError, TypeError, IndexError) as err:
        # A broken window is a metadata defect, not a broken image: scale as if it were absent.
        logger.warning("%s: VOI LUT/window unusable (%s); ignoring it", path, err)
        scaled = None
    if scaled is None:
        values = values.astype(np.float64)
        bits = int(ds.get("BitsStored", 8) or 8)
        if bits <= 8 and not has_modality_lut:
            signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
            low = -(2 ** (bits - 1)) if signed else 0
            high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        else:
            low, high = float(values.min()), float(values.max())
        if high <= low:
            logger.warning("%s: constant image (all pixels %s); returning zeros", path, low)
            scaled = np.zeros_like(values)
        else:
            scaled = (values - low) / (high - low)
    scaled = np.clip(scaled, 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # MONOCHROME1: the minimum value is displayed white (PS3.3 C.7.6.3.1.2).
        scaled = 1.0 - scaled
    return scaled


def _colour_to_unit(path: Path, ds: FileDataset, rgb: np.ndarray) -> np.ndarray:
    """RGB (pydicom already converted YBR to RGB) -> BT.601 luminance in [0, 1]."""
    bits = int(ds.get("BitsStored", 8) or 8)
    rgb = rgb.astype(np.float64) / (2**bits - 1)
    chroma = float(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).mean())
    if chroma > 2.0 / 255.0:
        logger.warning(
            "%s: colour DICOM with real colour content (mean chroma %.3f); burned-in coloured "
            "annotations will remain in the grey image", path, chroma,
        )
    logger.info("%s: %s DICOM converted to grey (BT.601 luminance)", path,
                ds.get("PhotometricInterpretation", "colour"))
    return np.clip(rgb @ _LUMA_WEIGHTS, 0.0, 1.0)


def read_dicom_image(path: str | Path) -> tuple[np.ndarray, str | None]:
    """Read one single-frame DICOM image as displayed grey levels.

    Decisions:
        * Only radiographs are read: Modality CR, DX, DR (a vendor spelling of DX) or RG;
          OT and a missing Modality are accepted with a warning (secondary captures,
          scanned films); CT, MR and every other modality are refused.
        * A file whose Pixel Data is cut off, or that ends before it, is truncated, even
          when pydicom reads it without complaint.
        * Multi-frame objects (``NumberOfFrames > 1``) are rejected: which frame is the
          radiograph (cine, tomosynthesis, dual-energy) is ambiguous.
        * Colour images (``RGB``, ``YBR_*``; e.g. radiographs exported as screen captures)
          are accepted and converted to BT.601 luminance, the same conversion Pillow uses
          for colour JPEG/PNG; an INFO note is logged per file and a WARNING when the
          image has real colour content (coloured annotations survive as grey marks).
          ``PALETTE COLOR`` is rejected.

    Args:
        path: A DICOM Part 10 file.

    Returns:
        ``(image, patient_id)``: a float64 ``(Rows, Columns)`` array in [0, 1] where 1 is
        white, and the dataset's ``PatientID`` (``None`` when absent or empty).

    Raises:
        InvalidRecordError: not DICOM, truncated, no pixel data, another modality than a
            radiograph, a numeric attribute that is not a number (named), zero size,
            multi-frame, palette colour, a transfer syntax with no installed decoder, or
            attribute values pydicom cannot apply (every failure of one file is this error, so a loader can
            skip the file and go on).
    """
    path = Path(path)
    ds = _parse(path)
    try:
        return _to_image(path, ds)
    except InvalidRecordError:
        raise
    except Exception as err:  # malformed attribute values surface deep inside pydicom
        raise InvalidRecordError(
            path, f"invalid image attributes ({type(err).__name__}: {err})",
            "check the Image Pixel, Modality LUT and VOI LUT attributes, or re-export the file",
        ) from err


def _to_image(path: Path, ds: FileDataset) -> tuple[np.ndarray, str | None]:
    _check_structure(path, ds)
    pixels = _decode(path, ds)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3 and pixels.ndim == 3 and pixels.shape[-1] == 3:
        image = _colour_to_unit(path, ds, pixels)
    elif samples == 1 and pixels.ndim == 2:
        image = _grey_to_unit(path, ds, pixels)
    else:
        raise InvalidRecordError(
            path, f"unexpected pixel layout {pixels.shape} with SamplesPerPixel={samples}",
            "re-export the image as a single-frame MONOCHROME2 DICOM",
        )
    patient_id = str(ds.get("PatientID", "") or "").strip() or None
    return image, patient_id
