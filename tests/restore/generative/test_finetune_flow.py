"""Flow matching on a tiny random FLUX.1 Kontext pipeline, and v-prediction on a tiny SD img2img one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("accelerate")
pytest.importorskip("diffusers")

import torch
from finetune_helpers import base_config, tiny_export, tiny_ip2p, tiny_kontext, tiny_sd

from ggt.restore.generative import FinetuneConfig, finetune
from ggt.restore.generative.train import LORA_FILE

FLUX_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_out", "x_embedder", "proj_mlp", "ff.net.2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_export(tmp_path_factory.mktemp("ftdata"), n=1)


def _cfg(model: Path, data: Path, out: Path, **kw: Any) -> FinetuneConfig:
    return FinetuneConfig.model_validate(base_config(model, data, out, **kw))


def test_kontext_flow_matching_lora(data: Path, tmp_path: Path) -> None:
    from diffusers import FluxKontextPipeline
    from PIL import Image

    model = tiny_kontext(tmp_path / "kontext")
    cfg = _cfg(model, data, tmp_path / "out", pipeline="kontext", lr=3e-2, max_sequence_length=32,
               lora={"rank": 4, "target_modules": FLUX_TARGETS}, validation_every=20, validation_images=1)  # fmt: skip
    res = finetune(cfg)
    assert res.pipeline == "FluxKontextPipeline"
    assert len(res.losses) == 20 and all(np.isfinite(res.losses))
    assert np.mean(res.losses[-5:]) < np.mean(res.losses[:5]), res.losses
    assert len(res.validation) == 1 and Path(res.validation[0]).exists()

    def edit(lora: bool) -> np.ndarray:
        pipe = FluxKontextPipeline.from_pretrained(model, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        if lora:
            pipe.load_lora_weights(res.output_dir)
        img = Image.fromarray(np.full((32, 32, 3), 120, np.uint8))
        return pipe(image=img, prompt="fix it", num_inference_steps=2, height=32, width=32, max_area=32 * 32,
                    _auto_resize=False, max_sequence_length=32, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images[0]  # fmt: skip

    assert np.abs(edit(True) - edit(False)).max() > 1e-3


def test_img2img_v_prediction_and_channel_check(data: Path, tmp_path: Path) -> None:
    from diffusers import DDIMScheduler

    model = tiny_sd(tmp_path / "sd")
    assert DDIMScheduler.from_pretrained(model / "scheduler").config.prediction_type == "v_prediction"
    res = finetune(
        _cfg(model, data, tmp_path / "out", pipeline="image-to-image", steps=3, checkpoint_every=3)
    )
    assert res.pipeline == "StableDiffusionImg2ImgPipeline"
    assert len(res.losses) == 3 and all(np.isfinite(res.losses))
    assert (Path(res.output_dir) / LORA_FILE).exists()
    # A 4-channel UNet cannot take InstructPix2Pix's concatenated LQ latents.
    with pytest.raises(ValueError, match="8 input channels"):
        finetune(_cfg(model, data, tmp_path / "bad", pipeline="instruct-pix2pix", steps=1))


def test_gradient_checkpointing_accumulation_and_conditioning_dropout_run(data: Path, tmp_path: Path) -> None:
    model = tiny_ip2p(tmp_path / "ip2p")
    res = finetune(_cfg(model, data, tmp_path / "out", steps=2, grad_accum=2, batch_size=2,
                        gradient_checkpointing=True, checkpoint_every=2, conditioning_dropout=0.3))  # fmt: skip
    assert len(res.losses) == 2 and all(np.isfinite(res.losses))
    assert res.plan.gradient_checkpointing and res.plan.batch_size == 2


@pytest.mark.slow
def test_two_processes_through_torchrun(data: Path, tmp_path: Path) -> None:
    import json
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    model = tiny_ip2p(tmp_path / "ip2p")
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump(base_config(model, data, tmp_path / "out", steps=2, checkpoint_every=2)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [torchrun, "--nproc_per_node", "2", "-m", "ggt.cli", "finetune", "--config", str(cfg), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout.strip().splitlines()[-1])  # only the first process prints
    assert doc["processes"] == 2 and len(doc["losses"]) == 2
    assert (tmp_path / "out" / "pytorch_lora_weights.safetensors").exists()


def test_qwen_edit_objective_with_a_stubbed_text_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The qwen-edit objective's latents, packing, image shapes and transformer call on a tiny model; only
    the Qwen2.5-VL prompt encoding is stubbed (it gets the prompts and the LQ images, as in the pipeline)."""
    from finetune_helpers import tiny_qwen_edit_without_text_encoder
    from peft import LoraConfig

    from ggt.restore.generative.objectives import OBJECTIVES, QwenEditObjective

    pipe = tiny_qwen_edit_without_text_encoder()
    seen: list[Any] = []

    def encode_prompt(prompt: list[str], image: Any, device: Any) -> tuple[Any, Any]:
        seen.append((prompt, [im.size for im in image]))
        g = torch.Generator().manual_seed(len(prompt[0]))
        return torch.randn(len(prompt), 7, 16, generator=g), None

    monkeypatch.setattr(pipe, "encode_prompt", encode_prompt)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                            target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_out"]))  # fmt: skip
    cfg = FinetuneConfig.model_validate(base_config(Path("m"), Path("d"), Path("o"), pipeline="qwen-edit"))
    obj = OBJECTIVES["qwen-edit"](pipe, cfg, torch.device("cpu"), torch.float32)
    assert isinstance(obj, QwenEditObjective)
    g = torch.Generator().manual_seed(0)
    batch = {"lq": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, "gt": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
             "prompt": ["fix a", "fix b"]}  # fmt: skip
    params = [p for p in pipe.transformer.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-2)
    losses = []
    for _ in range(12):
        loss = obj.loss(pipe.transformer, batch, torch.Generator().manual_seed(1))  # the same noise each step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] * 0.9, losses
    assert seen[0] == (["fix a", "fix b"], [(32, 32), (32, 32)])
