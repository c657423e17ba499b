"""The diffusers generator on a tiny random-weight InstructPix2Pix pipeline saved to a temp folder."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ggt.analyze.report import Degradation, DegradationReport
from ggt.generate.diffusers_gen import DiffusersGenerator, DiffusersOptions, ModelNotAvailableError

pytest.importorskip("diffusers")
pytest.importorskip("torch")

REPORT = DegradationReport(category="social_media", degradations=[Degradation(type="noise", severity=0.5)])


def _tokenizer(folder: Path):  # type: ignore[no-untyped-def]
    from transformers import CLIPTokenizer

    # Single characters only and no merges: enough to tokenize any lowercase prompt. Built from files via
    # from_pretrained because transformers 5's constructor silently keeps a 3-token vocabulary.
    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,;:'-()!?"
    tokens = ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("tiny-ip2p")
    # Narrow layers keep a CPU run to a fraction of a second: the tests check plumbing, not pictures.
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=8,  # noisy latents + image latents, InstructPix2Pix's conditioning
        out_channels=4,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        attention_head_dim=8,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        norm_num_groups=8,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    tokenizer = _tokenizer(root / "tok")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    model = root / "model"
    pipe.save_pretrained(model)
    return model


def _img(h: int = 64, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((h, w, 3), dtype=np.float32)


def _gen(model: Path, **kw: object) -> DiffusersGenerator:
    return DiffusersGenerator(DiffusersOptions(model=str(model), steps=2, max_side=64, **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ip2p(tiny_model: Path) -> DiffusersGenerator:
    return _gen(tiny_model, pipeline="instruct-pix2pix", seed=3)


def test_restore_shape_dtype_range_and_info(ip2p: DiffusersGenerator, tiny_model: Path) -> None:
    out, info = ip2p.restore(_img(), REPORT, prompt="remove the noise")
    assert out.shape == (64, 64, 3)
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert info["model"] == str(tiny_model)
    assert info["steps"] == 2 and info["seed"] == 3 and info["device"] in ("cpu", "cuda")
    assert info["pipeline"] == "StableDiffusionInstructPix2PixPipeline"
    assert info["prompt"] == "remove the noise"


def test_same_seed_same_output_and_size_restored(ip2p: DiffusersGenerator, tiny_model: Path) -> None:
    # The default prompt comes from the report; a 50x70 photo runs at 48x64 and comes back at 50x70.
    a, info = ip2p.restore(_img(50, 70), REPORT)
    b, _ = ip2p.restore(_img(50, 70), REPORT)
    assert a.shape == (50, 70, 3) and a.dtype == np.float32
    assert info["work_size"] == [48, 64] and info["prompt"]
    np.testing.assert_array_equal(a, b)
    # A fresh generator (`auto` reads the class from model_index.json) with another seed gives other noise.
    c, info_c = _gen(tiny_model, seed=8).restore(_img(50, 70), REPORT)
    assert info_c["pipeline"] == info["pipeline"]
    assert not np.array_equal(a, c)


def test_generator_pickles_without_its_pipeline(ip2p: DiffusersGenerator) -> None:
    ip2p._load()
    clone = pickle.loads(pickle.dumps(ip2p))
    assert clone.options == ip2p.options and clone._pipe is None


@pytest.mark.parametrize("model", ["/nonexistent/ggt-model", "./missing-model-dir"])
def test_missing_path_fails_naming_it(model: str) -> None:
    gen = DiffusersGenerator(DiffusersOptions(model=model))
    with pytest.raises(ModelNotAvailableError, match=r"missing-model-dir|ggt-model") as e:
        gen.restore(_img(), REPORT, prompt="x")
    assert model in str(e.value) and "does not download" in str(e.value)


def test_uncached_hub_id_fails_without_downloading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    gen = DiffusersGenerator(DiffusersOptions(model="nobody/no-such-model"))
    with pytest.raises(ValueError, match=r"nobody/no-such-model.*does not download"):
        gen.restore(_img(), REPORT, prompt="x")


def test_missing_lora_fails(tiny_model: Path, tmp_path: Path) -> None:
    gen = _gen(tiny_model, lora=str(tmp_path / "nope.safetensors"))
    with pytest.raises(ModelNotAvailableError, match=r"nope\.safetensors"):
        gen.restore(_img(), REPORT, prompt="x")


def test_options_validated() -> None:
    with pytest.raises(ValidationError):
        DiffusersOptions(model="m", strength=0.5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        DiffusersOptions(model="m", pipeline="sdxl")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DiffusersOptions()  # type: ignore[call-arg]


def test_synth_stage_runs_the_diffusers_generator_with_each_items_prompt(
    tiny_model: Path, tmp_path: Path
) -> None:
    from fixtures import badfiles as bf
    from fixtures.runs import set_analysis
    from ggt.generate.stage import synth
    from ggt.imaging import read_image
    from ggt.ingest import ingest
    from ggt.store import Run

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(bf.save(bf.photo("coffee", size=(64, 48)), "PNG"))
    run = tmp_path / "run"
    ingest([tmp_path / "src"], run)
    report = {"category": "haze", "degradations": [], "scene": "", "measures": {}, "analyzer": "heuristic"}
    set_analysis(run, report, "Dehaze it.")
    s = synth(run, generator="diffusers",
              overrides=[f"synth.options.model={tiny_model}", "synth.options.steps=2", "synth.workers=1"])  # fmt: skip
    assert (s.done, s.failed) == (1, 0), s
    with Run.open(run) as r:
        import json

        result = json.loads(r.store.scalar("SELECT result FROM stage_results WHERE stage='synth'"))
    assert result["prompt"] == "Dehaze it." and result["generator"] == "diffusers"
    assert read_image(run / result["hq_path"]).shape == (48, 64, 3)
