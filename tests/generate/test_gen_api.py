"""The API image generators (Gemini, OpenAI, OpenAI-compatible) against the loopback stub, real SDKs.

What is checked is the wire (path, auth header, the fields each API reads), the answer (the stub's image
bytes, usage) and the classification of every failure, with exactly one HTTP call per `generate`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import pickle
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fixtures.stubs import Fault, RecordedRequest, Reply, StubServer, decode_image_bytes, png_bytes
from fixtures.stubs.server import gemini_reply
from ggt.generate.api import APIGenerator, GeneratedImage, probe_image
from ggt.generate.gemini import GeminiGenerator
from ggt.generate.openai_images import OpenAICompatibleImagesGenerator, OpenAIImagesGenerator
from ggt.vlm.errors import PermanentVLMError, RetryableVLMError, VLMConfigError, VLMError

GEMINI_KEY = "AIza-test-gemini-key-0123456789"
OPENAI_KEY = "sk-test-openai-key-0123456789"
COMPAT_KEY = "compat-secret-key-0123456789"
SECRETS = (GEMINI_KEY, OPENAI_KEY, COMPAT_KEY)
VENDOR_ENV = (
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "OPENAI_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "OPENAI_BASE_URL",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_PROJECT",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_CUSTOM_HEADERS",
    "COMPAT_KEY",
)
PROMPT = "Remove the rain streaks; keep every detail of the street."


@pytest.fixture(autouse=True)
def vendor_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Test keys only: nothing from the developer's shell (a real key, a proxy URL) reaches a test."""
    for name in VENDOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("COMPAT_KEY", COMPAT_KEY)
    return monkeypatch


@pytest.fixture
def lq() -> bytes:
    """A 40x24 (WxH) PNG: asymmetric so a transposed upload would show."""
    y, x = np.mgrid[0:24, 0:40].astype(np.float32)
    return png_bytes(np.stack([x / 39, y / 23, (x + y) / 62], axis=-1).astype(np.float32))


def gemini(stub: StubServer, **options: Any) -> GeminiGenerator:
    return GeminiGenerator.create(
        **{"model": "gemini-img-test", "base_url": stub.url, "timeout_s": 5.0, **options}
    )


def openai(stub: StubServer, **options: Any) -> OpenAIImagesGenerator:
    return OpenAIImagesGenerator.create(
        **{"model": "gpt-image-test", "base_url": stub.openai_url, "timeout_s": 5.0, **options}
    )


def compatible(stub: StubServer, **options: Any) -> OpenAICompatibleImagesGenerator:
    return OpenAICompatibleImagesGenerator.create(
        **{"model": "flux-kontext", "base_url": stub.openai_url, "timeout_s": 5.0, **options}
    )


Factory = Callable[..., APIGenerator[Any]]
BACKENDS = pytest.mark.parametrize(
    "factory", [gemini, openai, compatible], ids=["gemini", "openai", "compatible"]
)


def generate(gen: APIGenerator[Any], image: bytes, prompt: str = PROMPT) -> GeneratedImage:
    return gen.generate_sync(image, prompt)


def fails(gen: APIGenerator[Any], image: bytes) -> VLMError:
    with pytest.raises(VLMError) as info:
        generate(gen, image)
    return info.value


# ----------------------------------------------------------------------------------------------------------
# Request shape


def test_gemini_request_shape(stub_server: StubServer, lq: bytes) -> None:
    gen = gemini(stub_server, aspect_ratio="5:3", image_size="2K", seed=7, temperature=0.4)
    generate(gen, lq)
    req = stub_server.last()
    assert req.route == "gemini.generate"
    assert req.path == "/v1/models/gemini-img-test:generateContent"
    assert req.header("x-goog-api-key") == GEMINI_KEY
    assert len(req.images) == 1 and req.images[0].size == (40, 24)
    assert req.images[0].data == lq  # the caller's bytes, not a re-encoding
    assert req.images[0].mime_type == "image/png"
    assert req.texts == [PROMPT]
    parts = req.json["contents"][0]["parts"]
    assert "inlineData" in parts[0] and parts[1] == {"text": PROMPT}  # image first
    config = req.json["generationConfig"]
    assert config["responseModalities"] == ["IMAGE"]
    assert config["imageConfig"] == {"aspectRatio": "5:3", "imageSize": "2K"}
    assert config["seed"] == 7 and config["temperature"] == pytest.approx(0.4)


