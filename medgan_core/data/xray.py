"""Chest X-ray ingestion: DICOM, PNG or JPEG files -> square grey images in [0, 1].

Every image goes through the same steps: decode to displayed grey levels at full
resolution (DICOM: :mod:`medgan_core.data.dicom_reader`; PNG/JPEG:
:mod:`medgan_core.data.raster_reader`), center-crop to a square, area-resize with Pillow.
Windowing happens before resizing because it is non-linear: averaging raw detector
values and then windowing would not give the image a radiologist sees.

:func:`load_xray_dataset` reads a whole site; one bad file is skipped and reported in the
:class:`~medgan_core.data.report.DataReport`, never fatal.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medgan_core.data.dicom_reader import is_dicom_file, read_dicom_image
from medgan_core.data.raster_reader import RASTER_SUFFIXES, read_raster_image
from medgan_core.data.report import DataReport
from medgan_core.data.splits import split_by_patient
from medgan_core.errors import DataFolderError, InvalidRecordError

__all__ = [
    "DICOM_SUFFIXES",
    "load_xray_dataset",
    "patient_id_from_filename",
    "read_xray",
    "split_by_patient",
]

logger = logging.getLogger(__name__)

DICOM_SUFFIXES: frozenset[str] = frozenset({".dcm", ".dicom"})
_PROGRESS_EVERY = 500

# Kermany et al. (2018) file names: ``person1003_virus_1685.jpeg`` (pneumonia),
# ``IM-0115-0001.jpeg`` and ``NORMAL2-IM-1345-0001.jpeg`` (normal). ``NORMAL2-IM-n`` and
# ``IM-n`` are different acquisition batches, so the prefix is kept in the id.
_KERMANY_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^((?:NORMAL\d*-)?IM-\d+)-", re.IGNORECASE),
)


def patient_id_from_filename(name: str | Path) -> str | None:
    """The patient id encoded in a Kermany chest X-ray file name, if any.

    Args:
        name: A file name or path; only the last component is used.

    Returns:
        ``"person1003"`` for ``person1003_virus_1685.jpeg``, ``"IM-0115"`` for
        ``IM-0115-0001.jpeg``, ``"NORMAL2-IM-1345"`` for ``NORMAL2-IM-1345-0001.png``;
        ``None`` when the name follows neither pattern.
    """
    base = Path(name).name
    for pattern in _KERMANY_PATTERNS:
        match = pattern.match(base)
        if match:
            return match.group(1)
    return None


def _fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Center-crop to the shorter side, then resize to ``size`` x ``size``.

    Cropping (not padding or stretching) keeps anatomy proportions and avoids feeding the
    GAN black bars; a chest radiograph's lateral margins carry little information.
    Downsampling uses Pillow's BOX filter (exact area averaging, no overshoot);
    upsampling of smaller images uses bilinear interpolation.
    """
    height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(image[top : top + side, left : left + side], dtype=np.float32)
    if side != size:
        method = Image.Resampling.BOX if side > size else Image.Resampling.BILINEAR
        square = np.asarray(Image.fromarray(square).resize((size, size), method), np.float32)
    return np.clip(square, 0.0, 1.0)


def _read_any(path: Path) -> tuple[np.ndarray, str | None]:
    """Dispatch on the suffix; files without a known suffix are sniffed for ``DICM``."""
    if not path.is_file():
        raise InvalidRecordError(path, "file does not exist", "check the path or the CSV entry")
    if not os.access(path, os.R_OK):
        raise InvalidRecordError(path, "file is not readable (permission denied)",
                                 "grant read permission to the user running the node")
    if path.stat().st_size == 0:
        raise InvalidRecordError(path, "file is empty (0 bytes)", "re-copy or re-export it")
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return read_raster_image(path), None
    if suffix in DICOM_SUFFIXES or is_dicom_file(path):
        return read_dicom_image(path)
    raise InvalidRecordError(
        path, f"unsupported file type {suffix or '(no suffix)'!r}; not DICOM, PNG or JPEG",
        "remove it from the image folder or convert it to PNG/DICOM",
    )


def _check_size(size: int) -> None:
    if int(size) != size or size < 8:
        raise ValueError(f"size={size!r} must be an integer >= 8 (64 and 128 are usual)")


