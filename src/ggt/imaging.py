"""Safe image decoding and encoding: the only place where pixels cross the file boundary.

Everything inside ggt works on float32 RGB arrays in [0, 1] (HxWx3). This module turns whatever a
phone, a camera or the web produced into that (or into 8-bit sRGB for storage), and refuses what it
must refuse with a reason that a person can act on.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps

from ggt.config import ImageLimits
from ggt.fsutil import write_bytes_atomic

# HEIC/HEIF through libheif; AVIF is native in Pillow >= 11.3.
try:
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a core dependency
    pillow_heif = None

# Pillow's own bomb check fires only after the header is parsed and only as a warning below 2x its
# limit; ggt checks its own configurable limit before any pixel is decoded instead.
Image.MAX_IMAGE_PIXELS = None
# A truncated file must fail, not silently decode into grey padding.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# PNG encoding dominates ingest and synth. fpng (MIT, a PyPI wheel) writes standard PNGs about 9x faster
# than zlib level 1 for ~15 % larger files (1.2 MP photo: 7.5 ms vs 68 ms in cv2, 350 ms in Pillow's
# default); cv2 at level 1 is the fallback for what fpng does not take (not 3/4-channel uint8).
PNG_COMPRESSION = 1
try:
    import fpng as _fpng
except ImportError:  # pragma: no cover - fpng is a core dependency; keep working without its wheel
    _fpng = None

_SRGB_PROFILE = ImageCms.createProfile("sRGB")
_EXIF_ESSENTIALS = (
    "Make",
    "Model",
    "DateTimeOriginal",
    "Orientation",
    "ExposureTime",
    "FNumber",
    "ISOSpeedRatings",
    "FocalLength",
    "Software",
    "LensModel",
)


class ImageDecodeError(Exception):
    """An input that cannot become an image. `reason` is a short stable code, str() a one-line message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason}: {self.args[0]}"


