"""The ``diffusers`` generator: a local image-editing diffusion model (InstructPix2Pix, FLUX Kontext,
Qwen-Image-Edit, any image-to-image pipeline) run through Hugging Face diffusers.

ggt does not download weights: ``model`` is a folder saved with ``save_pretrained`` or a hub id already in
the local Hugging Face cache, and with ``local_files_only`` (the default) a missing one fails at once with
``ModelNotAvailableError`` instead of starting a multi-gigabyte download inside a pool worker. Setting it
to False hands an uncached hub id to diffusers, which may then download it.

torch and diffusers are imported on the first ``restore`` (importing diffusers alone takes seconds), and
the pipeline is loaded then too, so building the generator, validating its options and pickling it to a
process-pool worker stay cheap::

    gen = DiffusersGenerator(DiffusersOptions(model="/models/instruct-pix2pix", steps=20, seed=1))
    hq, info = gen.restore(lq, report)  # prompt built from the report unless one is given
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ggt.analyze.report import DegradationReport

PipelineKind = Literal["auto", "instruct-pix2pix", "image-to-image", "kontext", "qwen-edit"]

# Class names resolved on diffusers at load time: importing them here would import diffusers with ggt.
# `auto` reads the class from the model's model_index.json; `image-to-image` lets diffusers pick the img2img
# variant of whatever text-to-image model the folder holds.
_PIPELINE_CLASSES: dict[str, str] = {
    "auto": "DiffusionPipeline",
    "instruct-pix2pix": "StableDiffusionInstructPix2PixPipeline",
    "image-to-image": "AutoPipelineForImage2Image",
    "kontext": "FluxKontextPipeline",
    "qwen-edit": "QwenImageEditPipeline",
}

# Latent models downsample by 8 and patchify (FLUX, Qwen) by a further 2: sizes that are multiples of 16
# pass every pipeline without the pipeline silently cropping or resizing on its own.
_SIZE_MULTIPLE = 16


class ModelNotAvailableError(ValueError):
    """The model (or LoRA) is neither a local folder nor in the local Hugging Face cache."""


class DiffusersOptions(BaseModel):
    """Options of the diffusers generator."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="local pipeline folder, or a hub id already in the HF cache")
    pipeline: PipelineKind = Field(default="auto", description="pipeline class; auto reads model_index.json")
    lora: str | None = Field(default=None, description="local LoRA weights (file or folder) to load on top")
    steps: int = Field(default=28, ge=1, le=1000, description="denoising steps")
    guidance_scale: float | None = Field(default=None, ge=0.0, description="text guidance; None: pipeline's")
    image_guidance_scale: float | None = Field(
        default=None, ge=0.0, description="image guidance (InstructPix2Pix); None: pipeline's default"
    )
    seed: int = Field(default=0, ge=0, description="seed of the torch.Generator: same seed, same output")
    device: str = Field(default="auto", description="auto: cuda if available, else cpu; or a torch device")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="auto: bfloat16 on CUDA, float32 elsewhere"
    )
    local_files_only: bool = Field(default=True, description="never reach the hub (no downloads)")
    max_side: int = Field(default=1024, ge=64, le=8192, description="longest side the model runs at")


def _looks_like_path(model: str) -> bool:
    # A hub id is exactly "name" or "org/name"; anything else (absolute, relative, ~, deeper) is a path.
    return (
        model.startswith(("/", ".", "~"))
        or model.count("/") > 1
        or os.sep in model.replace("/", "")
        or model.endswith((".safetensors", ".ckpt", ".bin"))
    )


def _not_available(what: str, ref: str, why: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"{what} {ref!r} is not available locally ({why}); ggt does not download weights: save the pipeline "
        "with save_pretrained to a folder (or fetch it with `hf download`) and pass that path"
    )