def test_gemini_defaults_send_no_image_config(stub_server: StubServer, lq: bytes) -> None:
    generate(gemini(stub_server, response_modalities=["TEXT", "IMAGE"], api_version="v1beta"), lq)
    req = stub_server.last()
    assert req.path == "/v1beta/models/gemini-img-test:generateContent"
    assert req.json["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"]}


def test_openai_request_shape(stub_server: StubServer, lq: bytes) -> None:
    gen = openai(stub_server, size="1536x1024", quality="high", background="opaque")
    generate(gen, lq)
    req = stub_server.last()
    assert req.route == "openai.images_edit" and req.path == "/v1/images/edits"
    assert req.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert req.header(
        "content-type",
    ).startswith("multipart/form-data")
    form = {k: v[0] for k, v in req.form.items()}
    assert form == {
        "model": "gpt-image-test",
        "prompt": PROMPT,
        "input_fidelity": "high",
        "output_format": "png",
        "size": "1536x1024",
        "quality": "high",
        "background": "opaque",
    }
    (upload,) = req.files["image"]
    assert (upload.filename, upload.content_type, upload.data) == ("lq.png", "image/png", lq)
    assert req.images[0].size == (40, 24)


def test_jpeg_input_is_declared_as_jpeg(stub_server: StubServer) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (200, 100, 50)).save(buf, format="JPEG")
    generate(openai(stub_server), buf.getvalue())
    upload = stub_server.last().files["image"][0]
    assert (upload.filename, upload.content_type) == ("lq.jpg", "image/jpeg")
    generate(gemini(stub_server), buf.getvalue())
    assert stub_server.last().images[0].mime_type == "image/jpeg"


def test_compatible_sends_no_openai_key_and_no_gpt_image_fields(stub_server: StubServer, lq: bytes) -> None:
    generate(compatible(stub_server), lq)
    req = stub_server.last()
    assert OPENAI_KEY not in req.header("authorization")
    assert {k: v[0] for k, v in req.form.items()} == {
        "model": "flux-kontext",
        "prompt": PROMPT,
        "response_format": "b64_json",
    }
    generate(compatible(stub_server, api_key_env="COMPAT_KEY", input_fidelity="high"), lq)
    req = stub_server.last()
    assert req.header("authorization") == f"Bearer {COMPAT_KEY}"
    assert req.form["input_fidelity"] == ["high"]


# ----------------------------------------------------------------------------------------------------------
# Success


@BACKENDS
def test_success_returns_the_servers_image_and_usage(
    factory: Factory, stub_server: StubServer, lq: bytes
) -> None:
    answer = png_bytes(np.full((48, 80, 3), 0.3, np.float32))
    stub_server.set_responder(lambda _req: answer)
    out = generate(factory(stub_server), lq)
    assert out.data == answer
    assert (out.mime, out.width, out.height) == ("image/png", 80, 48)
    assert out.backend == factory(stub_server).name and out.model == factory(stub_server).model
    assert out.usage.input_tokens == 123 and out.usage.output_tokens == 45 and out.usage.total_tokens == 168
    assert out.latency_s >= 0
    assert stub_server.count() == 1


def test_generated_image_round_trips_through_json(stub_server: StubServer, lq: bytes) -> None:
    out = generate(gemini(stub_server), lq)
    again = GeneratedImage.model_validate_json(out.model_dump_json())
    assert again == out and again.data == out.data


@BACKENDS
def test_sdk_base_url_variables_apply_when_base_url_is_unset(
    factory: Factory, stub_server: StubServer, lq: bytes, vendor_env: pytest.MonkeyPatch
) -> None:
    # Users behind gateways set the SDKs' own variables; the compatible backend always names its server.
    vendor_env.setenv("GOOGLE_GEMINI_BASE_URL", stub_server.url)
    vendor_env.setenv("OPENAI_BASE_URL", stub_server.openai_url)
    options = {} if factory is compatible else {"base_url": None}
    generate(factory(stub_server, **options), lq)
    assert stub_server.count() == 1


