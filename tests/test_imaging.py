import io

import numpy as np
import pytest
from PIL import Image

from fixtures import badfiles as bf
from ggt.imaging import (
    ImageDecodeError,
    ImageLimits,
    decode_image,
    encode_image,
    plain_png_size,
    probe_passthrough_jpeg,
    read_image,
    strip_jpeg_metadata,
    to_float,
    to_uint8,
    write_bytes_atomic,
    write_image,
)


def reason_of(data: bytes, **limits) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, ImageLimits(**limits))
    return info.value.reason


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        (b"", "empty", "0 bytes"),
        (bf.truncated_jpeg(), "truncated", "truncated"),
        (b"hello, not an image\n" * 20, "not_an_image", "not a recognised image"),
        (bf.bomb_png(), "too_large", "100000x100000"),
        (bf.save(np.zeros((1, 1, 3), np.uint8), "PNG"), "too_small", "1x1"),
    ],
    ids=["zero_byte", "truncated_jpeg", "text_as_jpg", "bomb_header", "one_pixel"],
)
def test_bad_inputs_fail_with_a_specific_reason(data, reason, words):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    assert info.value.reason == reason
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_bomb_is_refused_before_decoding_any_pixel():
    # 100000^2 RGB would need 30 GB; refusing from the header alone takes microseconds and no memory.
    import tracemalloc

    tracemalloc.start()
    reason_of(bf.bomb_png())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000


def test_pixel_limit_is_configurable():
    data = bf.jpeg(bf.photo(size=(200, 100)))
    assert reason_of(data, max_pixels=19_999) == "too_large"
    assert decode_image(data, ImageLimits(max_pixels=20_000)).width == 200


def test_min_side_is_configurable():
    data = bf.jpeg(bf.photo(size=(200, 100)))
    assert reason_of(data, min_side=101) == "too_small"
    assert decode_image(data, ImageLimits(min_side=100)).height == 100


def test_sixteen_bit_rgb_png_keeps_the_high_byte_precisely():
    src = bf.photo()
    decoded = decode_image(bf.png16())
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == src.shape
    assert np.array_equal(decoded.pixels, src)  # x*257 scaled back by /257 exactly
    assert any("16-bit" in w for w in decoded.warnings)


def test_sixteen_bit_grey_png():
    decoded = decode_image(bf.png16(gray=True))
    assert decoded.pixels.shape[2] == 3
    assert np.array_equal(decoded.pixels[..., 0], bf.photo()[..., 0])
    assert np.array_equal(decoded.pixels[..., 0], decoded.pixels[..., 2])


def test_float_tiff_is_scaled_to_8_bit():
    gray = bf.photo()[..., 1].astype(np.float32) / 255.0
    data = bf.save(Image.fromarray(gray, mode="F"), "TIFF")
    decoded = decode_image(data)
    assert np.abs(decoded.pixels[..., 0].astype(int) - bf.photo()[..., 1]).max() <= 1


def test_cmyk_jpeg_becomes_rgb_close_to_the_original():
    decoded = decode_image(bf.cmyk_jpeg())
    assert decoded.mode == "CMYK" and decoded.pixels.shape == (120, 160, 3)
    assert np.abs(decoded.pixels.astype(float) - bf.photo()).mean() < 8


def test_palette_png_with_transparency_is_composited_on_the_background():
    data = bf.palette_png_with_transparency()
    white = decode_image(data, ImageLimits(background=(255, 255, 255))).pixels
    black = decode_image(data, ImageLimits(background=(0, 0, 0))).pixels
    assert white.shape == (120, 160, 3)
    assert tuple(white[0, 0]) == (255, 255, 255) and tuple(black[0, 0]) == (0, 0, 0)
    opaque = np.any(white != black, axis=2)
    assert 0 < opaque.mean() < 1  # only the transparent entries differ


def test_alpha_is_kept_on_request():
    rgba = np.dstack([bf.photo(), np.full((120, 160), 128, np.uint8)])
    decoded = decode_image(bf.save(rgba, "PNG"), ImageLimits(keep_alpha=True))
    assert decoded.pixels.shape == (120, 160, 4) and np.all(decoded.pixels[..., 3] == 128)


def test_exif_orientation_6_is_applied():
    decoded = decode_image(bf.exif_rotated_jpeg(6))
    assert (decoded.width, decoded.height) == (100, 200)
    assert decoded.exif["Orientation"] == 6
    upright = np.rot90(bf.photo(size=(200, 100)), k=-1)  # orientation 6: rotate 90 degrees clockwise
    assert np.abs(decoded.pixels.astype(float) - upright).mean() < 6


def test_animated_gif_uses_the_first_frame_with_a_warning():
    decoded = decode_image(bf.animated_gif())
    assert decoded.format == "GIF"
    assert any("3 frames" in w for w in decoded.warnings)
    assert np.abs(decoded.pixels.astype(float) - bf.photo("astronaut")).mean() < 20


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF", "PNG", "AVIF", "HEIF"])
def test_formats_decode(fmt):
    kwargs = {"quality": 95} if fmt in ("WEBP", "AVIF", "HEIF") else {}
    decoded = decode_image(bf.save(bf.photo(), fmt, **kwargs))
    assert decoded.pixels.shape == (120, 160, 3)
    assert np.abs(decoded.pixels.astype(float) - bf.photo()).mean() < 6