def _resolve_model(model: str, local_files_only: bool) -> str:
    """The path or hub id to load, checked up front so a missing model fails with a message naming it."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or _looks_like_path(model):
        why = "not a folder" if path.exists() else "no such folder"
        raise _not_available("diffusers model", model, why)
    if not local_files_only:
        return model
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(model, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError) as e:
        raise _not_available("diffusers model", model, "not in the local Hugging Face cache") from e


class DiffusersGenerator:
    """Restores an LQ photo with a local diffusion editing model; the pipeline loads on first use."""

    name: ClassVar[str] = "diffusers"
    Options: ClassVar[type[DiffusersOptions]] = DiffusersOptions

    def __init__(self, options: DiffusersOptions) -> None:
        self.options = options
        self._pipe: Any = None
        self._device: str = ""
        self._dtype: str = ""

    def __getstate__(self) -> dict[str, Any]:
        # Workers load their own pipeline: a loaded one is gigabytes of tensors, and CUDA ones do not pickle.
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.options = state["options"]
        self._pipe, self._device, self._dtype = None, "", ""

    def _load(self) -> Any:
        if self._pipe is not None:
            return self._pipe
        opts = self.options
        source = _resolve_model(opts.model, opts.local_files_only)
        lora = Path(opts.lora).expanduser() if opts.lora else None
        if lora is not None and not lora.exists():
            raise _not_available("LoRA", opts.lora or "", "no such file or folder")

        import diffusers
        import torch

        device = opts.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype_name = opts.dtype
        if dtype_name == "auto":
            # bf16 halves memory on GPUs with no fp16 overflow (NaN images) in large models; CPUs run fp32
            # because half-precision CPU kernels are slow or missing.
            dtype_name = "bfloat16" if device.startswith("cuda") else "float32"
        cls = getattr(diffusers, _PIPELINE_CLASSES[opts.pipeline])
        # diffusers 0.42 renamed `torch_dtype` to `dtype` (the old name warns); older releases know only it.
        new_kw = tuple(int(p) for p in diffusers.__version__.split(".")[:2] if p.isdigit()) >= (0, 42)
        dtype_kw = {"dtype" if new_kw else "torch_dtype": getattr(torch, dtype_name)}
        try:
            pipe = cls.from_pretrained(source, local_files_only=opts.local_files_only, **dtype_kw)
        except OSError as e:
            # A folder missing a component (or a cache entry partly fetched) surfaces here as an OSError.
            raise _not_available("diffusers model", opts.model, f"{type(e).__name__}: {e}") from e
        if lora is not None:
            if lora.is_file():
                pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
            else:
                pipe.load_lora_weights(str(lora))
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self._pipe, self._device, self._dtype = pipe, device, dtype_name
        return pipe

    def restore(
        self, img: np.ndarray, report: DegradationReport, prompt: str | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Return the edited image (float32 RGB, input's shape, [0, 1]) and what ran.

        ``prompt`` defaults to the adaptive prompt built from ``report``. The model runs with the longest
        side at most ``max_side``, rounded to a multiple of 16, and its output is resized back to the input.
        The info dict has ``generator``, ``model``, ``pipeline``, ``prompt``, ``steps``, ``seed``,
        ``device``, ``dtype``, ``work_size`` ([h, w]) and the guidance scales actually passed.
        """
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an RGB image HxWx3, got shape {img.shape}")
        if prompt is None:
            from ggt.analyze.prompts import build_prompt

            prompt = build_prompt(report)
        opts = self.options
        pipe = self._load()

        import torch
        from PIL import Image

        h, w = img.shape[:2]
        f = min(1.0, opts.max_side / max(h, w))
        wh = (
            max(_SIZE_MULTIPLE, round(w * f / _SIZE_MULTIPLE) * _SIZE_MULTIPLE),
            max(_SIZE_MULTIPLE, round(h * f / _SIZE_MULTIPLE) * _SIZE_MULTIPLE),
        )
        src = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        work = cv2.resize(src, wh, interpolation=cv2.INTER_AREA if f < 1.0 else cv2.INTER_CUBIC)
        pil = Image.fromarray((np.clip(work, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))

        # A CPU generator gives the same noise on every device, so a seed reproduces across CPU and GPU runs
        # (diffusers moves the noise to the pipeline's device).
        kwargs: dict[str, Any] = {
            "image": pil,
            "prompt": prompt,
            "num_inference_steps": opts.steps,
            "generator": torch.Generator("cpu").manual_seed(opts.seed),
            "output_type": "np",
            "guidance_scale": opts.guidance_scale,
            "image_guidance_scale": opts.image_guidance_scale,
            "height": wh[1],
            "width": wh[0],
            # FLUX Kontext otherwise rescales every input to about one megapixel, ignoring max_side.
            "max_area": wh[0] * wh[1],
            "_auto_resize": False,
        }
        # Pipelines differ in what they take (img2img has no image_guidance_scale or height): pass only what
        # this one accepts, and leave unset scales to the pipeline's own defaults.
        accepted = inspect.signature(pipe.__call__).parameters
        kwargs = {k: v for k, v in kwargs.items() if k in accepted and v is not None}
        with torch.inference_mode():
            out = pipe(**kwargs).images[0]
        res = np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)
        if res.shape[:2] != (h, w):
            shrink = res.shape[0] > h
            res = cv2.resize(res, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
            res = np.clip(res, 0.0, 1.0)
        info: dict[str, Any] = {
            "generator": self.name,
            "model": opts.model,
            "pipeline": type(pipe).__name__,
            "lora": opts.lora,
            "prompt": prompt,
            "steps": opts.steps,
            "seed": opts.seed,
            "device": self._device,
            "dtype": self._dtype,
            "work_size": [wh[1], wh[0]],
            "guidance_scale": kwargs.get("guidance_scale"),
            "image_guidance_scale": kwargs.get("image_guidance_scale"),
        }
        return res.astype(np.float32, copy=False), info


__all__ = ["DiffusersGenerator", "DiffusersOptions", "ModelNotAvailableError", "PipelineKind"]