def test_gemini_success_details(stub_server: StubServer, lq: bytes) -> None:
    answer = png_bytes(np.full((16, 16, 3), 0.7, np.float32))
    b64 = base64.b64encode(answer).decode()
    draft = png_bytes(np.zeros((8, 8, 3), np.float32))
    body = gemini_reply(
        [
            {
                "inlineData": {"mimeType": "image/png", "data": base64.b64encode(draft).decode()},
                "thought": True,
            },
            {"text": "Here is the restored photo."},
            {"inlineData": {"mimeType": "image/png", "data": b64}},
        ],
        model="gemini-img-test-001",
        usage=None,
    )
    body["usageMetadata"] = {
        "promptTokenCount": 300,
        "candidatesTokenCount": 1290,
        "thoughtsTokenCount": 10,
        "totalTokenCount": 1600,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 42},
            {"modality": "IMAGE", "tokenCount": 258},
        ],
        "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
    }
    stub_server.set_responder(lambda _req: body)
    out = generate(gemini(stub_server, response_modalities=["TEXT", "IMAGE"]), lq)
    assert out.data == answer  # the final image, not the thought draft
    assert out.text == "Here is the restored photo."
    assert (out.model_version, out.finish_reason) == ("gemini-img-test-001", "STOP")
    u = out.usage
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (300, 1300, 1600)
    assert (u.input_text_tokens, u.input_image_tokens, u.output_image_tokens) == (42, 258, 1290)


def test_openai_usage_details(stub_server: StubServer, lq: bytes) -> None:
    out = generate(openai(stub_server), lq)
    assert (out.usage.input_text_tokens, out.usage.input_image_tokens) == (123, 0)


def test_generators_run_concurrently_on_one_client(stub_server: StubServer, lq: bytes) -> None:
    gen = gemini(stub_server)

    async def main() -> list[GeneratedImage]:
        async with gen:
            return await asyncio.gather(*(gen.generate(lq, f"{PROMPT} {i}") for i in range(6)))

    outs = asyncio.run(main())
    assert len(outs) == 6 and stub_server.count() == 6
    assert all(decode_image_bytes(o.data).shape == (24, 40, 3) for o in outs)  # the stub echoes the input


# ----------------------------------------------------------------------------------------------------------
# Retryable failures: one HTTP call each


@BACKENDS
def test_rate_limit_is_retryable_with_retry_after(
    factory: Factory, stub_server: StubServer, lq: bytes
) -> None:
    stub_server.push_fault(Fault("rate_limit", retry_after=7))
    err = fails(factory(stub_server), lq)
    assert isinstance(err, RetryableVLMError) and err.retryable
    assert err.reason == "rate_limited" and err.status == 429 and err.retry_after_s == 7
    assert stub_server.count() == 1


@BACKENDS
@pytest.mark.parametrize(
    ("fault", "reason"),
    [("server_error", "server_error"), ("unavailable", "server_error"), ("reset", "connection")],
)
def test_server_and_transport_errors_are_retryable(
    factory: Factory, fault: str, reason: str, stub_server: StubServer, lq: bytes
) -> None:
    stub_server.push_fault(fault)
    err = fails(factory(stub_server), lq)
    assert isinstance(err, RetryableVLMError) and err.reason == reason
    assert stub_server.count() == 1


@BACKENDS
def test_timeout_is_retryable(factory: Factory, stub_server: StubServer, lq: bytes) -> None:
    stub_server.push_fault(Fault("slow", delay_s=3.0))
    err = fails(factory(stub_server, timeout_s=0.3), lq)
    assert isinstance(err, RetryableVLMError) and err.reason == "timeout"
    assert stub_server.count() == 1