def test_embedded_srgb_profile_is_converted_and_noted():
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    decoded = decode_image(bf.save(bf.photo(), "PNG", icc_profile=icc))
    assert any("ICC" in w for w in decoded.warnings)
    assert np.abs(decoded.pixels.astype(int) - bf.photo()).max() <= 2


def test_garbage_icc_profile_is_ignored_not_fatal():
    decoded = decode_image(bf.save(bf.photo(), "PNG", icc_profile=b"garbage" * 20))
    assert any("ignored unusable ICC" in w for w in decoded.warnings)


def test_passthrough_probe_accepts_plain_jpeg_and_refuses_what_needs_normalising():
    probe = probe_passthrough_jpeg(bf.jpeg())
    assert probe is not None and (probe.width, probe.height) == (160, 120)
    assert probe.preview.shape == (15, 20, 3)
    assert probe_passthrough_jpeg(bf.exif_rotated_jpeg(6)) is None
    assert probe_passthrough_jpeg(bf.cmyk_jpeg()) is None
    assert probe_passthrough_jpeg(bf.save(bf.photo(), "PNG")) is None
    with pytest.raises(ImageDecodeError) as info:
        probe_passthrough_jpeg(bf.truncated_jpeg())
    assert info.value.reason == "truncated"


def test_strip_jpeg_metadata_removes_gps_and_keeps_pixels():
    data = bf.gps_jpeg()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)
    stripped = strip_jpeg_metadata(data)
    assert len(stripped) < len(data)
    im = Image.open(io.BytesIO(stripped))
    assert not im.getexif()
    assert b"PhoneMaker" not in stripped
    assert np.array_equal(np.asarray(im), np.asarray(Image.open(io.BytesIO(data))))


def test_encode_roundtrip_png_is_lossless_and_jpeg_quality_matters():
    img = bf.photo()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_image(img, "png")))), img)
    small, large = encode_image(img, "jpeg", 30), encode_image(img, "jpeg", 95)
    assert len(small) < len(large)
    assert Image.open(io.BytesIO(encode_image(img, "webp", 80))).format == "WEBP"
    with pytest.raises(ValueError, match="unknown format"):
        encode_image(img, "gif")  # type: ignore[arg-type]


def test_float_conversions_round_trip():
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(to_uint8(to_float(u8)), u8)
    assert to_uint8(np.array([-0.5, 1.5], np.float32)).tolist() == [0, 255]


def test_write_image_and_read_back(tmp_path):
    img = to_float(bf.photo())
    write_image(tmp_path / "a.png", img)
    assert np.array_equal(to_uint8(read_image(tmp_path / "a.png")), bf.photo())
    with pytest.raises(ValueError, match=r"\.gif"):
        write_image(tmp_path / "a.gif", img)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "x.bin"
    write_bytes_atomic(target, b"first")

    def boom(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError, match="disk on fire"):
        write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]


def _with_chunk(png: bytes, kind: bytes, body: bytes) -> bytes:
    """`png` with one more chunk right after IHDR (CRC correct)."""
    import struct
    import zlib

    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return png[:33] + chunk + png[33:]


def test_plain_png_size_vouches_only_for_bytes_that_are_their_pixels():
    import cv2

    img = bf.photo(size=(48, 40))
    plain = {
        "ours": encode_image(img, "png"),
        "opencv": cv2.imencode(".png", img[..., ::-1])[1].tobytes(),
        "pillow": bf.save(img, "PNG"),
        "text chunk": _with_chunk(bf.save(img, "PNG"), b"tEXt", b"Software\0vendor"),
    }
    for name, data in plain.items():
        assert plain_png_size(data) == (48, 40), name
        assert np.array_equal(decode_image(data).pixels, img), name
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    flipped = bytearray(plain["ours"])
    flipped[len(flipped) // 2] ^= 0x01
    not_plain = {
        "rgba": bf.save(np.dstack([img, np.full(img.shape[:2], 200, np.uint8)]), "PNG"),
        "grey": bf.save(img[..., 0], "PNG"),
        "16-bit": cv2.imencode(".png", img[..., ::-1].astype(np.uint16) * 257)[1].tobytes(),
        "palette": _palette_png(img),
        "icc profile": bf.save(img, "PNG", icc_profile=icc),
        "gamma": _with_chunk(plain["pillow"], b"gAMA", (45455).to_bytes(4, "big")),
        "orientation": _with_chunk(plain["pillow"], b"eXIf", b"MM\0*\0\0\0\x08"),
        "unknown critical": _with_chunk(plain["pillow"], b"ABCD", b""),
        "bit flip": bytes(flipped),
        "truncated": plain["ours"][:-20],
        "trailing bytes": plain["ours"] + b"\0",
        "jpeg": bf.save(img, "JPEG"),
        "empty": b"",
    }
    for name, data in not_plain.items():
        assert plain_png_size(data) is None, name


def _palette_png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).convert("P").save(buf, "PNG")
    return buf.getvalue()
