"""Memory planning and the fine-tuning configuration (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggt.config import ConfigError
from ggt.restore.generative import (
    FinetuneConfig,
    InsufficientMemoryError,
    check_fits,
    load_finetune_config,
    plan_memory,
)
from ggt.restore.generative.memory import ACT_PER_ELEMENT, GIB, OVERHEAD_FIXED, denoiser_blocks

CONFIGS = Path(__file__).parents[3] / "configs" / "finetune"


def test_plan_adds_up_by_its_documented_formula() -> None:
    blocks = [(100, 8), (25, 16)]
    p = plan_memory(parameters=1000, trainable=10, blocks=blocks, batch_size=2, resolution=64, weight_bytes=2,
                    gradient_checkpointing=False)  # fmt: skip
    assert p.weights == 990 * 2 + 10 * 4
    assert (p.gradients, p.optimizer) == (40, 80)
    assert p.activations == ACT_PER_ELEMENT * 2 * (100 * 8 + 25 * 16) * 2
    sub = p.weights + p.gradients + p.optimizer + p.activations
    assert p.overhead == int(sub * 0.1) + OVERHEAD_FIXED and p.total == sub + p.overhead
    # Checkpointing keeps one value per element plus one block's full set.
    ck = plan_memory(parameters=1000, trainable=10, blocks=blocks, batch_size=2, resolution=64, weight_bytes=2,
                     gradient_checkpointing=True)  # fmt: skip
    assert ck.activations == (2 * (800 + 400) + ACT_PER_ELEMENT * 2 * 800) * 2 < p.activations
    text = "\n".join(p.lines())
    assert "trainable LoRA 10" in text and "total" in text and "batch 2" in text


def test_plan_scales_with_resolution_batch_and_precision() -> None:
    flux = {"num_layers": 19, "num_single_layers": 38, "num_attention_heads": 24, "attention_head_dim": 128}
    kw = {"parameters": 16_900_000_000, "trainable": 50_000_000, "gradient_checkpointing": True}

    def plan(res: int, batch: int = 1, wb: int = 2) -> int:
        blocks = denoiser_blocks("transformer", flux, res, 512)
        return plan_memory(blocks=blocks, batch_size=batch, resolution=res, weight_bytes=wb, **kw).total

    # FLUX Kontext at 512, bf16, checkpointing: dominated by 17B frozen weights (~31.5 GiB) -> 30-45 GiB.
    assert 30 * GIB < plan(512) < 45 * GIB
    assert plan(1024) > plan(512) and plan(512, batch=4) > plan(512) and plan(512, wb=4) > 1.8 * plan(512)
    sd = denoiser_blocks(
        "unet", {"block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2}, 512, 77
    )
    assert len(sd) == 4 * 5 + 1 and sd[0] == (64 * 64, 320) and sd[-1] == (8 * 8, 1280)


def test_check_fits_raises_clearly_before_training() -> None:
    p = plan_memory(parameters=10 * 2**30, trainable=1, blocks=[(4096, 3072)] * 10, batch_size=4,
                    resolution=1024, weight_bytes=4, gradient_checkpointing=False)  # fmt: skip
    with pytest.raises(
        InsufficientMemoryError, match=r"needs about \d+\.\d GiB but the GPU has 8\.0 GiB"
    ) as e:
        check_fits(p, 8 * GIB)
    msg = str(e.value)
    assert "gradient_checkpointing: true" in msg and "bf16" in msg and "batch_size" in msg
    check_fits(p, 4 * p.total)  # fits: no error
    assert p.free == 4 * p.total
    with pytest.raises(ValueError, match="trainable"):
        plan_memory(parameters=1, trainable=2, blocks=[], batch_size=1, resolution=8, weight_bytes=4,
                    gradient_checkpointing=False)  # fmt: skip


@pytest.mark.parametrize("name", ["instructpix2pix_lora.yaml", "kontext_lora.yaml", "qwen_edit_lora.yaml"])
def test_shipped_configs_parse(name: str) -> None:
    cfg = load_finetune_config(CONFIGS / name)
    assert cfg.steps > 0 and cfg.lora.rank > 0 and cfg.target_modules()


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    base = CONFIGS / "instructpix2pix_lora.yaml"
    with pytest.raises(ConfigError, match=r"unknown key 'lora\.rnk'"):
        load_finetune_config(base, ["lora.rnk=4"])
    with pytest.raises(ConfigError, match=r"key 'resolution'.*multiple of 8"):
        load_finetune_config(base, ["resolution=500"])
    with pytest.raises(ConfigError, match=r"multiple of 16 for kontext"):
        load_finetune_config(CONFIGS / "kontext_lora.yaml", ["resolution=520"])
    with pytest.raises(ConfigError, match=r"key 'pipeline'"):
        load_finetune_config(base, ["pipeline=sdxl"])
    with pytest.raises(ConfigError, match=r"key 'mixed_precision'"):
        load_finetune_config(base, ["mixed_precision=fp8"])
    with pytest.raises(ConfigError, match=r"key 'conditioning_dropout'.*applies to instruct-pix2pix only"):
        load_finetune_config(CONFIGS / "kontext_lora.yaml", ["conditioning_dropout=0.1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\npipeline: kontext\n")
    with pytest.raises(ConfigError, match=r"key 'output_dir': Field required"):
        load_finetune_config(bad)
    cfg = load_finetune_config(base, ["steps=7", "lora.rank=4", "data.prompt=fixed"])
    assert (cfg.steps, cfg.lora.rank, cfg.data.prompt) == (7, 4, "fixed")
    # Steps and cadences may change on resume; the LoRA or the data may not.
    assert cfg.identity() == load_finetune_config(base, ["lora.rank=4", "data.prompt=fixed"]).identity()
    assert cfg.identity() != load_finetune_config(base, ["steps=7", "data.prompt=fixed"]).identity()


def test_importing_the_package_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, ggt.restore.generative, ggt.cli; "
            "print(any(m in sys.modules for m in ('torch', 'diffusers', 'peft', 'accelerate')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert FinetuneConfig.model_fields["model"].is_required()


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from typer.testing import CliRunner

    from ggt.cli import app
    from ggt.restore.generative.train import FinetuneError, _require_extra

    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError
    with pytest.raises(FinetuneError, match=r"needs peft: pip install 'ggt\[finetune\]'"):
        _require_extra()
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(f"model: m\npipeline: kontext\noutput_dir: {tmp_path / 'o'}\ndata: {{path: {tmp_path}}}\n")
    r = CliRunner().invoke(app, ["finetune", "--config", str(cfg)])
    assert r.exit_code == 2 and "pip install 'ggt[finetune]'" in r.output