# ----------------------------------------------------------------------------------------------------------
# Permanent failures


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("safety", "safety_block"),  # promptFeedback.blockReason, no candidates
        (Fault("safety_finish", finish_reason="IMAGE_SAFETY"), "safety_block"),
        (Fault("safety_finish", finish_reason="PROHIBITED_CONTENT"), "safety_block"),
        ("text_only", "no_image"),
        (Fault("safety_finish", finish_reason="NO_IMAGE"), "no_image"),
        ("corrupt_image", "bad_output"),
        ("empty", "empty_response"),
        ("auth", "auth"),
        ("bad_request", "invalid_request"),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{v.kind}-{v.finish_reason}",
)
def test_gemini_permanent_failures(fault: Any, reason: str, stub_server: StubServer, lq: bytes) -> None:
    stub_server.push_fault(fault)
    err = fails(gemini(stub_server), lq)
    assert isinstance(err, PermanentVLMError) and not err.retryable
    assert err.reason == reason
    assert stub_server.count() == 1


def test_gemini_text_only_quotes_the_text_truncated(stub_server: StubServer, lq: bytes) -> None:
    stub_server.set_responder(lambda _req: "I cannot restore this photo. " * 40)
    err = fails(gemini(stub_server), lq)
    assert err.reason == "no_image"
    assert "I cannot restore this photo." in str(err)
    assert len(str(err)) <= 300
    assert err.usage is not None and err.usage.input_tokens == 123  # a refusal is still billed


@pytest.mark.parametrize("factory", [openai, compatible], ids=["openai", "compatible"])
@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("safety", "safety_block"),  # 400 content_policy_violation
        (Fault("safety", code="moderation_blocked"), "safety_block"),
        ("empty", "empty_response"),  # "data": []
        ("text_only", "empty_response"),  # an item with revised_prompt and no b64_json
        ("corrupt_image", "bad_output"),
        ("auth", "auth"),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{v.kind}-{v.code}",
)
def test_openai_permanent_failures(
    factory: Factory, fault: Any, reason: str, stub_server: StubServer, lq: bytes
) -> None:
    stub_server.push_fault(fault)
    err = fails(factory(stub_server), lq)
    assert isinstance(err, PermanentVLMError) and err.reason == reason
    assert stub_server.count() == 1


def test_openai_url_answer_says_what_to_set(stub_server: StubServer, lq: bytes) -> None:
    stub_server.set_responder(lambda _req: {"created": 1, "data": [{"url": "http://example.invalid/x.png"}]})
    err = fails(openai(stub_server), lq)
    assert err.reason == "empty_response" and "response_format" in str(err)


@BACKENDS
def test_keys_stay_out_of_errors_and_logs(
    factory: Factory, stub_server: StubServer, lq: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' and httpx's included
    options = {"api_key_env": "COMPAT_KEY"} if factory is compatible else {}
    gen = factory(stub_server, timeout_s=5.0, **options)
    assert all(s not in repr(gen) for s in SECRETS)

    def echo_key(req: RecordedRequest) -> Reply:
        # A proxy that echoes request headers in its error: the worst case for leaks.
        key = req.header("x-goog-api-key") or req.header("authorization") or ""
        return Reply(
            500, {"error": {"code": 500, "message": f"bad gateway for key {key}", "status": "INTERNAL"}}
        )

    faults = ["rate_limit", "server_error", "reset", "auth", "safety", "corrupt_image", "empty"]
    stub_server.push_fault(*faults)
    errors = [fails(gen, lq) for _ in faults]
    stub_server.set_responder(echo_key)
    errors.append(fails(gen, lq))
    assert "***" in str(errors[-1])  # the echoed key was there, and redacted
    for err in errors:
        text = "".join(traceback.format_exception(err)) + repr(err) + repr(pickle.loads(pickle.dumps(err)))
        assert all(s not in text for s in SECRETS), text
    assert all(s not in caplog.text for s in SECRETS)


# ----------------------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("cls", "env"),
    [(GeminiGenerator, "GOOGLE_API_KEY or GEMINI_API_KEY"), (OpenAIImagesGenerator, "OPENAI_API_KEY")],
)
def test_missing_key_names_the_variable(
    cls: type[APIGenerator[Any]], env: str, vendor_env: pytest.MonkeyPatch
) -> None:
    vendor_env.delenv("GEMINI_API_KEY")
    vendor_env.delenv("OPENAI_API_KEY")
    with pytest.raises(VLMConfigError) as info:
        cls.create(model="m")
    assert info.value.reason == "missing_api_key" and env in str(info.value)
    with pytest.raises(VLMConfigError, match="MY_GATEWAY_KEY"):
        cls.create(model="m", api_key_env="MY_GATEWAY_KEY")


