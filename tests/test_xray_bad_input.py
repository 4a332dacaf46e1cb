"""Bad chest X-ray inputs: each is one InvalidRecordError naming the file and a fix, and a
loader skips it, counts it in the report and keeps every good file."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import HTJ2KLossless

from medgan_core.data.xray import load_xray_dataset, read_xray, split_by_patient
from medgan_core.errors import ConfigError, DataFolderError, InvalidRecordError
from tests.conftest import XRAY_DICOM_FIXTURES, write_test_dicom

GREY = np.random.default_rng(7).integers(0, 256, (16, 16), dtype=np.uint8)


def _encapsulated(path: Path, transfer_syntax: str) -> Path:
    """A DICOM whose pixel data claims ``transfer_syntax`` (content: garbage)."""
    write_test_dicom(path, GREY)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _private_syntax(path: Path) -> Path:
    """A valid file whose transfer syntax UID is swapped for an unknown one of equal length."""
    write_test_dicom(path, GREY)
    data = path.read_bytes().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.3.4.5.6.7.8.9.1\x00")
    path.write_bytes(data)
    return path


def _truncated_native(path: Path) -> Path:
    write_test_dicom(path, np.zeros((64, 64), np.uint16), bits_stored=12)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])
    return path


def _truncated_jpeg_dicom(path: Path) -> Path:
    data = (XRAY_DICOM_FIXTURES / "siim_chest_cr.dcm").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _cut_before_pixel_data(path: Path) -> Path:
    """Cut inside the element just before Pixel Data: pydicom stops there without a word."""
    write_test_dicom(path, np.zeros((64, 64), np.uint16), bits_stored=12)
    data = path.read_bytes()
    path.write_bytes(data[: data.find(b"\xe0\x7f\x10\x00") - 4])
    return path


def _cut_after_file_meta(path: Path) -> Path:
    data = (XRAY_DICOM_FIXTURES / "rg1_chest_cr.dcm").read_bytes()
    path.write_bytes(data[:300])
    return path


def _fixture(name: str) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        shutil.copy(XRAY_DICOM_FIXTURES / name, path)
        return path

    return build


def _unparsable_rescale_slope(path: Path) -> Path:
    """RescaleSlope (DS) = 'one-half': pydicom says only 'could not convert string to float'."""
    write_test_dicom(path, GREY.astype(np.uint16), bits_stored=12, RescaleSlope="1.234567",
                     RescaleIntercept="0")
    element = b"\x28\x00\x53\x10DS\x08\x00"
    path.write_bytes(path.read_bytes().replace(element + b"1.234567", element + b"one-half"))
    return path


def _no_pixel_data(path: Path) -> Path:
    write_test_dicom(path, GREY)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return path


def _zero_rows(path: Path) -> Path:
    write_test_dicom(path, GREY)
    ds = pydicom.dcmread(path)
    ds.Rows = 0
    ds.save_as(path, enforce_file_format=True)
    return path


def _multi_frame(path: Path) -> Path:
    frames = np.stack([GREY, 255 - GREY])
    write_test_dicom(path, frames)
    return path


def _palette(path: Path) -> Path:
    write_test_dicom(path, GREY)
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.save_as(path, enforce_file_format=True)
    return path


def _broken_modality_lut(path: Path) -> Path:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 16])  # descriptor, but no LUT Data
    return write_test_dicom(path, GREY.astype(np.uint16), bits_stored=12,
                            ModalityLUTSequence=[item])


def _write(data: bytes) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return build


def _truncated_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# (file name, builder, words the reason must contain, words the fix must contain)
BAD_INPUTS: list[tuple[str, Callable[[Path], Path], str, str]] = [
    ("report.dcm", _write(b"Patient report, plain text, not DICOM\n" * 10), "not a DICOM file",
     "remove"),
    ("noise.dcm", _write(np.random.default_rng(2).bytes(4096)), "not a DICOM file", "remove"),
    ("cut_native.dcm", _truncated_native, "truncated", "re-copy"),
    ("cut_jpeg.dcm", _truncated_jpeg_dicom, "truncated", "re-copy"),
    ("cut_header.dcm", _cut_before_pixel_data, "truncated", "re-copy"),
    ("cut_meta.dcm", _cut_after_file_meta, "truncated", "re-copy"),
    ("ct.dcm", _fixture("CT_small.dcm"), "Modality CT", "remove it"),
    ("mr.dcm", _fixture("MR_small.dcm"), "Modality MR", "remove it"),
    ("bad_slope.dcm", _unparsable_rescale_slope, "RescaleSlope (0028,1053) 'one-half'",
     "correct RescaleSlope"),
    ("sr.dcm", _no_pixel_data, "no Pixel Data", "remove non-image"),
    ("private_ts.dcm", _private_syntax, "unknown transfer syntax", "re-export"),
    ("rows0.dcm", _zero_rows, "zero-size", "Rows and Columns"),
    ("bad_lut.dcm", _broken_modality_lut, "invalid image attributes", "Modality LUT"),
    ("cine.dcm", _multi_frame, "multi-frame", "single frame"),
    ("palette.dcm", _palette, "PALETTE", "MONOCHROME2"),
    ("empty.png", _write(b""), "empty", "re-copy"),
    ("empty.jpeg", _write(b""), "empty", "re-copy"),
    ("noise.png", _write(np.random.default_rng(3).bytes(2048)), "not a readable PNG or JPEG",
     "remove"),
    ("cut.png", _truncated_png, "truncated or corrupt", "re-copy"),
    ("notes.txt", _write(b"lung fields clear\n"), "unsupported file type", "remove"),
]


@pytest.mark.parametrize(("name", "build", "reason", "fix"), BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_invalid_record_error_naming_file_and_fix(
    tmp_path: Path, name: str, build: Callable[[Path], Path], reason: str, fix: str
) -> None:
    path = build(tmp_path / name)

    with pytest.raises(InvalidRecordError) as caught:
        read_xray(path)

    error = caught.value
    assert error.path == str(path) and str(path) in str(error)
    assert reason.lower() in error.reason.lower()
    assert fix.lower() in error.fix.lower() and "Fix:" in str(error)


def test_transfer_syntax_without_installed_decoder_names_the_package(tmp_path: Path) -> None:
    if get_decoder(HTJ2KLossless).is_available:
        pytest.skip("an HTJ2K decoder (pylibjpeg-openjpeg) is installed here")
    path = _encapsulated(tmp_path / "htj2k.dcm", HTJ2KLossless)

    with pytest.raises(InvalidRecordError) as caught:
        read_xray(path)

    assert "High-Throughput JPEG 2000" in caught.value.reason
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in caught.value.fix


def test_corrupt_jpeg_baseline_stream_is_an_invalid_record(tmp_path: Path) -> None:
    path = _encapsulated(tmp_path / "bad_jpeg.dcm", pydicom.uid.JPEGBaseline8Bit)

    with pytest.raises(InvalidRecordError, match="could not be decoded as JPEG Baseline"):
        read_xray(path)


def test_unusable_window_falls_back_to_min_max_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 10
    path = write_test_dicom(tmp_path / "w0.dcm", stored, bits_stored=12, WindowCenter=100,
                            WindowWidth=0)  # LINEAR windows need a width >= 1

    with caplog.at_level(logging.WARNING):
        image = read_xray(path, size=8)

    np.testing.assert_allclose(image, stored / 630.0, atol=1e-6)
    assert any("window unusable" in r.message for r in caplog.records)


@pytest.mark.parametrize("name, modality", [("CT_small.dcm", "CT (Computed Tomography)"),
                                            ("MR_small.dcm", "MR (Magnetic Resonance)")])
def test_real_ct_and_mr_are_refused_naming_modality_and_what_is_accepted(
    tmp_path: Path, name: str, modality: str
) -> None:
    path = shutil.copy(XRAY_DICOM_FIXTURES / name, tmp_path / name)

    with pytest.raises(InvalidRecordError) as caught:
        read_xray(path)

    assert caught.value.path == str(path)
    assert caught.value.reason == (
        f"Modality {modality} is not a chest radiograph; accepted: CR, DX, DR, RG "
        "(OT or no Modality with a warning)"
    )


@pytest.mark.parametrize("modality", ["CR", "DX", "DR", "RG"])
def test_radiograph_modalities_are_accepted_silently(
    tmp_path: Path, modality: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_test_dicom(tmp_path / "a.dcm", GREY, Modality=modality)

    with caplog.at_level(logging.WARNING):
        read_xray(path, size=16)

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("modality", ["OT", None])
def test_other_or_missing_modality_is_accepted_with_a_warning(
    tmp_path: Path, modality: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_test_dicom(tmp_path / "sc.dcm", GREY)
    if modality is None:
        ds = pydicom.dcmread(path)
        del ds.Modality
        ds.save_as(path, enforce_file_format=True)
    else:
        write_test_dicom(path, GREY, Modality=modality)

    with caplog.at_level(logging.WARNING):
        image = read_xray(path, size=16)

    np.testing.assert_allclose(image, GREY / 255.0, atol=1e-6)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: Modality {modality or '(none)'} does not say the image is a radiograph; "
        "accepted it, check that it is a chest X-ray"
    ]


def test_own_synthetic_export_reads_back_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from medgan_core.export.dicom_export import export_synthetic_images

    paths = export_synthetic_images(GREY[None] / 255.0, [0], tmp_path, ("NORMAL", "PNEUMONIA"))
    caplog.clear()

    with caplog.at_level(logging.WARNING):
        read_xray(paths[0], size=16)

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_dicom_cut_before_its_pixel_data_is_truncated_not_a_non_image(tmp_path: Path) -> None:
    path = _cut_before_pixel_data(tmp_path / "cut.dcm")

    with pytest.raises(InvalidRecordError) as caught:
        read_xray(path)

    assert "truncated" in caught.value.reason and "not an image" not in caught.value.reason
    assert "(0028,0103)" in caught.value.reason


def test_image_whose_pixel_data_is_missing_says_it_may_be_truncated(tmp_path: Path) -> None:
    path = _no_pixel_data(tmp_path / "stripped.dcm")

    with pytest.raises(InvalidRecordError) as caught:
        read_xray(path)

    assert "truncated or its pixels were stripped" in caught.value.reason
    assert caught.value.fix.startswith("re-copy or re-export it")


def test_unparsable_window_is_ignored_with_a_warning_naming_the_attribute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 10
    path = write_test_dicom(tmp_path / "w.dcm", stored, bits_stored=12, WindowCenter="300.0000",
                            WindowWidth="600")
    element = b"\x28\x00\x50\x10DS\x08\x00"
    path.write_bytes(path.read_bytes().replace(element + b"300.0000", element + b"mid-grey"))

    with caplog.at_level(logging.WARNING):
        image = read_xray(path, size=8)

    np.testing.assert_allclose(image, stored / 630.0, atol=1e-6)
    assert any("WindowCenter (0028,1050) 'mid-grey' is not a number" in r.getMessage()
               for r in caplog.records)


def test_dicom_without_suffix_is_recognised_by_its_marker(tmp_path: Path) -> None:
    path = write_test_dicom(tmp_path / "IM000001", GREY)  # PACS exports often lack ".dcm"

    np.testing.assert_allclose(read_xray(path, size=16), GREY / 255.0, atol=1e-6)


# ------------------------------------------------------------------ whole-folder loading
def _mixed_site(root: Path, xray_data_dir: Path) -> tuple[int, int]:
    """Good PNG/DICOM files plus every bad input; returns (good, bad) counts."""
    good = 0
    for name in ("NORMAL", "PNEUMONIA"):
        for png in sorted((xray_data_dir / name).glob("*.png"))[:3]:
            shutil.copy(png, root / name / png.name)
            good += 1
    write_test_dicom(root / "NORMAL" / "scan.dcm", GREY, patient_id="PACS-77")
    good += 1
    for i, (name, build, _, _) in enumerate(BAD_INPUTS):
        build(root / ("NORMAL", "PNEUMONIA")[i % 2] / name)
    (root / "NORMAL" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored, not counted
    return good, len(BAD_INPUTS)


def test_loader_keeps_good_files_and_reports_each_bad_one(tmp_path: Path,
                                                          xray_data_dir: Path) -> None:
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / name).mkdir()
    good, bad = _mixed_site(tmp_path, xray_data_dir)

    images, labels, patients, report = load_xray_dataset(tmp_path, size=32)

    assert images.shape == (good, 32, 32) and labels.shape == (good,)
    assert report.num_skipped == bad and len(report.loaded) == good
    skipped = {Path(s["path"]).name for s in report.skipped}
    assert skipped == {b[0] for b in BAD_INPUTS}
    assert all(s["fix"] for s in report.skipped)
    assert "PACS-77" in patients  # DICOM PatientID wins over the file stem
    assert report.to_dict()["class_counts"] == {"NORMAL": 4, "PNEUMONIA": 3}


def test_exact_duplicates_are_dropped_and_reported(tmp_path: Path, xray_data_dir: Path) -> None:
    png = sorted((xray_data_dir / "NORMAL").glob("*.png"))[0]
    (tmp_path / "NORMAL").mkdir()
    shutil.copy(png, tmp_path / "NORMAL" / "a.png")
    shutil.copy(png, tmp_path / "NORMAL" / "b.png")

    images, _, _, report = load_xray_dataset(tmp_path, size=16)
    kept, _, _, _ = load_xray_dataset(tmp_path, size=16, deduplicate=False)

    assert len(images) == 1 and report.skipped[0]["reason"].startswith("exact duplicate of")
    assert len(kept) == 2


def test_missing_class_folder_is_a_warning_and_no_folder_is_an_error(
    tmp_path: Path, xray_data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "NORMAL").mkdir()
    shutil.copy(sorted((xray_data_dir / "NORMAL").glob("*.png"))[0], tmp_path / "NORMAL")

    with caplog.at_level(logging.WARNING):
        images, labels, _, _ = load_xray_dataset(tmp_path, size=16)

    assert len(images) == 1 and labels.tolist() == [0]
    assert any("PNEUMONIA" in r.message for r in caplog.records)
    with pytest.raises(FileNotFoundError, match="labels_csv"):
        load_xray_dataset(tmp_path / "nowhere", size=16)


def test_folder_without_class_folders_names_it_and_the_layout(tmp_path: Path,
                                                                xray_data_dir: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    for png in sorted((xray_data_dir / "NORMAL").glob("*.png"))[:2]:
        shutil.copy(png, site / png.name)

    with pytest.raises(DataFolderError) as caught:
        load_xray_dataset(site, size=16)

    assert isinstance(caught.value, ConfigError)  # the command line prints it as one line
    assert str(caught.value) == (
        f"{site}: no class folder NORMAL/ or PNEUMONIA/ in it (it holds 2 files and no folder). "
        f"Fix: arrange the images as {site}/NORMAL/<image> and {site}/PNEUMONIA/<image> (a site "
        "may lack one class), or give the labels in a CSV (load_xray_dataset(labels_csv=...), "
        "columns path,label[,patient_id])"
    )


def test_class_folders_one_level_down_are_pointed_at(tmp_path: Path) -> None:
    (tmp_path / "export" / "train" / "PNEUMONIA").mkdir(parents=True)

    with pytest.raises(DataFolderError) as caught:
        load_xray_dataset(tmp_path / "export", size=16)

    assert f"point the site at {tmp_path / 'export' / 'train'}" in caught.value.fix


def test_class_folders_in_the_wrong_case_are_named(tmp_path: Path) -> None:
    (tmp_path / "normal").mkdir()

    with pytest.raises(DataFolderError) as caught:
        load_xray_dataset(tmp_path, size=16)

    assert "rename normal/ to NORMAL/" in caught.value.fix


def test_missing_labels_csv_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataFolderError) as caught:
        load_xray_dataset(tmp_path, labels_csv=tmp_path / "labels.csv")

    assert caught.value.path == str(tmp_path / "labels.csv")
    assert "labels CSV does not exist" in caught.value.reason


def test_site_check_on_a_folder_without_class_folders_is_one_line(tmp_path: Path, capsys) -> None:
    from medgan_cli.main import main

    (tmp_path / "images").mkdir()
    toml = tmp_path / "site.toml"
    toml.write_text('[site]\nid = "site-x"\n[data]\nmodality = "xray"\ndir = "images"\n'
                    '[privacy]\ntarget-epsilon = 8.0\ntarget-delta = 1e-5\nledger = "ledger.json"\n')

    try:
        code = main(["site", "check", "--config", str(toml)])
        err = capsys.readouterr().err
    except SystemExit as exit_:
        code, err = 1, str(exit_)

    assert code != 0 and "Traceback" not in err
    assert f"{tmp_path / 'images'}: no class folder NORMAL/ or PNEUMONIA/" in err
    assert not (tmp_path / "ledger.json").exists()


def test_labels_csv_gives_labels_patients_and_skips_bad_rows(tmp_path: Path,
                                                             xray_data_dir: Path) -> None:
    pngs = sorted((xray_data_dir / "PNEUMONIA").glob("*.png"))[:2]
    for png in pngs:
        shutil.copy(png, tmp_path / png.name)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "path,label,patient_id\n"
        f"{pngs[0].name},PNEUMONIA,H1-0001\n"
        f"{pngs[1].name},0,\n"
        "missing.png,PNEUMONIA,\n"
        f"{pngs[0].name},COVID,\n"
    )

    images, labels, patients, report = load_xray_dataset(tmp_path, size=16, labels_csv=csv_path,
                                                         deduplicate=False)

    assert labels.tolist() == [1, 0]
    assert patients[0] == "H1-0001"  # the CSV column wins
    assert patients[1].startswith("person")  # else the Kermany file-name id
    reasons = sorted(s["reason"] for s in report.skipped)
    assert reasons[0] == "file does not exist" and "unknown label 'COVID'" in reasons[1]


def test_labels_csv_without_label_column_is_rejected(tmp_path: Path) -> None:
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,diagnosis\na.png,NORMAL\n")

    with pytest.raises(InvalidRecordError, match="label"):
        load_xray_dataset(tmp_path, labels_csv=csv_path)


# ------------------------------------------------------------------ DICOM at scale
def test_wrapped_kermany_dicoms_load_like_their_pngs(kermany_dicom_site: dict) -> None:
    root, sources = kermany_dicom_site["root"], kermany_dicom_site["sources"]

    images, labels, patients, report = load_xray_dataset(root, size=64)

    assert report.num_skipped == 0 and len(images) == 40
    for image, path in zip(images, report.loaded, strict=True):
        png = sources[path]
        # MONOCHROME1 files store 255 - grey; after inversion they must match the PNG.
        np.testing.assert_allclose(image, read_xray(png, size=64), atol=1e-6)
    assert all(p.startswith("SITE-") for p in patients)  # PatientID, not the file name
    assert labels.tolist() == [0] * 20 + [1] * 20


def test_bundled_dataset_loads_and_splits_by_patient(xray_data_dir: Path) -> None:
    images, labels, patients, report = load_xray_dataset(xray_data_dir, size=64)

    # The whole deduplicated Kermany train split (data/xray/ATTRIBUTION.md).
    assert images.shape == (5190, 64, 64) and report.num_skipped == 0
    assert np.bincount(labels).tolist() == [1340, 3850] and len(set(patients)) == 2846
    groups = split_by_patient(patients, num_sites=3, seed=0)
    owners = [{patients[i] for i in g} for g in groups]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert sorted(np.concatenate(groups).tolist()) == list(range(5190))

    from_csv = load_xray_dataset(xray_data_dir, size=64,
                                 labels_csv=xray_data_dir / "MANIFEST.csv")
    np.testing.assert_array_equal(from_csv[0], images)
    assert from_csv[2] == patients
