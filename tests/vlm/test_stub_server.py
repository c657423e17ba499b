"""The stub server itself, for the parts the VLM tests do not reach (image routes, fault rates)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from fixtures.stubs import FAULT_KINDS, Fault, StubServer, decode_image_bytes, png_bytes

KEY = "stub-test-key-123456"


def _img(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([x / max(w - 1, 1), y / max(h - 1, 1), np.zeros_like(x)], axis=-1)


def _gemini_image_call(stub: StubServer, img: np.ndarray):
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=stub.url, timeout=5000))
    try:
        return client.models.generate_content(
            model="gemini-image-test",
            contents=[
                types.Part.from_bytes(data=png_bytes(img), mime_type="image/png"),
                "Restore this photo.",
            ],
            config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
        )
    finally:
        client.close()


def _inline_images(response) -> list[bytes]:
    parts = response.candidates[0].content.parts or []
    return [p.inline_data.data for p in parts if p.inline_data is not None]


def test_gemini_image_route_echoes_the_input_and_records_it(stub_server: StubServer) -> None:
    response = _gemini_image_call(stub_server, _img(40, 30))
    [data] = _inline_images(response)
    assert decode_image_bytes(data).shape == (30, 40, 3)
    req = stub_server.last("gemini.generate")
    assert req.wants_image and req.model == "gemini-image-test" and req.texts == ["Restore this photo."]
    assert req.images[0].size == (40, 30)
    assert response.usage_metadata.prompt_token_count == 123


@pytest.mark.parametrize("kind", ["corrupt_image", "wrong_size", "text_only"])
def test_gemini_image_faults(stub_server: StubServer, kind: str) -> None:
    stub_server.push_fault(kind)
    response = _gemini_image_call(stub_server, _img(40, 30))
    images = _inline_images(response)
    if kind == "text_only":
        assert images == [] and "description" in response.text
    elif kind == "corrupt_image":
        with pytest.raises(Exception):  # noqa: B017 - whatever Pillow raises for garbage
            decode_image_bytes(images[0])
    else:
        assert decode_image_bytes(images[0]).shape == (15, 20, 3)
    assert stub_server.last().fault == kind


def _openai_client(stub: StubServer):
    from openai import OpenAI

    return OpenAI(api_key=KEY, base_url=stub.openai_url, max_retries=0, timeout=5)


def test_openai_images_edit_multipart(stub_server: StubServer) -> None:
    client = _openai_client(stub_server)
    files = [
        ("a.png", io.BytesIO(png_bytes(_img(20, 10))), "image/png"),
        ("b.png", png_bytes(_img(8, 6)), "image/png"),
    ]
    result = client.images.edit(model="gpt-image-test", prompt="Restore.", image=files)
    req = stub_server.last("openai.images_edit")
    assert req.path == "/v1/images/edits" and req.header("authorization") == f"Bearer {KEY}"
    assert req.model == "gpt-image-test" and req.texts == ["Restore."]
    assert [im.size for im in req.images] == [(20, 10), (8, 6)]
    assert decode_image_bytes(base64.b64decode(result.data[0].b64_json)).shape == (10, 20, 3)
    assert result.usage.input_tokens == 123 and result.usage.output_tokens == 45


def test_openai_images_generate_and_faults(stub_server: StubServer) -> None:
    import openai

    client = _openai_client(stub_server)
    result = client.images.generate(model="gpt-image-test", prompt="A grey square.")
    assert decode_image_bytes(base64.b64decode(result.data[0].b64_json)).shape == (64, 64, 3)

    stub_server.push_fault(Fault("safety", code="moderation_blocked"), "rate_limit")
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="gpt-image-test", prompt="x")
    assert bad.value.code == "moderation_blocked"
    with pytest.raises(openai.RateLimitError) as limited:
        client.images.generate(model="gpt-image-test", prompt="x")
    assert limited.value.response.headers["retry-after"] == "1"
    assert stub_server.count("openai.images_generate") == 3


def test_responders_sequences_and_raw_replies(stub_server: StubServer) -> None:
    from openai import OpenAI

    client = OpenAI(api_key=KEY, base_url=stub_server.openai_url, max_retries=0)
    stub_server.reply_sequence(["first", "second"], route="openai.chat")
    answers = [
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        .choices[0]
        .message.content
        for _ in range(3)
    ]
    assert answers == ["first", "second", "second"]
    assert stub_server.count("openai.chat", model="m") == 3


def test_fault_rate_is_reproducible() -> None:
    def pattern(seed: int) -> list[str | None]:
        with StubServer() as stub:
            stub.set_fault_rate(0.5, ["server_error", "rate_limit"], seed=seed)
            for _ in range(12):
                request = urllib.request.Request(
                    f"{stub.openai_url}/chat/completions",
                    data=json.dumps({"model": "m", "messages": []}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with contextlib.suppress(urllib.error.HTTPError):  # the injected faults
                    urllib.request.urlopen(request, timeout=5).read()
            return [r.fault for r in stub.requests]

    first = pattern(3)
    assert first == pattern(3)
    assert {"server_error", "rate_limit", None} == set(first)


def test_unknown_route_and_fault_kind(stub_server: StubServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(f"{stub_server.url}/v2/nothing", data=b"{}"), timeout=5)
    assert info.value.code == 404
    assert stub_server.last().route is None
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("meteor")  # type: ignore[arg-type]
    assert "rate_limit" in FAULT_KINDS and "wrong_size" in FAULT_KINDS
