# ======================================================================================
# BEGIN x-ray fixtures (chest X-ray ingestion / DICOM export)
# ======================================================================================
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_REPO = Path(__file__).resolve().parents[1]
XRAY_DATA_DIR = _REPO / "data" / "xray" / "kermany"
XRAY_DICOM_FIXTURES = _REPO / "tests" / "fixtures" / "dicom"


def write_test_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    patient_id: str | None = None,
    transfer_syntax: str | None = None,
    **attributes: object,
) -> Path:
    """Write a minimal single-frame DICOM with ``pixels``; extra keyword = DICOM keyword."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    ds.Modality = "CR"
    ds.PatientName = "Test^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if patient_id is not None:
        ds.PatientID = patient_id
    bits = bits_stored or pixels.dtype.itemsize * 8
    ds.set_pixel_data(pixels, photometric, bits)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def make_xray_dicom() -> Callable[..., Path]:
    """The builder :func:`write_test_dicom`, for tests that need odd DICOMs in tmp_path."""
    return write_test_dicom


@pytest.fixture(scope="session")
def xray_data_dir() -> Path:
    """The bundled Kermany subset: ``<dir>/{NORMAL,PNEUMONIA}/*.png`` at 128x128."""
    return XRAY_DATA_DIR


@pytest.fixture(scope="session")
def kermany_dicom_site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Bundled PNGs wrapped as DICOM, like a hospital PACS export.

    20 images per class; every other file is MONOCHROME1 with inverted stored values (so it
    must read back identical to its PNG), and PatientID is ``SITE-<kermany id>``, which
    differs from the file-name id so the test can tell which source the loader used.
    """
    from medgan_core.data.xray import patient_id_from_filename

    root = tmp_path_factory.mktemp("kermany_dicom")
    sources: dict[str, Path] = {}
    for name in ("NORMAL", "PNEUMONIA"):
        for i, png in enumerate(sorted((XRAY_DATA_DIR / name).glob("*.png"))[:20]):
            grey = np.asarray(Image.open(png).convert("L"))
            mono1 = i % 2 == 1
            out = root / name / f"{png.stem}.dcm"
            write_test_dicom(
                out, (255 - grey) if mono1 else grey,
                photometric="MONOCHROME1" if mono1 else "MONOCHROME2",
                patient_id=f"SITE-{patient_id_from_filename(png.name)}",
            )
            sources[str(out)] = png
    return {"root": root, "sources": sources}


# ======================================================================================
# END x-ray fixtures
# ======================================================================================


# ---- core fixtures (federation, privacy) ----------------------------------------


@pytest.fixture
def flower_identity():
    """Flower stamps every Message with the identity of the running task; a test acting
    as the ServerApp sets it as the simulation engine does."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    yield
    TaskIdentity.run_id = TaskIdentity.task_id = TaskIdentity.node_id = None


@pytest.fixture
def small_run(tmp_path):
    """The bundled three-site configuration with tiny local work."""
    from simulations.federation import resolve_run_config

    return resolve_run_config({"run-dir": str(tmp_path / "run"), "local-steps": 3, "batch-size": 32,
                               "num-server-rounds": 2})
# ---- end core fixtures ------------------------------------------------------------
