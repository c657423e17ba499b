import numpy as np
import pytest

from fixtures import badfiles as bf
from ggt.generate.geometry import (
    GeometryConfig,
    GeometryError,
    closest_aspect,
    color_transfer,
    prepare,
    restore_framing,
)
from ggt.imaging import to_float


def psnr(a, b):
    return 10 * np.log10(1 / np.mean((a - b) ** 2))


def test_pad_square_round_trip_returns_the_lq_framing():
    lq = to_float(bf.photo("coffee", size=(300, 200)))
    sent, t = prepare(lq, GeometryConfig(size=256))
    assert sent.shape == (256, 256, 3) and t.content_box == (0, 42, 256, 171)
    assert np.allclose(sent[0, 0], 0.5)  # padding
    # A generator answering at 4x the size it was sent (as Gemini answers 1024 for 256).
    import cv2

    answer = cv2.resize(sent, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    back = restore_framing(answer, t)
    assert back.shape == lq.shape
    assert psnr(back, lq) > 24


def test_upscale_and_native_policy():
    lq = to_float(bf.photo("coffee", size=(300, 200)))
    sent, t = prepare(lq, GeometryConfig(policy="native", upscale=2))
    assert sent is lq and t.aspect == "3:2" and t.out_size == (600, 400)
    back = restore_framing(np.zeros((512, 768, 3), np.float32), t)
    assert back.shape == (400, 600, 3)


def test_answer_with_the_wrong_aspect_is_refused():
    lq = to_float(bf.photo("coffee", size=(300, 200)))
    _, t = prepare(lq, GeometryConfig(size=256))
    with pytest.raises(GeometryError, match="cannot be mapped back"):
        restore_framing(np.zeros((512, 1024, 3), np.float32), t)


def test_closest_aspect():
    assert closest_aspect(1920, 1080, GeometryConfig().aspects) == "16:9"
    assert closest_aspect(1000, 1010, GeometryConfig().aspects) == "1:1"


def test_color_transfer_undoes_a_global_cast():
    lq = to_float(bf.photo("astronaut"))
    cast = np.clip(lq * np.array([1.2, 1.0, 0.8], np.float32), 0, 1)
    fixed = color_transfer(cast, lq)
    assert psnr(fixed, lq) > psnr(cast, lq) + 3


@pytest.mark.parametrize("shape", [(64, 64), (48, 64), (80, 120)])
def test_prepare_sends_the_same_bytes_from_8_bit_and_float(shape):
    """The 8-bit fast path must not change what is sent: the bytes are part of every request key."""
    from ggt.imaging import encode_image, to_float

    rng = np.random.default_rng(0)
    lq8 = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    cfg = GeometryConfig(size=64)
    sent8, t8 = prepare(lq8, cfg)
    sentf, tf = prepare(to_float(lq8), cfg)
    assert t8 == tf and encode_image(sent8, "png") == encode_image(sentf, "png")
    assert sent8.dtype == (np.uint8 if max(shape) == 64 else np.float32)
