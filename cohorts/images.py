"""Read chest radiographs (PNG/JPG 8/16-bit, DICOM) into one grey-level convention.

Every loader returns an ``(H, W)`` float32 array in ``[0, 1]`` where higher means brighter on a
standard radiograph display, i.e. denser tissue (bone white, air black):

* PNG/JPG/other Pillow formats: 8-bit values / 255, 16-bit values / 65535; RGB, RGBA, palette
  and grey+alpha images are converted to grey (ITU-R 601-2 luma, alpha ignored).
* DICOM (pydicom, compressed transfer syntaxes through the installed pixel-data plugins):
  modality LUT or rescale slope/intercept, then the first VOI LUT or window centre/width when
  present (scaled by the output range of that transform), otherwise (or when it is invalid, with
  a logged warning) the image's own min-max;
  MONOCHROME1 is inverted so that bone is white.

Files that cannot be used raise :class:`ImageError` with a reason a user can act on; callers
(e.g. the cohort runner) record ``str(err)`` in ``errors.csv`` and go on.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder

log = logging.getLogger(__name__)

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ""})
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
)
# Pillow modes whose values are grey levels, with the full-scale value of each.
_GREY_FULL_SCALE = {"1": 1.0, "L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0}
# Pillow modes converted to 8-bit grey ("L") before scaling.
_TO_GREY = frozenset({"RGB", "RGBA", "RGBX", "P", "PA", "LA", "La", "CMYK", "YCbCr", "LAB", "HSV"})
# Bits per sample reported by image_info for Pillow modes.
_PILLOW_BITS = {"1": 1, "L": 8, "P": 8, "LA": 8, "RGB": 8, "RGBA": 8, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}


class ImageError(ValueError):
    """An image file that cannot be read; ``reason`` is a human-readable explanation."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:   # picklable across worker processes
        return type(self), (self.path, self.reason)


def sniff_format(path: str | Path) -> str:
    """Guess the container from the first bytes: 'DICOM', 'PNG', 'JPEG', ... or 'unknown'."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return "DICOM"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "unknown"


def _describe_content(path: Path) -> str:
    """What a non-image file looks like (text, HTML, JSON or binary), never quoting its content."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        start = text.lstrip().lower()
        kind = ("HTML (an error page saved instead of the image?)" if start.startswith(("<!doctype", "<html"))
                else "JSON or XML" if start.startswith(("{", "[", "<?xml")) else "plain text")
        return f"looks like {kind}"
    return "unrecognised binary content (no known image signature)"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(path, "file not found (check the path column of the manifest and the dataset root)")
    if not path.is_file():
        raise ImageError(path, "not a regular file (a directory or special file)")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file (0 bytes): the download or copy is incomplete")


def _is_dicom(path: Path) -> bool:
    fmt = sniff_format(path)
    return fmt == "DICOM" or (fmt == "unknown" and path.suffix.lower() in DICOM_SUFFIXES)