def read_xray(path: str | Path, *, size: int = 64) -> np.ndarray:
    """Read one chest radiograph as a square grey image.

    DICOM (``.dcm``/``.dicom``, or any file with the ``DICM`` marker) is decoded with
    pydicom, including JPEG Baseline and other compressed transfer syntaxes a plugin is
    installed for; Modality LUT, VOI LUT/window and MONOCHROME1 are applied (see
    :mod:`medgan_core.data.dicom_reader`; multi-frame DICOM is rejected, colour DICOM is
    converted to luminance). PNG/JPEG are read with Pillow and converted to grey.
    Non-square images are center-cropped to a square before resizing.

    Args:
        path: The image file.
        size: Output side in pixels (64 by default, 128 for the larger models).

    Returns:
        float32 array ``(size, size)`` in [0, 1], 1 being white (bone), lungs dark.

    Raises:
        InvalidRecordError: the file is not a usable single image; the message names the
            file, the reason and the fix.
        ValueError: ``size`` is not an integer >= 8.
    """
    _check_size(size)
    image, _ = _read_any(Path(path))
    return _fit_square(image, size)


@dataclass(frozen=True)
class _Entry:
    path: Path
    label: int
    patient_id: str | None = None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}" if count else f"no {noun}"


def _no_class_folder(root: Path, classes: tuple[str, ...]) -> DataFolderError:
    """What is in a folder that has none of the class folders, and what to do about it."""
    expected = " or ".join(f"{c}/" for c in classes)
    if not root.is_dir():
        return DataFolderError(
            root, "the X-ray image folder does not exist or is not a directory",
            f"point the site at the folder that holds {expected} (data-root of the run config, "
            "[data] dir of a site config), or give the labels in a CSV (labels_csv=)",
        )
    children = sorted(root.iterdir())
    folders = [c for c in children if c.is_dir() and not c.name.startswith(".")]
    files = [c for c in children if c.is_file() and not c.name.startswith(".")]
    layout = " and ".join(f"{root}/{c}/<image>" for c in classes)
    fix = (f"arrange the images as {layout} (a site may lack one class), or give the labels in a "
           "CSV (load_xray_dataset(labels_csv=...), columns path,label[,patient_id])")
    by_lower = {c.lower(): c for c in classes}
    renames = [f"rename {f.name}/ to {by_lower[f.name.lower()]}/" for f in folders if f.name.lower() in by_lower]
    nested = [f for f in folders if any((f / c).is_dir() for c in classes)]
    if renames:
        fix = "folder names are case-sensitive: " + ", ".join(renames)
    elif nested:
        fix = f"point the site at {nested[0]}, which holds the class folders"
    return DataFolderError(
        root, f"no class folder {expected} in it (it holds {_plural(len(files), 'file')} and "
        f"{_plural(len(folders), 'folder')})", fix,
    )


def _entries_from_folders(root: Path, classes: tuple[str, ...]) -> list[_Entry]:
    found = [c for c in classes if (root / c).is_dir()]
    if not found:
        raise _no_class_folder(root, classes)
    entries: list[_Entry] = []
    for label, name in enumerate(classes):
        folder = root / name
        if name not in found:
            # A hospital with no pneumonia cases is a legitimate (non-IID) federated site.
            logger.warning("%s: class folder missing; no %s images at this site", folder, name)
            continue
        for path in sorted(folder.rglob("*")):
            # Hidden files: OS metadata (.DS_Store) and in-flight atomic writes (.x.tmp).
            hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
            if path.is_file() and not hidden:
                entries.append(_Entry(path, label))
    return entries


def _parse_label(value: str, classes: tuple[str, ...]) -> int | None:
    value = value.strip()
    if value in classes:
        return classes.index(value)
    if value.isdigit() and int(value) < len(classes):
        return int(value)
    return None


