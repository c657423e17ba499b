"""Memory planning for LoRA fine-tuning: a simple, documented estimate printed before training starts.

The estimate (bytes, per process):

- weights: every parameter of the pipeline (denoiser, VAE, text encoders) at the frozen weights' dtype
  (2 bytes in bf16/fp16, 4 in fp32); the trainable LoRA parameters are kept in fp32 (4 bytes);
- gradients: 4 bytes per trainable parameter; optimizer: AdamW's two moments, 8 bytes per trainable one;
- activations of the denoiser's forward pass, kept for the backward pass:
  ``ACT_PER_ELEMENT x batch x sum over blocks(tokens x width)`` values at the compute dtype, where a
  transformer has ``tokens`` = image tokens (target + condition) + text tokens, ``width`` = its hidden size,
  one term per block, and a UNet has one term per resolution level (latent pixels at that level x that
  level's channels x its ResNet/attention layers, down and up). ``ACT_PER_ELEMENT`` (16) approximates the
  tensors a block saves (norms, q/k/v, attention output, MLP's 4x-wide hidden layer) with memory-efficient
  attention (no quadratic attention matrix). Gradient checkpointing keeps only each block's input (1 value
  per element) plus one block recomputed at a time;
- overhead: 10% of the above plus 0.5 GiB (CUDA context, allocator fragmentation, VAE/text-encoder passes).

It is an order-of-magnitude guide to choose resolution, batch and checkpointing, not a promise: the first
steps' peak memory is what counts, and the log prints it on CUDA.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

ACT_PER_ELEMENT = 16
OVERHEAD_FRACTION = 0.10
OVERHEAD_FIXED = 512 * 1024**2
GIB = 1024**3


class MemoryPlan(BaseModel):
    """The estimate and the numbers it was made from (bytes unless named otherwise)."""

    parameters: int
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    total: int
    batch_size: int
    resolution: int
    dtype: str
    gradient_checkpointing: bool
    free: int | None = None  # free device memory when checked (CUDA)

    def lines(self) -> list[str]:
        def g(n: int) -> str:
            return f"{n / GIB:.2f} GiB"

        share = 100.0 * self.trainable / max(1, self.parameters)
        ckpt = "on" if self.gradient_checkpointing else "off"
        out = [
            f"parameters {self.parameters:,} (trainable LoRA {self.trainable:,}, {share:.3f}%)",
            f"memory estimate at {self.resolution}x{self.resolution}, batch {self.batch_size}, {self.dtype}, "
            f"gradient checkpointing {ckpt}:",
            f"  weights {g(self.weights)}, gradients {g(self.gradients)}, optimizer {g(self.optimizer)}, "
            f"activations {g(self.activations)}, overhead {g(self.overhead)} -> total {g(self.total)}",
        ]
        if self.free is not None:
            out.append(f"  free device memory {g(self.free)}")
        return out


def denoiser_blocks(
    kind: str, config: dict[str, Any], resolution: int, text_tokens: int
) -> list[tuple[int, int]]:
    """(tokens, width) per block of the denoiser at a square ``resolution`` (see the module docstring)."""
    if kind == "unet":
        side = resolution // 8  # SD-style VAEs downsample by 8
        widths = list(config.get("block_out_channels", (320, 640, 1280, 1280)))
        layers = int(config.get("layers_per_block", 2))
        blocks = []
        for level, width in enumerate(widths):
            tokens = max(1, (side >> level)) ** 2
            # down path: `layers` blocks; up path: `layers + 1`; both carry attention at most levels.
            blocks += [(tokens, int(width))] * (2 * layers + 1)
        blocks.append((max(1, side >> (len(widths) - 1)) ** 2, int(widths[-1])))  # mid block
        return blocks
    # Transformers (FLUX, Qwen-Image): 2x2 patches of latents downsampled by 8; target + condition image.
    image_tokens = 2 * (resolution // 16) ** 2
    width = int(config.get("num_attention_heads", 24)) * int(config.get("attention_head_dim", 128))
    n = int(config.get("num_layers", 19)) + int(config.get("num_single_layers", 0))
    return [(image_tokens + text_tokens, width)] * n


def plan_memory(
    *,
    parameters: int,
    trainable: int,
    blocks: list[tuple[int, int]],
    batch_size: int,
    resolution: int,
    weight_bytes: int,
    gradient_checkpointing: bool,
) -> MemoryPlan:
    """Estimate per-process memory from parameter counts and the denoiser's blocks (see module docstring).

    ``weight_bytes`` is the size of one frozen parameter (2 for bf16/fp16, 4 for fp32); activations use
    the same size.
    """
    if parameters < trainable or trainable < 0:
        raise ValueError(
            f"trainable parameters ({trainable}) must be between 0 and parameters ({parameters})"
        )
    weights = (parameters - trainable) * weight_bytes + trainable * 4
    gradients = trainable * 4
    optimizer = trainable * 8
    elems = [t * w * batch_size for t, w in blocks]
    if gradient_checkpointing:
        act_values = sum(elems) + ACT_PER_ELEMENT * max(elems, default=0)
    else:
        act_values = ACT_PER_ELEMENT * sum(elems)
    activations = act_values * weight_bytes
    subtotal = weights + gradients + optimizer + activations
    overhead = int(subtotal * OVERHEAD_FRACTION) + OVERHEAD_FIXED
    return MemoryPlan(
        parameters=parameters,
        trainable=trainable,
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        activations=activations,
        overhead=overhead,
        total=subtotal + overhead,
        batch_size=batch_size,
        resolution=resolution,
        dtype={2: "16-bit", 4: "fp32"}.get(weight_bytes, f"{weight_bytes}-byte"),
        gradient_checkpointing=gradient_checkpointing,
    )


class InsufficientMemoryError(ValueError):
    """The estimate does not fit in the device's free memory."""


def check_fits(plan: MemoryPlan, free: int, margin: float = 0.9) -> None:
    """Raise a clear error, before any training, when ``plan.total`` exceeds ``margin`` of ``free`` bytes."""
    plan.free = free
    if plan.total > margin * free:
        tips = []
        if not plan.gradient_checkpointing:
            tips.append("gradient_checkpointing: true")
        if plan.dtype == "fp32":
            tips.append("mixed_precision: bf16")
        if plan.batch_size > 1:
            tips.append("a smaller batch_size (with grad_accum to keep the effective batch)")
        tips.append("a lower resolution")
        raise InsufficientMemoryError(
            f"fine-tuning needs about {plan.total / GIB:.1f} GiB but the GPU has {free / GIB:.1f} GiB free "
            f"({margin:.0%} usable); try " + ", ".join(tips)
        )


__all__ = ["InsufficientMemoryError", "MemoryPlan", "check_fits", "denoiser_blocks", "plan_memory"]