@dataclass
class DecodedImage:
    """A decoded image as 8-bit sRGB (RGB or RGBA), with what was learned and done on the way."""

    pixels: np.ndarray
    format: str
    mode: str
    width: int
    height: int
    exif: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def rgb(self) -> np.ndarray:
        return self.pixels[..., :3]


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 or uint16 array -> float32 in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) * np.float32(1.0 / 255.0)
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) * np.float32(1.0 / 65535.0)
    if pixels.dtype in (np.float32, np.float64):
        return np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False)
    raise TypeError(f"unsupported pixel dtype {pixels.dtype}")


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint8 with rounding (values outside [0, 1] are clipped)."""
    if img.dtype == np.uint8:
        return img
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _check_header(im: Image.Image, limits: ImageLimits) -> None:
    width, height = im.size
    if width * height > limits.max_pixels:
        raise ImageDecodeError(
            "too_large",
            f"{width}x{height} = {width * height:,} pixels exceeds the limit of {limits.max_pixels:,} "
            "(ingest.image.max_pixels)",
        )
    if min(width, height) < limits.min_side:
        raise ImageDecodeError(
            "too_small",
            f"{width}x{height} is below the minimum side of {limits.min_side} px (ingest.image.min_side)",
        )


def _exif_essentials(im: Image.Image) -> dict[str, Any]:
    try:
        exif = im.getexif()
    except Exception:  # a broken EXIF block must not cost the photo
        return {}
    merged: dict[int, Any] = dict(exif)
    with contextlib.suppress(Exception):
        merged.update(exif.get_ifd(ExifTags.IFD.Exif))
    out: dict[str, Any] = {}
    for tag_id, value in merged.items():
        name = ExifTags.TAGS.get(tag_id)
        if name not in _EXIF_ESSENTIALS:
            continue
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace").strip("\x00 ")
        elif not isinstance(value, str | int):
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = str(value)
        if isinstance(value, str):
            value = value.strip("\x00 ")
        out[name] = value
    return out


def _high_bit_depth(data: bytes, im: Image.Image) -> bool:
    """True for 16-bit or float colour files that Pillow would silently reduce or refuse."""
    if im.format == "PNG" and len(data) > 25:
        # IHDR is always the first chunk: bit depth at byte 24, colour type at 25.
        return data[24] == 16 and data[25] in (2, 6)
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8 and im.mode not in ("I;16", "I;16B", "I;16L", "I", "F")
    return False


def _decode_high_bit_depth_rgb(data: bytes) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageDecodeError("corrupt", "could not decode the 16-bit/float colour image")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] >= 3:
        arr = (
            np.concatenate([arr[..., 2::-1], arr[..., 3:4]], axis=2) if arr.shape[2] == 4 else arr[..., ::-1]
        )
    return _scale_to_uint8(arr)


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if arr.dtype in (np.int32, np.uint32):
        # Pillow's mode "I" for 16-bit grayscale PNG/TIFF holds 0..65535.
        return ((np.clip(arr, 0, 65535).astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        peak = float(finite.max()) if finite.size else 1.0
        # Float TIFFs are normally scene-referred in [0, 1]; larger ranges are scaled to fit.
        scale = 1.0 if peak <= 1.0 else 1.0 / peak
        return to_uint8(finite * scale)
    raise ImageDecodeError("unsupported_mode", f"unsupported sample type {arr.dtype}")


def _to_srgb(im: Image.Image, notes: list[str]) -> Image.Image:
    icc = im.info.get("icc_profile")
    if not icc:
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if im.mode in ("RGBA", "LA", "PA") else "RGB"
        if im.mode not in ("RGB", "RGBA", "CMYK", "L"):
            im = im.convert("RGBA" if out_mode == "RGBA" else "RGB")
        converted = ImageCms.profileToProfile(im, src, _SRGB_PROFILE, outputMode=out_mode)
        if converted is not None:
            notes.append(
                f"converted embedded ICC profile ({ImageCms.getProfileDescription(src).strip()}) to sRGB"
            )
            return converted
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        notes.append(f"ignored unusable ICC profile ({exc})")
    return im


def _to_8bit_rgb(im: Image.Image, limits: ImageLimits) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = _scale_to_uint8(np.asarray(im))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("1", "L", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in mode else "RGB")
    arr = np.asarray(im)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return _handle_alpha(arr, limits)
    return np.ascontiguousarray(arr)


def _handle_alpha(arr: np.ndarray, limits: ImageLimits) -> np.ndarray:
    if limits.keep_alpha:
        return np.ascontiguousarray(arr)
    alpha = arr[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(limits.background, np.float32).reshape(1, 1, 3)
    rgb = arr[..., :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
    return (rgb + 0.5).astype(np.uint8)


def decode_image(source: bytes | str | os.PathLike[str], limits: ImageLimits | None = None) -> DecodedImage:
    """Decode any supported file (or its bytes) into 8-bit sRGB, upright, alpha handled.

    Raises ImageDecodeError with a stable `reason`: empty, not_an_image, too_large, too_small, truncated,
    corrupt, unsupported_mode.
    """
    limits = limits or ImageLimits()
    data = Path(source).read_bytes() if not isinstance(source, bytes | bytearray) else bytes(source)
    if not data:
        raise ImageDecodeError("empty", "file is empty (0 bytes)")
    notes: list[str] = []
    try:
        im = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("not_an_image", "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ImageDecodeError("corrupt", f"unreadable header ({exc})") from None
    _check_header(im, limits)
    fmt = im.format or "unknown"
    mode = im.mode
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"{fmt} has {frames} frames; used the first")
    exif = _exif_essentials(im)
    high_depth = _high_bit_depth(data, im)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
    except OSError as exc:
        text = str(exc)
        reason = "truncated" if "truncated" in text or "broken data stream" in text else "corrupt"
        raise ImageDecodeError(reason, f"pixel data could not be decoded ({text})") from None
    except (SyntaxError, ValueError, struct.error, MemoryError) as exc:
        raise ImageDecodeError("corrupt", f"pixel data could not be decoded ({exc})") from None
    if _jpeg_truncated(data, fmt):
        raise ImageDecodeError("truncated", "JPEG data ends before its end-of-image marker")

    if high_depth:
        pixels = _decode_high_bit_depth_rgb(data)
        notes.append("reduced 16-bit/float colour to 8-bit")
        if pixels.shape[2] == 4:
            pixels = _handle_alpha(pixels, limits)
        pixels = _apply_orientation(pixels, exif.get("Orientation"))
    else:
        transposed = ImageOps.exif_transpose(im)
        if exif.get("Orientation", 1) not in (1, None):
            notes.append(f"applied EXIF orientation {exif['Orientation']}")
        im = transposed if transposed is not None else im
        if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            notes.append(f"reduced {mode} samples to 8-bit")
        im = _to_srgb(im, notes)
        pixels = _to_8bit_rgb(im, limits)
    height, width = pixels.shape[:2]
    return DecodedImage(
        pixels=pixels, format=fmt, mode=mode, width=width, height=height, exif=exif, warnings=notes
    )


def _apply_orientation(pixels: np.ndarray, orientation: Any) -> np.ndarray:
    ops = {2: (False, 0, True), 3: (False, 2, False), 4: (True, 0, False), 5: (True, 3, False),
           6: (False, 3, False), 7: (True, 1, False), 8: (False, 1, False)}  # fmt: skip
    if orientation not in ops:
        return pixels
    flip_ud, rot90, flip_lr = ops[orientation]
    out = np.flipud(pixels) if flip_ud else pixels
    # EXIF 5-8 are transposes; np.rot90 with k quarter turns counter-clockwise matches Pillow's exif_transpose.
    out = np.rot90(out, k=rot90) if rot90 else out
    out = np.fliplr(out) if flip_lr else out
    return np.ascontiguousarray(out)


def _jpeg_truncated(data: bytes, fmt: str) -> bool:
    # libjpeg pads a truncated scan with grey and Pillow only sometimes notices; a missing EOI is the tell.
    # Trailing bytes after EOI (camera padding, appended data) are common, so search the tail.
    return fmt in ("JPEG", "MPO") and b"\xff\xd9" not in data[-4096:]


@dataclass
class JpegProbe:
    """What ingest needs of a JPEG that can be kept as it is: size, metadata and a 1/8-scale preview."""

    width: int
    height: int
    mode: str
    exif: dict[str, Any]
    preview: np.ndarray


def probe_passthrough_jpeg(data: bytes, limits: ImageLimits | None = None) -> JpegProbe | None:
    """If `data` is a JPEG whose pixels need no normalisation (sRGB or untagged, upright, RGB or grey),
    validate it and return a preview; else None. Raises ImageDecodeError for a broken JPEG.

    libjpeg's DCT scaling still entropy-decodes every block, so a 1/8-scale decode catches the same
    corrupt and truncated streams as a full one at a fifth of the cost.
    """
    limits = limits or ImageLimits()
    if data[:3] != b"\xff\xd8\xff":
        return None
    try:
        im = Image.open(io.BytesIO(data))
    except (OSError, SyntaxError, ValueError, struct.error):
        return None  # let decode_image give the precise reason
    if im.format != "JPEG" or im.mode not in ("RGB", "L"):
        return None
    icc = im.info.get("icc_profile")
    if icc and not _is_srgb(icc):
        return None
    exif = _exif_essentials(im)
    if exif.get("Orientation", 1) not in (1, None):
        return None
    _check_header(im, limits)
    width, height = im.size
    try:
        im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
    except OSError as exc:
        text = str(exc)
        reason = "truncated" if "truncated" in text else "corrupt"
        raise ImageDecodeError(reason, f"pixel data could not be decoded ({text})") from None
    if _jpeg_truncated(data, "JPEG"):
        raise ImageDecodeError("truncated", "JPEG data ends before its end-of-image marker")
    preview = np.asarray(im.convert("RGB"))
    return JpegProbe(width=width, height=height, mode=im.mode, exif=exif, preview=preview)


def _is_srgb(icc: bytes) -> bool:
    try:
        desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except (ImageCms.PyCMSError, OSError):
        return False
    return "srgb" in desc.lower().replace(" ", "")


# APP1 (EXIF, XMP), APP13 (IPTC/Photoshop), COM, and APPn that carry no pixel semantics. Kept: APP0
# (JFIF), APP2 (ICC profile; the MPF index in APP2 is dropped), APP14 (Adobe colour transform).
_DROP_MARKERS = {0xE1, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xEB, 0xEC, 0xED, 0xEF, 0xFE}


def strip_jpeg_metadata(data: bytes) -> bytes:
    """Drop metadata segments (GPS, serial numbers, thumbnails) from a JPEG without touching its pixels."""
    if data[:2] != b"\xff\xd8":
        return data
    out = [data[:2]]
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return data  # not a marker where one must be: leave the file as it is
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is pixel data
            out.append(data[i:])
            return b"".join(out)
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        segment = data[i : i + 2 + length]
        is_mpf = marker == 0xE2 and segment[4:8] == b"MPF\x00"
        if marker not in _DROP_MARKERS and not is_mpf:
            out.append(segment)
        i += 2 + length
    return data


def read_image(path: str | os.PathLike[str], limits: ImageLimits | None = None) -> np.ndarray:
    """Read any supported image as float32 RGB in [0, 1]."""
    return to_float(decode_image(path, limits).rgb)


Format = Literal["png", "jpeg", "webp"]


def _format_for(path: str | os.PathLike[str]) -> Format:
    suffix = Path(path).suffix.lower()
    table: Mapping[str, Format] = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
    if suffix not in table:
        raise ValueError(f"cannot choose an encoder for {suffix!r}; use .png, .jpg or .webp")
    return table[suffix]


def encode_image(img: np.ndarray, fmt: Format = "png", quality: int = 95) -> bytes:
    """Encode a float [0, 1] or uint8 RGB(A) image. PNG is lossless; quality applies to JPEG and WebP."""
    pixels = to_uint8(img)
    if fmt == "png" and _fpng is not None and pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        return bytes(_fpng.from_ndarray(np.ascontiguousarray(pixels)))
    if pixels.ndim == 2:
        bgr = pixels
    elif pixels.shape[2] == 4:
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    else:
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
        ext = ".png"
    elif fmt == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        ext = ".jpg"
    elif fmt == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
        ext = ".webp"
    else:
        raise ValueError(f"unknown format {fmt!r}; expected png, jpeg or webp")
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ValueError(f"{fmt} encoding failed for an array of shape {pixels.shape}")
    return buf.tobytes()


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ancillary chunks that change the pixels `decode_image` returns or how others read them (an ICC profile,
# gamma and primaries, transparency, EXIF orientation, animation): with one of these, or a critical chunk
# other than IHDR/IDAT/IEND, the bytes do not stand for the decoded pixels. Text, time, DPI and private
# chunks (fpng marks its files with one) do not matter.
_PIXEL_PNG_CHUNKS = frozenset(
    {b"iCCP", b"gAMA", b"cHRM", b"sBIT", b"tRNS", b"eXIf", b"acTL", b"fcTL", b"fdAT"}
)
_CRITICAL_PNG_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND"})


def plain_png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when `data` is a PNG whose bytes stand for its pixels as `decode_image` reads them
    (8-bit RGB, not interlaced, no chunk that changes the pixels, every CRC intact, IEND last), else None.

    Such a file can be sent or kept as it is instead of being decoded and encoded again (~30 ms for a
    1024x1024 photo). The CRCs catch a damaged file; a damaged deflate stream with good CRCs is left to
    whoever decodes it.
    """
    import zlib

    if not data.startswith(_PNG_SIGNATURE):
        return None
    pos, size, view = len(_PNG_SIGNATURE), None, memoryview(data)
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = bytes(view[pos + 4 : pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data) or kind in _PIXEL_PNG_CHUNKS:
            return None
        if kind[:1].isupper() and kind not in _CRITICAL_PNG_CHUNKS:
            return None
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(view[pos + 4 : end]) != crc:
            return None
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, pos + 8)
            if (depth, colour, interlace) != (8, 2, 0):
                return None
            size = (int(width), int(height))
        elif kind == b"IEND":
            return size if end + 4 == len(data) else None
        pos = end + 4
    return None


def decode_png_fast(data: bytes) -> np.ndarray:
    """Decode a PNG that ggt wrote itself (8-bit RGB, no metadata) to uint8 RGB, without the safety net."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ImageDecodeError("corrupt", "stored PNG could not be decoded")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike[str], img: np.ndarray, quality: int = 95) -> None:
    """Atomically write an image; the format follows the file suffix (.png, .jpg/.jpeg, .webp)."""
    write_bytes_atomic(path, encode_image(img, _format_for(path), quality))