def _entries_from_csv(
    root: Path, labels_csv: Path, classes: tuple[str, ...], report: DataReport
) -> list[_Entry]:
    if not labels_csv.is_file():
        raise DataFolderError(labels_csv, "labels CSV does not exist",
                              "check the path, or label the images with class folders instead")
    with open(labels_csv, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "label"} - set(reader.fieldnames or [])
        if missing:
            raise InvalidRecordError(
                labels_csv, f"labels CSV lacks column(s) {sorted(missing)}",
                "give a header row with columns path,label[,patient_id]",
            )
        rows = list(reader)
    entries: list[_Entry] = []
    for line, row in enumerate(rows, start=2):
        path = Path(row["path"] or "")
        path = path if path.is_absolute() else root / path
        label = _parse_label(row["label"] or "", classes)
        if label is None:
            report.add_skipped(InvalidRecordError(
                path, f"unknown label {row['label']!r} on line {line} of {labels_csv}",
                f"use one of {list(classes)} or its index",
            ))
            continue
        entries.append(_Entry(path, label, (row.get("patient_id") or "").strip() or None))
    return entries


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_xray_dataset(
    root: str | Path,
    *,
    size: int = 64,
    labels_csv: str | Path | None = None,
    classes: tuple[str, ...] = ("NORMAL", "PNEUMONIA"),
    deduplicate: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[str], DataReport]:
    """Read every chest radiograph of one site.

    Labels come from class folders (``root/<CLASS>/**``, hidden files ignored) or, when
    ``labels_csv`` is given, from a CSV with columns ``path,label[,patient_id]`` (paths
    relative to ``root``; labels are class names or indices). A patient id is taken from
    the CSV, else the DICOM ``PatientID``, else the Kermany file-name pattern
    (:func:`patient_id_from_filename`), else the file stem. Anonymised DICOMs that share a
    placeholder ``PatientID`` are grouped as one patient: conservative for splits.

    Exact duplicate files (same bytes) are dropped and reported as skipped: a DP guarantee
    is per record, and a duplicated image would count twice toward the model.

    Args:
        root: The site's image folder.
        size: Output side in pixels.
        labels_csv: Optional CSV of labels instead of class folders.
        classes: Class names; a label is its index here.
        deduplicate: Drop byte-identical files after the first (in sorted path order).

    Returns:
        ``(images, labels, patient_ids, report)``: float32 ``(N, size, size)`` in [0, 1],
        int64 ``(N,)``, one id per image, and the report of loaded/skipped files. ``N`` may
        be 0; the report says why.

    Raises:
        DataFolderError: ``root`` does not exist or has none of the class folders (folder
            mode), or ``labels_csv`` does not exist; the message names the folder or file,
            what it holds and the expected layout. It is a ``ConfigError`` (one line on the
            command line) and a ``FileNotFoundError``.
        InvalidRecordError: ``labels_csv`` lacks the ``path``/``label`` columns.
        ValueError: invalid ``size`` or ``classes``.
    """
    _check_size(size)
    classes = tuple(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes={classes!r} must be non-empty and unique")
    root = Path(root)
    report = DataReport()
    entries = (
        _entries_from_csv(root, Path(labels_csv), classes, report)
        if labels_csv is not None
        else _entries_from_folders(root, classes)
    )
    images: list[np.ndarray] = []
    labels: list[int] = []
    patient_ids: list[str] = []
    first_seen: dict[str, Path] = {}
    for count, entry in enumerate(entries, start=1):
        try:
            image, dicom_pid = _read_any(entry.path)
            if deduplicate:
                digest = _file_digest(entry.path)
                if digest in first_seen:
                    raise InvalidRecordError(
                        entry.path, f"exact duplicate of {first_seen[digest]}",
                        "none needed; the copy is dropped so the image counts once",
                    )
                first_seen[digest] = entry.path
        except InvalidRecordError as err:
            logger.info("skipping %s", err)
            report.add_skipped(err)
        else:
            images.append(_fit_square(image, size))
            labels.append(entry.label)
            patient_ids.append(
                entry.patient_id or dicom_pid
                or patient_id_from_filename(entry.path.name) or entry.path.stem
            )
            report.add_loaded(entry.path, [classes[entry.label]])
        if count % _PROGRESS_EVERY == 0:
            logger.info("x-ray files read: %d/%d (%d skipped)", count, len(entries),
                        report.num_skipped)
    # One loud line when anything was dropped; the report lists every file and why.
    level = logging.WARNING if report.num_skipped else logging.INFO
    logger.log(level, "x-ray dataset %s: %s", root, report.summary().splitlines()[0])
    stacked = np.stack(images) if images else np.zeros((0, size, size), np.float32)
    return stacked, np.asarray(labels, dtype=np.int64), patient_ids, report
