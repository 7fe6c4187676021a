"""cohorts.images on real radiographs: pydicom-data CR chest (MONOCHROME1, JPEG 2000) and NIH PNGs."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from cohorts.images import ImageError, image_info, load_image

NIH_PNG = "nih-chestxray14-sample/images/00000001_000.png"


def _testdata(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return Path(path)


@pytest.fixture(scope="module")
def cr_raw() -> np.ndarray:
    """Stored values of the CR chest PA (MONOCHROME1, 15-bit), uncompressed predecessor of RG1_J2KI."""
    return pydicom.dcmread(_testdata("RG1_UNCI.dcm")).pixel_array.astype(np.float64)


@pytest.fixture(scope="module")
def cr_loaded() -> np.ndarray:
    return load_image(_testdata("RG1_UNCI.dcm"))


@pytest.fixture()
def nih_png(shared_data: Path) -> Path:
    return shared_data / NIH_PNG


# ------------------------------------------------------------------ DICOM grey-scale pipeline
def test_cr_monochrome1_window_then_inverted(cr_raw: np.ndarray, cr_loaded: np.ndarray) -> None:
    ds = pydicom.dcmread(_testdata("RG1_UNCI.dcm"), stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (15000.0, 30000.0)
    assert cr_loaded.shape == cr_raw.shape and cr_loaded.dtype == np.float32
    # DICOM LINEAR window (PS3.3 C.11.2.1.2.1) on [0, 1], then inverted because MONOCHROME1
    c, w = 15000.0 - 0.5, 30000.0 - 1.0
    expected = 1.0 - np.clip((cr_raw - c) / w + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(cr_loaded, expected, atol=1e-5)
    # the densest stored value (MONOCHROME1: high = dark) is the darkest output and vice versa
    assert cr_loaded.flat[np.argmax(cr_raw)] == cr_loaded.min()
    assert cr_loaded.flat[np.argmin(cr_raw)] == cr_loaded.max()


def test_cr_inversion_is_monotone_decreasing(cr_raw: np.ndarray, cr_loaded: np.ndarray) -> None:
    order = np.argsort(cr_raw.ravel(), kind="stable")
    out_sorted = cr_loaded.ravel()[order].astype(np.float64)
    assert np.all(np.diff(out_sorted) <= 1e-7)
    assert np.corrcoef(cr_raw.ravel()[::97], cr_loaded.ravel()[::97])[0, 1] < -0.999


def test_cr_without_window_uses_min_max_and_inverts(tmp_path: Path, cr_raw: np.ndarray) -> None:
    ds = pydicom.dcmread(_testdata("RG1_UNCI.dcm"))
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(tmp_path / "nowindow.dcm")
    out = load_image(tmp_path / "nowindow.dcm")
    assert out.flat[np.argmax(cr_raw)] == 0.0  # raw max -> black
    assert out.flat[np.argmin(cr_raw)] == 1.0  # raw min -> white
    expected = 1.0 - (cr_raw - cr_raw.min()) / (cr_raw.max() - cr_raw.min())
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_cr_window_changes_output(tmp_path: Path, cr_raw: np.ndarray, cr_loaded: np.ndarray) -> None:
    ds = pydicom.dcmread(_testdata("RG1_UNCI.dcm"))
    ds.WindowCenter, ds.WindowWidth = 12000, 8000  # narrower window: more contrast, saturation
    ds.save_as(tmp_path / "narrow.dcm")
    out = load_image(tmp_path / "narrow.dcm")
    expected = 1.0 - np.clip((cr_raw - 11999.5) / 7999.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert (out == 0).mean() > 0.01 and (out == 1).mean() > 0.01
    assert out.std() > cr_loaded.std()


def test_rescale_slope_intercept_applied_before_window(tmp_path: Path, cr_raw: np.ndarray) -> None:
    ds = pydicom.dcmread(_testdata("RG1_UNCI.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000  # window is in rescaled units
    ds.WindowCenter, ds.WindowWidth = 2 * 15000 - 1000, 2 * 30000
    ds.save_as(tmp_path / "rescaled.dcm")
    out = load_image(tmp_path / "rescaled.dcm")
    values = 2 * cr_raw - 1000
    expected = 1.0 - np.clip((values - (29000 - 0.5)) / (60000 - 1) + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_invalid_window_falls_back_to_min_max_with_a_warning(tmp_path: Path, cr_raw: np.ndarray,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    ds = pydicom.dcmread(_testdata("RG1_UNCI.dcm"))
    ds.WindowWidth = 0   # invalid for a LINEAR window; the pixels are still fine
    ds.save_as(tmp_path / "zero_width.dcm")
    out = load_image(tmp_path / "zero_width.dcm")
    expected = 1.0 - (cr_raw - cr_raw.min()) / (cr_raw.max() - cr_raw.min())
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert "ignoring invalid VOI LUT/window" in caplog.text and "zero_width.dcm" in caplog.text


def test_voi_lut_sequence_applied(tmp_path: Path, cr_raw: np.ndarray) -> None:
    # a non-linear (square-root) VOI LUT on the real CR image; it takes precedence over the window
    ds = pydicom.dcmread(_testdata("RG1_UNCI.dcm"))
    lut = np.round(65535 * np.sqrt(np.arange(32768) / 32767)).astype(np.uint16)
    item = pydicom.Dataset()
    item.add_new("LUTDescriptor", "US", [32768, 0, 16])
    item.add_new("LUTData", "OW", lut.astype("<u2").tobytes())
    ds.VOILUTSequence = pydicom.Sequence([item])
    ds.save_as(tmp_path / "lut.dcm")
    out = load_image(tmp_path / "lut.dcm")
    expected = 1.0 - lut[cr_raw.astype(np.int64)] / 65535.0  # LUT, then MONOCHROME1 inversion
    np.testing.assert_allclose(out, expected, atol=1e-6)
    window_only = load_image(_testdata("RG1_UNCI.dcm"))
    assert np.abs(out - window_only).mean() > 0.05


def test_voi_lut_with_offset_first_mapped_value() -> None:
    path = _testdata("vlut_04.dcm")  # 8-bit LUT, 256 entries
    ds = pydicom.dcmread(path)
    item = ds.VOILUTSequence[0]
    n_entries, first_map, _ = item.LUTDescriptor
    lut = np.asarray(item.LUTData, dtype=np.float64)
    idx = np.clip(ds.pixel_array.astype(np.int64) - first_map, 0, n_entries - 1)
    np.testing.assert_allclose(load_image(path), (lut[idx] - lut.min()) / (lut.max() - lut.min()), atol=1e-6)


# ------------------------------------------------------------------ compressed transfer syntaxes
def test_jpeg2000_lossless_equals_uncompressed() -> None:
    j2k, unc = _testdata("RG1_J2KR.dcm"), _testdata("RG1_UNCR.dcm")
    assert pydicom.dcmread(j2k, stop_before_pixels=True).file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    np.testing.assert_array_equal(load_image(j2k), load_image(unc))


def test_jpeg2000_lossy_equals_its_decompressed_twin_and_is_close_to_lossless(cr_loaded: np.ndarray) -> None:
    # RG1_UNCI is the decompressed RG1_J2KI (10:1 lossy), so they match exactly;
    # the lossless RG1_J2KR differs from it only by the compression error.
    np.testing.assert_array_equal(load_image(_testdata("RG1_J2KI.dcm")), cr_loaded)
    diff = np.abs(load_image(_testdata("RG1_J2KR.dcm")) - cr_loaded)
    assert diff.mean() < 0.005 and diff.max() < 0.02


def test_jpeg_ls_lossless_equals_uncompressed() -> None:
    np.testing.assert_array_equal(load_image(_testdata("MR_small_jpeg_ls_lossless.dcm")), load_image(_testdata("MR_small.dcm")))


def test_rle_and_jpeg_baseline_colour_decoded_to_grey() -> None:
    rle = load_image(_testdata("SC_rgb_rle.dcm"))
    plain = load_image(_testdata("SC_rgb.dcm"))
    np.testing.assert_array_equal(rle, plain)
    jpeg = load_image(_testdata("SC_rgb_jpeg_dcmtk.dcm"))
    assert jpeg.shape == plain.shape and np.abs(jpeg - plain).mean() < 0.03


def test_dicom_header_info() -> None:
    info = image_info(_testdata("RG1_J2KR.dcm"))
    assert info == {
        "format": "DICOM", "width": 1841, "height": 1955, "bit_depth": 15, "photometric": "MONOCHROME1",
        "manufacturer": "Philips Medical Systems", "modality": "CR", "view_position": "PA",
        "transfer_syntax": "JPEG 2000 Image Compression (Lossless Only)", "frames": 1,
    }


# ------------------------------------------------------------------ PNG / JPG
def test_png_8bit_equals_pixels_over_255(nih_png: Path) -> None:
    raw = np.asarray(Image.open(nih_png))
    assert raw.dtype == np.uint8 and raw.ndim == 2
    out = load_image(nih_png)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, raw.astype(np.float32) / 255.0)
    assert image_info(nih_png) == {"format": "PNG", "width": 512, "height": 512, "bit_depth": 8, "photometric": "L"}


def test_png_16bit_keeps_precision(tmp_path: Path, cr_raw: np.ndarray) -> None:
    values = (cr_raw * 2).astype(np.uint16)  # the real 15-bit radiograph as a 16-bit PNG
    Image.fromarray(values).save(tmp_path / "cr16.png")
    assert image_info(tmp_path / "cr16.png")["bit_depth"] == 16
    out = load_image(tmp_path / "cr16.png")
    np.testing.assert_allclose(out, values / 65535.0, atol=1e-7)
    assert len(np.unique(out)) > 4096  # far more grey levels than 8 bits could hold


def test_rgb_rgba_palette_converted_to_grey(tmp_path: Path, nih_png: Path) -> None:
    grey = Image.open(nih_png)
    expected = np.asarray(grey).astype(np.float32) / 255.0
    grey.convert("RGB").save(tmp_path / "rgb.png")
    grey.convert("RGBA").save(tmp_path / "rgba.png")
    grey.convert("P").save(tmp_path / "pal.png")
    for name in ("rgb.png", "rgba.png", "pal.png"):
        out = load_image(tmp_path / name)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=1.5 / 255, err_msg=name)


def test_jpeg_close_to_png(tmp_path: Path, nih_png: Path) -> None:
    Image.open(nih_png).save(tmp_path / "x.jpg", quality=95)
    diff = np.abs(load_image(tmp_path / "x.jpg") - load_image(nih_png))
    assert diff.mean() < 0.01


# ------------------------------------------------------------------ bad files
def _bad(path: Path, fragment: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert fragment in info.value.reason, info.value.reason
    assert isinstance(info.value, ValueError) and str(path) in str(info.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    _bad(tmp_path / "nope.png", "file not found")
    (tmp_path / "zero.png").write_bytes(b"")
    _bad(tmp_path / "zero.png", "empty file (0 bytes)")
    (tmp_path / "zero.dcm").write_bytes(b"")
    _bad(tmp_path / "zero.dcm", "empty file (0 bytes)")
    _bad(tmp_path, "not a regular file")


def test_truncated_png(tmp_path: Path, nih_png: Path) -> None:
    data = nih_png.read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    _bad(tmp_path / "half.png", "truncated or corrupt PNG file")
    (tmp_path / "head.png").write_bytes(data[:20])
    _bad(tmp_path / "head.png", "truncated or corrupt PNG file")


def test_text_files_named_as_images(tmp_path: Path) -> None:
    for name in ("notes.png", "notes.jpg", "notes.dcm", "notes"):
        (tmp_path / name).write_text("Patient 12: chest film pending\n")
        _bad(tmp_path / name, "not an image: looks like plain text")
        with pytest.raises(ImageError) as err:           # the file's content is never echoed into errors or logs
            load_image(tmp_path / name)
        assert "Patient" not in err.value.reason


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_testdata("RG1_UNCI.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    _bad(tmp_path / "nopix.dcm", "DICOM has no pixel data")
    assert image_info(tmp_path / "nopix.dcm")["photometric"] == "MONOCHROME1"  # header still readable


def test_truncated_dicoms(tmp_path: Path) -> None:
    unc = _testdata("RG1_UNCI.dcm").read_bytes()
    (tmp_path / "unc.dcm").write_bytes(unc[: len(unc) // 2])
    _bad(tmp_path / "unc.dcm", "pixel data cannot be decoded (Explicit VR Little Endian): The number of bytes of pixel data is less than expected")
    j2k = _testdata("RG1_J2KR.dcm").read_bytes()
    (tmp_path / "j2k.dcm").write_bytes(j2k[: len(j2k) // 2])
    _bad(tmp_path / "j2k.dcm", "truncated or corrupt DICOM file")
    (tmp_path / "head.dcm").write_bytes(unc[:300])
    _bad(tmp_path / "head.dcm", "truncated or corrupt DICOM file")


def test_undecodable_and_unsupported_compression(tmp_path: Path) -> None:
    # a real 12-bit JPEG Extended file none of the installed plugins can decode
    _bad(_testdata("JPEG-lossy.dcm"), "pixel data cannot be decoded (JPEG Extended (Process 2 and 4))")
    ds = pydicom.dcmread(_testdata("RG1_J2KR.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    ds.save_as(tmp_path / "mpeg.dcm", enforce_file_format=False)
    _bad(tmp_path / "mpeg.dcm", "unsupported compression 'MPEG2 Main Profile / Main Level'")
    # JPEG 2000 label on a JPEG-LS stream: the decoder fails and says why
    ds = pydicom.dcmread(_testdata("RG1_J2KR.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLSLossless
    ds.save_as(tmp_path / "mislabelled.dcm", enforce_file_format=False)
    _bad(tmp_path / "mislabelled.dcm", "pixel data cannot be decoded (JPEG-LS Lossless Image Compression)")


def test_missing_decoder_plugin_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class _Unavailable:
        is_available = False
        missing_dependencies = ["openjpeg - requires pylibjpeg-openjpeg"]

    monkeypatch.setattr("cohorts.images.get_decoder", lambda uid: _Unavailable())
    _bad(_testdata("RG1_J2KR.dcm"), "no installed decoder for compression 'JPEG 2000 Image Compression (Lossless Only)' (openjpeg")


def test_multiframe_and_constant_images(tmp_path: Path) -> None:
    _bad(_testdata("emri_small_jpeg_ls_lossless.dcm"), "multi-frame DICOM (10 frames)")
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(tmp_path / "flat.png")
    _bad(tmp_path / "flat.png", "constant image (every pixel is 7)")


def test_image_error_survives_pickling(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "gone.png")
    copy = pickle.loads(pickle.dumps(info.value))   # e.g. returned from a Dask worker process
    assert (copy.path, copy.reason, str(copy)) == (info.value.path, info.value.reason, str(info.value))


def test_32bit_integer_image_with_16bit_values(tmp_path: Path, cr_raw: np.ndarray) -> None:
    Image.fromarray(cr_raw.astype(np.int32)).save(tmp_path / "cr.tif")
    np.testing.assert_allclose(load_image(tmp_path / "cr.tif"), cr_raw / 65535.0, atol=1e-7)
    Image.fromarray((cr_raw * 10).astype(np.int32)).save(tmp_path / "big.tif")
    _bad(tmp_path / "big.tif", "32-bit integer TIFF values outside 0..65535")