def _scaled(arr: np.ndarray, lo: float, hi: float, path: Path) -> np.ndarray:
    """Map ``[lo, hi]`` to ``[0, 1]`` (clipped), as float32."""
    if not hi > lo:
        raise ImageError(path, f"display range is empty (low={lo}, high={hi}); the window or LUT is invalid")
    out = (np.asarray(arr, dtype=np.float64) - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _check_not_constant(arr: np.ndarray, path: Path) -> None:
    if arr.size == 0:
        raise ImageError(path, f"image has no pixels (shape {arr.shape})")
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        raise ImageError(path, f"constant image (every pixel is {lo}): blank or failed export")


# ---------------------------------------------------------------- Pillow (PNG, JPG, ...)
@contextmanager
def _pillow_errors(path: Path) -> Iterator[None]:
    """Translate Pillow's exceptions for unreadable files into :class:`ImageError`."""
    try:
        yield
    except UnidentifiedImageError:
        magic = sniff_format(path)
        what = f"{magic} header found but Pillow cannot parse it" if magic != "unknown" else _describe_content(path)
        raise ImageError(path, f"not an image: {what} (suffix '{path.suffix}')") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt streams
        raise ImageError(path, f"truncated or corrupt {sniff_format(path)} file: {exc}") from None


def _load_pillow(path: Path) -> np.ndarray:
    with _pillow_errors(path), Image.open(path) as img:
        img.load()
        fmt, mode = img.format, img.mode
        if mode in _TO_GREY:
            img, mode = img.convert("L"), "L"
        arr = np.asarray(img)
    if mode not in _GREY_FULL_SCALE:
        raise ImageError(path, f"unsupported {fmt} pixel mode '{mode}' (expected 8/16-bit grey or RGB)")
    _check_not_constant(arr, path)
    if mode == "I" and (arr.min() < 0 or arr.max() > 65535):   # 32-bit integer images: 16-bit data only
        raise ImageError(path, f"32-bit integer {fmt} values outside 0..65535 (min {arr.min()}, max {arr.max()})")
    return (arr.astype(np.float32) / np.float32(_GREY_FULL_SCALE[mode])).astype(np.float32)


# ---------------------------------------------------------------- DICOM
def _read_dicom(path: Path, *, stop_before_pixels: bool = False) -> pydicom.Dataset:
    """Read a DICOM dataset; raise ImageError unless it has an image header (Rows, Columns)."""
    has_preamble = sniff_format(path) == "DICOM"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=not has_preamble, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as exc:
        raise ImageError(path, f"not a DICOM file: {exc}") from None
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ImageError(path, f"truncated or corrupt DICOM file: {exc}") from None
    if ds.get("Rows") is None or ds.get("Columns") is None:
        if has_preamble:
            raise ImageError(path, "truncated or corrupt DICOM file: no image attributes could be read (Rows and Columns missing)")
        raise ImageError(path, f"not an image: {_describe_content(path)} (suffix '{path.suffix}')")
    return ds


def _decode_dicom(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageError(path, "DICOM has no pixel data (a header-only, report or structured-report object)")
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax is not None and tsyntax.is_compressed:
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError:
            raise ImageError(path, f"unsupported compression '{tsyntax.name}' ({tsyntax}): no pydicom decoder exists") from None
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies)
            raise ImageError(path, f"no installed decoder for compression '{tsyntax.name}' ({missing})")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(path, f"multi-frame DICOM ({frames} frames); expected a single radiograph")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as exc:  # plugins raise RuntimeError/ValueError/... for bad streams
        codec = tsyntax.name if tsyntax is not None else "unknown transfer syntax"
        first = str(exc).strip().splitlines()[-1].strip()
        raise ImageError(path, f"pixel data cannot be decoded ({codec}): {first}") from None
    return arr


def _voi_lut_item(ds: pydicom.Dataset) -> pydicom.Dataset | None:
    """The first complete VOI LUT Sequence item (what ``apply_voi_lut`` prefers), if any."""
    items = ds.get("VOILUTSequence")
    if items and items[0].get("LUTDescriptor") is not None and items[0].get("LUTData") is not None:
        return items[0]
    return None


def _voi_range(ds: pydicom.Dataset, lut_item: pydicom.Dataset | None) -> tuple[float, float]:
    """Output range of the VOI transform ``apply_voi_lut`` applies to ``ds`` (LUT or window)."""
    if lut_item is not None:  # every LUT entry
        n_entries, first_map, _ = lut_item.LUTDescriptor
        probe = np.arange(first_map, first_map + (n_entries or 65536))
    else:  # windowing clips (linear) or saturates (sigmoid) to its output range
        probe = np.array([-1e15, 1e15])
    with np.errstate(over="ignore"):
        out = np.asarray(apply_voi_lut(probe, ds), dtype=np.float64)
    return float(out.min()), float(out.max())


def _apply_voi(values: np.ndarray, ds: pydicom.Dataset, path: Path) -> tuple[np.ndarray, float, float]:
    """VOI LUT or window and its output range; the image's own range when absent or invalid.

    An unusable VOI (e.g. window width 0) does not make the pixels unusable: it is logged and the
    image falls back to min-max scaling, like an image without VOI.
    """
    lut_item = _voi_lut_item(ds)
    if lut_item is not None or (ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lo, hi = _voi_range(ds, lut_item)
                if hi > lo:
                    return apply_voi_lut(values, ds), lo, hi
                reason = f"empty output range [{lo}, {hi}]"
        except (ValueError, NotImplementedError, AttributeError, TypeError, IndexError) as exc:
            reason = str(exc)
        log.warning("%s: ignoring invalid VOI LUT/window (%s); using the image's min-max instead", path, reason)
    return values, float(values.min()), float(values.max())


def _dicom_to_grey(arr: np.ndarray, ds: pydicom.Dataset, path: Path) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    _check_not_constant(arr, path)
    full_scale = float(2 ** int(ds.get("BitsStored", 8)) - 1)
    if photometric == "PALETTE COLOR":  # LUT output is uint8 or uint16 full scale
        arr = apply_color_lut(arr, ds)
        full_scale = float(np.iinfo(arr.dtype).max)
    if arr.ndim == 3:  # colour (RGB after pydicom's YBR conversion) -> grey, no grey-scale pipeline
        grey = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return _scaled(grey, 0.0, full_scale, path)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(path, f"unsupported photometric interpretation '{photometric}' for a 2-D image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = apply_modality_lut(arr, ds)
    except (ValueError, NotImplementedError, AttributeError, TypeError, IndexError) as exc:
        raise ImageError(path, f"invalid modality LUT or rescale in the DICOM header: {exc}") from None
    values, lo, hi = _apply_voi(values, ds, path)
    out = _scaled(values, lo, hi, path)
    if photometric == "MONOCHROME1":
        out = np.float32(1.0) - out
    return out


def _load_dicom(path: Path) -> np.ndarray:
    ds = _read_dicom(path)
    arr = _decode_dicom(ds, path)
    return _dicom_to_grey(arr, ds, path)


# ---------------------------------------------------------------- public API
def load_image(path: str | Path) -> np.ndarray:
    """Load a radiograph as an ``(H, W)`` float32 array in ``[0, 1]`` (higher = denser/brighter).

    PNG/JPG (8- or 16-bit, RGB/palette converted to grey) via Pillow; DICOM via pydicom with
    rescale/modality LUT, VOI LUT or window, and MONOCHROME1 inversion. Raises
    :class:`ImageError` for missing, empty, truncated, non-image, pixel-less, undecodable,
    multi-frame or constant files.
    """
    path = Path(path)
    _check_file(path)
    if _is_dicom(path):
        return _load_dicom(path)
    return _load_pillow(path)


def image_info(path: str | Path) -> dict[str, Any]:
    """Header facts without decoding pixels: format, width, height, bit depth, photometric/mode.

    DICOM adds manufacturer, modality, view position, transfer syntax and frame count
    (``None`` where the header lacks them). Raises :class:`ImageError` like :func:`load_image`.
    """
    path = Path(path)
    _check_file(path)
    if _is_dicom(path):
        ds = _read_dicom(path, stop_before_pixels=True)
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        return {
            "format": "DICOM",
            "width": ds.get("Columns"),
            "height": ds.get("Rows"),
            "bit_depth": ds.get("BitsStored"),
            "photometric": ds.get("PhotometricInterpretation"),
            "manufacturer": ds.get("Manufacturer"),
            "modality": ds.get("Modality"),
            "view_position": ds.get("ViewPosition") or None,
            "transfer_syntax": tsyntax.name if tsyntax is not None else None,
            "frames": int(ds.get("NumberOfFrames", 1) or 1),
        }
    with _pillow_errors(path), Image.open(path) as img:
        return {
            "format": img.format,
            "width": img.width,
            "height": img.height,
            "bit_depth": _PILLOW_BITS.get(img.mode),
            "photometric": img.mode,
        }
