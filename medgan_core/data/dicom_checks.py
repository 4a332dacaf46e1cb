"""Checks that a DICOM file is a whole chest radiograph before its pixels are decoded.

Each check names the file, the attribute and what is accepted, so one bad file in a
hospital export is skipped with a reason instead of failing deep inside pydicom.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import FileDataset
from pydicom.tag import Tag

from medgan_core.errors import InvalidRecordError

__all__ = [
    "RADIOGRAPH_MODALITIES",
    "check_modality",
    "check_numbers",
    "cut_short",
    "first_number",
    "has_pixel_data",
    "sop_class_name",
]

logger = logging.getLogger(__name__)

# Modality (0008,0060) of a projection radiograph: computed and digital radiography, and
# digitised film (RG). "DR" is no DICOM defined term, but some vendors write it for DX.
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR", "RG")
# "OT" (other) is what secondary captures and scanned films often carry, and what this
# project's synthetic export writes; an image without Modality is rare but not impossible.
_UNSPECIFIED_MODALITIES = ("OT", "")
_MODALITY_NAMES = {
    "CT": "Computed Tomography", "MR": "Magnetic Resonance", "US": "Ultrasound",
    "NM": "Nuclear Medicine", "PT": "Positron Emission Tomography", "MG": "Mammography",
    "XA": "X-Ray Angiography", "RF": "Radio Fluoroscopy", "IO": "Intra-oral Radiography",
    "PX": "Panoramic X-Ray", "ES": "Endoscopy", "OP": "Ophthalmic Photography",
    "XC": "External-camera Photography", "SM": "Slide Microscopy", "SR": "Structured Report",
    "SEG": "Segmentation", "RTIMAGE": "RT Image", "RTDOSE": "RT Dose", "PR": "Presentation State",
}
# Numeric attributes the decoder and the Modality LUT use. pydicom keeps an unparsable
# DS/IS value as text with only a warning, and the first arithmetic on it then fails far
# away ("could not convert string to float"); they are checked up front to name them.
_NUMERIC_ATTRIBUTES = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                       "PixelRepresentation", "NumberOfFrames", "RescaleSlope", "RescaleIntercept")


def has_pixel_data(ds: FileDataset) -> bool:
    """Whether the dataset holds pixels (integer, float or double float)."""
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def cut_short(path: Path, ds: FileDataset) -> str | None:
    """How the file ends early, when its bytes show it; ``None`` when they do not.

    pydicom stops without a warning when the file ends inside a data element's header or
    value, and keeps the elements read so far. Bytes after the end of the last element it
    kept are the start of an element that was cut off.
    """
    size = path.stat().st_size
    if len(ds) == 0:
        return f"it ends after the file meta information ({size} bytes), before any data element"
    tag = max(ds.keys())
    last = ds.get_item(tag)  # still raw right after reading: it knows where its value lies
    tell, length = getattr(last, "value_tell", None), getattr(last, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF or size <= tell + length:
        return None
    end = tell + length
    with open(path, "rb") as handle:
        handle.seek(end)
        head = handle.read(4)
    if len(head) == 4 and ds.original_encoding[1]:  # (implicit VR, little endian)
        cut = Tag(int.from_bytes(head[:2], "little"), int.from_bytes(head[2:], "little"))
        where = f"inside element {cut} {keyword_for_tag(cut) or '(private)'}"
    else:
        where = f"inside the element after {tag} {keyword_for_tag(tag) or '(private)'}"
    return f"it ends {where}, {size - end} bytes into it, before the Pixel Data (7FE0,0010)"


def sop_class_name(ds: FileDataset) -> tuple[str, bool]:
    """The SOP class (from the dataset, else the file meta) and whether it stores an image."""
    uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    if uid is None:
        return "unknown", False
    name = getattr(uid, "name", str(uid))
    return name, "Image Storage" in name


def check_modality(path: Path, ds: FileDataset) -> None:
    """Refuse images of other modalities (CT, MR, ...); an unspecific one gets a warning."""
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in RADIOGRAPH_MODALITIES:
        return
    accepted = f"{', '.join(RADIOGRAPH_MODALITIES)} (OT or no Modality with a warning)"
    if modality not in _UNSPECIFIED_MODALITIES:
        named = f"{modality} ({_MODALITY_NAMES[modality]})" if modality in _MODALITY_NAMES else modality
        raise InvalidRecordError(
            path, f"Modality {named} is not a chest radiograph; accepted: {accepted}",
            "remove it from the image folder: an X-ray site trains on chest radiographs only",
        )
    # This project's own synthetic export says so (Synthetic Data = YES); no need to warn.
    synthetic = str(ds.get("SyntheticData", "") or "").upper() == "YES"
    logger.log(logging.DEBUG if synthetic else logging.WARNING,
               "%s: Modality %s does not say the image is a radiograph; accepted it, check that it "
               "is a chest X-ray", path, modality or "(none)")


def _not_a_number(ds: FileDataset, keyword: str) -> str:
    value = ds[keyword].value
    text = value.decode("latin-1", "replace").strip() if isinstance(value, bytes) else str(value)
    return f"{keyword} {Tag(tag_for_keyword(keyword))} {text!r} is not a number"


def check_numbers(path: Path, ds: FileDataset) -> None:
    """Every numeric attribute the decoder and the Modality LUT read is one number.

    Raises:
        InvalidRecordError: naming the attribute, its tag and the stored text.
    """
    for keyword in _NUMERIC_ATTRIBUTES:
        if keyword not in ds or ds[keyword].value in (None, ""):
            continue
        try:
            float(ds[keyword].value)
        except (TypeError, ValueError) as err:
            raise InvalidRecordError(
                path, f"attribute {_not_a_number(ds, keyword)}",
                f"correct {keyword} in the source system, or re-export the file",
            ) from err


def first_number(ds: FileDataset, keyword: str) -> float:
    """The first value of a numeric attribute (a window may list several presets).

    Raises:
        ValueError: the value is not a number; the message names the attribute and its tag.
    """
    value = ds[keyword].value
    try:
        return float(value[0] if ds[keyword].VM > 1 else value)
    except (TypeError, ValueError) as err:
        raise ValueError(_not_a_number(ds, keyword)) from err