def test_compatible_with_named_key_env_requires_it(vendor_env: pytest.MonkeyPatch) -> None:
    vendor_env.delenv("COMPAT_KEY")
    with pytest.raises(VLMConfigError, match="COMPAT_KEY"):
        OpenAICompatibleImagesGenerator.create(
            model="m", base_url="http://127.0.0.1:9/v1", api_key_env="COMPAT_KEY"
        )


@pytest.mark.parametrize("cls", [GeminiGenerator, OpenAIImagesGenerator, OpenAICompatibleImagesGenerator])
def test_unknown_option_is_named(cls: type[APIGenerator[Any]]) -> None:
    with pytest.raises(VLMConfigError) as info:
        cls.create(model="m", base_url="http://127.0.0.1:9/v1", aspect_ration="4:3", qualty="high")
    assert "aspect_ration" in str(info.value) and "qualty" in str(info.value)


@pytest.mark.parametrize(
    ("cls", "options", "field"),
    [
        (GeminiGenerator, {}, "model"),
        (GeminiGenerator, {"model": "m", "aspect_ratio": "wide"}, "aspect_ratio"),
        (GeminiGenerator, {"model": "m", "response_modalities": ["TEXT"]}, "response_modalities"),
        (OpenAIImagesGenerator, {"model": "m", "size": "big"}, "size"),
        (OpenAIImagesGenerator, {"model": "m", "quality": "ultra"}, "quality"),
        (OpenAICompatibleImagesGenerator, {"model": "m"}, "base_url"),
    ],
)
def test_bad_options_are_named(cls: type[APIGenerator[Any]], options: dict[str, Any], field: str) -> None:
    with pytest.raises(VLMConfigError, match=field):
        cls.create(**options)


def test_bad_inputs_fail_before_any_call(stub_server: StubServer) -> None:
    gen = gemini(stub_server)
    for image, prompt in [
        (b"", PROMPT),
        (b"GIF89a not supported", PROMPT),
        (png_bytes(np.zeros((4, 4, 3))), " "),
    ]:
        with pytest.raises(VLMConfigError):
            gen.generate_sync(image, prompt)
    assert stub_server.count() == 0


def test_request_params_cover_what_changes_the_output() -> None:
    a = GeminiGenerator.create(model="m", aspect_ratio="4:3", timeout_s=10, base_url="http://a")
    b = GeminiGenerator.create(model="m", aspect_ratio="4:3", timeout_s=99, api_version="v1beta")
    assert (
        a.request_params()
        == b.request_params()
        == {
            "backend": "gemini",
            "aspect_ratio": "4:3",
            "model": "m",
            "response_modalities": ["IMAGE"],
        }
    )
    assert GeminiGenerator.create(model="m", image_size="2K").request_params() != a.request_params()
    o = OpenAIImagesGenerator.create(model="gpt-image-x", quality="high")
    assert o.request_params() == {
        "backend": "openai",
        "input_fidelity": "high",
        "model": "gpt-image-x",
        "output_format": "png",
        "quality": "high",
    }
    # Another server under the same model name is another model.
    c1 = OpenAICompatibleImagesGenerator.create(model="m", base_url="http://a/v1")
    c2 = OpenAICompatibleImagesGenerator.create(model="m", base_url="http://b/v1")
    assert c1.request_params() != c2.request_params()


def test_sync_wrapper_refuses_a_running_loop(stub_server: StubServer, lq: bytes) -> None:
    gen = gemini(stub_server)

    async def main() -> None:
        gen.generate_sync(lq, PROMPT)

    with pytest.raises(RuntimeError, match="running event loop"):
        asyncio.run(main())


def test_probe_image_rejects_truncated_png() -> None:
    data = png_bytes(np.random.default_rng(0).random((64, 64, 3)).astype(np.float32))
    assert probe_image(data) == ("image/png", 64, 64)
    with pytest.raises(ValueError):
        probe_image(data[: len(data) // 2])
