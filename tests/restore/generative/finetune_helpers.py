"""Tiny random pipelines (saved with save_pretrained) and a tiny export, built offline for fine-tuning tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,;:'-()!?"


def clip_tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    # transformers 5's CLIPTokenizer(vocab_file=...) silently keeps a 3-token vocabulary: load from files.
    tokens = ["<|startoftext|>", "<|endoftext|>", *CHARS, *(c + "</w>" for c in CHARS)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def clip_text_encoder(vocab: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                       vocab_size=vocab, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=32)
    )  # fmt: skip


def vae(**kw: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16), norm_num_groups=8, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4, **kw,
    )  # fmt: skip


def unet(in_channels: int) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=in_channels, out_channels=4, block_out_channels=(16, 32), norm_num_groups=8,
        attention_head_dim=8, layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )  # fmt: skip


def tiny_ip2p(root: Path) -> Path:
    """An InstructPix2Pix pipeline: 8-channel UNet (noisy + LQ latents), epsilon prediction."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    torch.manual_seed(0)
    tok = clip_tokenizer(root / "tok")
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae(), text_encoder=clip_text_encoder(len(tok)), tokenizer=tok, unet=unet(8),
        scheduler=EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(root / "model")
    return root / "model"


def tiny_sd(root: Path) -> Path:
    """A text-to-image SD pipeline (4-channel UNet) with a v-prediction scheduler: the img2img family."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(0)
    tok = clip_tokenizer(root / "tok")
    pipe = StableDiffusionPipeline(
        vae=vae(), text_encoder=clip_text_encoder(len(tok)), tokenizer=tok, unet=unet(4),
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                prediction_type="v_prediction"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(root / "model")
    return root / "model"


def tiny_kontext(root: Path) -> Path:
    """A FLUX.1 Kontext pipeline: tiny FluxTransformer2DModel, CLIP + T5 encoders, flow-matching scheduler."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(0)
    tok = clip_tokenizer(root / "tok")
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + c, -1.0) for c in CHARS] + [(c, -2.0) for c in CHARS]
    t5tok = T5Tokenizer(vocab=pieces, extra_ids=0)
    t5 = T5EncoderModel(
        T5Config(vocab_size=len(t5tok), d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4)
    )
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(2, 2, 4),
    )  # fmt: skip
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae(use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.06, scaling_factor=1.5), text_encoder=clip_text_encoder(len(tok)), tokenizer=tok,
        text_encoder_2=t5, tokenizer_2=t5tok, transformer=transformer,
    )  # fmt: skip
    pipe.save_pretrained(root / "model")
    return root / "model"


def tiny_export(root: Path, n: int = 2, size: tuple[int, int] = (32, 32), fmt: str = "folder") -> Path:
    """A ggt export of ``n`` pairs (all in the train split) whose prompts are 'fix ITEM'."""
    import importlib.util

    from ggt.dataset import export

    # The export tests' run builder, loaded by path: tests/dataset is on sys.path only when they run.
    spec = importlib.util.spec_from_file_location(
        "ggt_test_dataset_helpers", Path(__file__).parents[2] / "dataset" / "dataset_helpers.py"
    )
    assert spec and spec.loader
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    make_run = helpers.make_run

    run, _ids = make_run(root, {"rain": n}, size=size)
    out = root / f"export-{fmt}"
    export(run, fmt, out, split="test=0")  # type: ignore[arg-type]
    return out


def base_config(model_dir: Path, export_dir: Path, out_dir: Path, **kw: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model": str(model_dir), "pipeline": "instruct-pix2pix", "output_dir": str(out_dir),
        "data": {"path": str(export_dir), "split": "train"}, "lora": {"rank": 4},
        "resolution": 32, "batch_size": 1, "steps": 20, "lr": 1e-3, "checkpoint_every": 10,
        "validation_every": 0, "validation_steps": 2, "max_sequence_length": 16,
    }  # fmt: skip
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def tiny_qwen_edit_without_text_encoder() -> Any:
    """A QwenImageEditPipeline with a tiny transformer and video VAE but no Qwen2.5-VL text encoder (none
    builds offline in reasonable time): tests stub ``encode_prompt``."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageTransformer2DModel,
    )

    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, axes_dims_rope=(2, 2, 4),
    )  # fmt: skip
    vae = AutoencoderKLQwenImage(
        base_dim=24, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[False],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    )  # fmt: skip
    return QwenImageEditPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), vae=vae, text_encoder=None,
        tokenizer=None, processor=None, transformer=transformer,
    )  # fmt: skip
