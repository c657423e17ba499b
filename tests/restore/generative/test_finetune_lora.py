"""LoRA fine-tuning of a tiny random InstructPix2Pix pipeline on a tiny export: loss, LoRA file, reload,
the diffusers generator with `lora`, exact resume, validation grid, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("accelerate")
pytest.importorskip("diffusers")

import torch
from finetune_helpers import base_config, tiny_export, tiny_ip2p

from fixtures.runs import set_analysis
from ggt.analyze.report import DegradationReport
from ggt.restore.generative import FinetuneConfig, FinetuneError, finetune
from ggt.restore.generative.train import LORA_FILE, STATE_FILE

# Convolutions and the output layer besides attention: a tiny UNet needs them to overfit in 20 steps.
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_out"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ft")
    return {"model": tiny_ip2p(root / "ip2p"), "data": tiny_export(root / "data", n=1), "root": root}


def _cfg(tiny: dict[str, Path], out: str, **kw: Any) -> FinetuneConfig:
    kw.setdefault("lora", {"rank": 4, "target_modules": TARGETS})
    kw.setdefault("lr", 1e-2)
    return FinetuneConfig.model_validate(base_config(tiny["model"], tiny["data"], tiny["root"] / out, **kw))


@pytest.fixture(scope="module")
def trained(tiny: dict[str, Path]) -> Any:
    lines: list[str] = []
    res = finetune(_cfg(tiny, "out", validation_every=10, validation_images=1), log=lines.append)
    return res, lines


def test_twenty_steps_loss_finite_and_falls_on_a_repeated_batch(trained: Any) -> None:
    res, lines = trained
    # One 32x32 pair and a 32 crop: every step sees the same batch (new noise and timestep).
    assert len(res.losses) == 20 and all(np.isfinite(res.losses))
    assert np.mean(res.losses[-5:]) < np.mean(res.losses[:5]) - 0.1, res.losses
    assert res.pipeline == "StableDiffusionInstructPix2PixPipeline" and res.pairs == 1
    assert res.fixed_prompts == 0  # the export carries each pair's prompt
    assert any("trainable LoRA" in ln for ln in lines) and any("total" in ln for ln in lines)


def test_outputs_written(trained: Any, tiny: dict[str, Path]) -> None:
    import yaml

    res, _ = trained
    out = Path(res.output_dir)
    assert (out / LORA_FILE).stat().st_size > 0
    assert [Path(c).name for c in res.checkpoints] == ["step-0000010", "step-0000020"]
    for c in res.checkpoints:
        assert (Path(c) / LORA_FILE).exists() and (Path(c) / STATE_FILE).exists()
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == list(range(1, 21))
    saved = FinetuneConfig.model_validate(yaml.safe_load((out / "config.yaml").read_text()))
    assert saved == _cfg(tiny, "out", validation_every=10, validation_images=1)
    from ggt.imaging import read_image

    grids = [read_image(Path(p)) for p in res.validation]
    assert len(grids) == 2 and grids[0].shape == (32, 3 * 32 + 2 * 2, 3)  # LQ | output | GT


def test_lora_file_is_peft_lora_in_diffusers_format(trained: Any) -> None:
    from safetensors.torch import load_file

    sd = load_file(str(Path(trained[0].output_dir) / LORA_FILE))
    assert sd and all(k.startswith("unet.") for k in sd)
    assert any("lora_A" in k for k in sd) and any("lora_B" in k for k in sd)
    assert any(float(v.abs().max()) > 0 for k, v in sd.items() if "lora_B" in k)  # B started at zero


def test_lora_reloads_exactly_through_load_lora_weights(trained: Any, tiny: dict[str, Path]) -> None:
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(tiny["model"], local_files_only=True)
    pipe.load_lora_weights(trained[0].output_dir)
    loaded = get_peft_model_state_dict(pipe.unet, adapter_name=pipe.unet.active_adapters()[0])
    file = Path(trained[0].output_dir) / LORA_FILE
    saved = {k.removeprefix("unet."): v for k, v in load_file(str(file)).items()}
    assert loaded.keys() == saved.keys() and len(saved) > 10  # attention and convolution layers, all of them
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)


def test_diffusers_generator_loads_the_lora_and_output_changes(trained: Any, tiny: dict[str, Path]) -> None:
    from ggt.generate.diffusers_gen import DiffusersGenerator, DiffusersOptions

    report = DegradationReport(category="rain", degradations=[])
    img = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    out_dir = trained[0].output_dir

    def run(lora: str | None) -> np.ndarray:
        opts = DiffusersOptions(model=str(tiny["model"]), pipeline="instruct-pix2pix", steps=2, max_side=64,
                                seed=1, lora=lora)  # fmt: skip
        return DiffusersGenerator(opts).restore(img, report, prompt="remove the rain")[0]

    base, folder, file = run(None), run(out_dir), run(str(Path(out_dir) / LORA_FILE))
    assert np.isfinite(folder).all()
    assert np.abs(folder - base).max() > 1e-3
    np.testing.assert_allclose(folder, file, atol=1e-6)  # folder and file name the same weights


def test_resume_continues_at_the_same_step_with_the_same_losses(tiny: dict[str, Path]) -> None:
    kw = {"steps": 6, "checkpoint_every": 3, "lr_scheduler": "cosine"}
    full = finetune(_cfg(tiny, "full", **kw))

    class Killed(Exception):
        pass

    def kill_at_5(step: int, total: int) -> None:
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        finetune(_cfg(tiny, "part", **kw), progress=kill_at_5)
    part = tiny["root"] / "part"
    assert [p.name for p in sorted((part / "checkpoints").iterdir())] == ["step-0000003"]
    res = finetune(_cfg(tiny, "part", **kw))
    assert res.start_step == 3 and res.resumed_from and res.resumed_from.endswith("step-0000003")
    assert res.losses == full.losses[3:]  # bit for bit: same batches, noise, optimizer and schedule
    log = [json.loads(x)["step"] for x in (part / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]  # the lost step 4-5 lines were replaced
    from safetensors.torch import load_file

    a, b = load_file(str(tiny["root"] / "full" / LORA_FILE)), load_file(str(part / LORA_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Finished: a rerun has nothing to do; another configuration refuses to resume.
    again = finetune(_cfg(tiny, "part", **kw))
    assert again.losses == [] and again.start_step == 6
    with pytest.raises(FinetuneError, match="another configuration"):
        finetune(_cfg(tiny, "part", **{**kw, "lr": 5e-3}))
    with pytest.raises(FinetuneError, match="already holds checkpoints"):
        finetune(_cfg(tiny, "part", **kw), resume=False)


def test_fixed_prompt_and_errors(tiny: dict[str, Path]) -> None:
    from ggt.config import ConfigError

    res = finetune(_cfg(tiny, "fixed", steps=1, data={"prompt": "fixed", "fixed_prompt": "clean it"}))
    assert len(res.losses) == 1 and res.fixed_prompts == 0
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        finetune(_cfg(tiny, "bf16", steps=1, mixed_precision="bf16", device="cpu"))
    with pytest.raises(FinetuneError, match="target_modules"):
        finetune(_cfg(tiny, "bad", steps=1, lora={"rank": 2, "target_modules": ["no_such_layer"]}))
    with pytest.raises(ValueError, match="no split 'val'"):
        finetune(_cfg(tiny, "nosplit", steps=1, data={"split": "val"}))
    with pytest.raises(ValueError, match="not available locally"):
        finetune(_cfg(tiny, "nomodel", steps=1, model=str(tiny["root"] / "missing")))
    with pytest.raises(FinetuneError, match="as pipeline image-to-image"):
        finetune(
            _cfg(tiny, "sd", steps=1, model=str(tiny["root"] / "ip2p" / "model"), pipeline="image-to-image")
        )


def test_cli_finetune(tiny: dict[str, Path], tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from ggt.cli import app

    cfg = _cfg(tiny, "cli", steps=2, checkpoint_every=1).model_dump(mode="json")
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["finetune", "--config", str(path), "--set", "steps=3", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["steps"] == 3 and len(doc["losses"]) == 3 and doc["plan"]["trainable"] > 0
    r = CliRunner().invoke(app, ["finetune", "--config", str(path), "--set", "lora.rnk=3"])
    assert r.exit_code == 2 and "unknown key 'lora.rnk'" in r.output


def test_ggt_synth_uses_the_lora(trained: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    """`ggt synth --generator diffusers --model PIPE --lora OUT` on a run: other HQ than without."""
    from typer.testing import CliRunner

    from ggt.cli import app
    from ggt.imaging import encode_image, read_image
    from ggt.ingest import ingest

    (tmp_path / "src").mkdir()
    px = (np.random.default_rng(3).random((32, 32, 3)) * 255).astype(np.uint8)
    (tmp_path / "src" / "a.png").write_bytes(encode_image(px, "png"))

    def synth(name: str, lora: str | None) -> np.ndarray:
        run = tmp_path / name
        ingest([tmp_path / "src"], run)
        report = {
            "category": "rain",
            "degradations": [],
            "scene": "",
            "measures": {},
            "analyzer": "heuristic",
        }
        set_analysis(run, report, "remove the rain")
        sets = ["synth.options.pipeline=instruct-pix2pix", "synth.options.steps=2", "synth.workers=1"]
        args = ["synth", "--run", str(run), "--generator", "diffusers", "--model", str(tiny["model"])]
        args += ["--lora", str(lora)] if lora else []
        for s in sets:
            args += ["--set", s]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        # The model and the LoRA name the variant: outputs of another LoRA never pass for these.
        (folder,) = (run / "hq").iterdir()
        assert folder.name == f"diffusers-{Path(tiny['model']).name}" + (
            f"-lora-{Path(lora).name}" if lora else ""
        )
        return read_image(next(folder.glob("*.png")))

    base, tuned = synth("base", None), synth("tuned", trained[0].output_dir)
    assert base.shape == tuned.shape == (32, 32, 3)
    assert np.abs(base - tuned).max() > 1e-3


def test_ggt_eval_scores_the_pipeline_with_and_without_the_lora(trained: Any, tiny: dict[str, Path]) -> None:
    """`ggt eval --model generator:diffusers:PIPE+lora=OUT` scores the fine-tuned model like an IR model."""
    from ggt.restore.evaluate import evaluate

    spec = f"generator:diffusers:{tiny['model']}"
    base = evaluate(spec, tiny["data"], metrics=["psnr"], split="train", device="cpu")
    tuned = evaluate(f"{spec}+lora={trained[0].output_dir}", tiny["data"], metrics=["psnr"], split="train")
    assert not base.failures and not tuned.failures
    assert tuned.model == f"diffusers-{Path(tiny['model']).name}-lora-{Path(trained[0].output_dir).name}"
    assert tuned.rows[-1].values["psnr"] != base.rows[-1].values["psnr"]
