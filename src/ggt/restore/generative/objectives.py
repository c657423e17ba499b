"""Training objectives per pipeline family: how a batch (LQ condition, GT target, prompts) becomes a loss.

- UNet families (InstructPix2Pix, SD image-to-image): DDPM noise on the GT latents at a uniform timestep;
  the target is the noise (``epsilon``), the velocity (``v_prediction``) or the clean latents (``sample``)
  as the pipeline's scheduler says. InstructPix2Pix sees the LQ latents concatenated on the channels (its
  8-channel input); plain img2img has no condition input, so it learns the GT distribution for the prompt
  and receives the LQ at inference through its noised start (``strength``).
- Transformer families (FLUX.1 Kontext, Qwen-Image-Edit): rectified flow. ``x_t = (1 - s) x_0 + s noise``,
  target ``noise - x_0``; the LQ latents are appended to the image tokens as the pipelines do, and noise
  levels ``s`` are drawn logit-normal (or uniform) and shifted like the pipeline's inference schedule.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def _latent_sample(vae: Any, x: torch.Tensor, gen: torch.Generator, mode: bool = False) -> torch.Tensor:
    dist = vae.encode(x).latent_dist
    return dist.mode() if mode else dist.sample(generator=gen)


def encode_clip_text(pipe: Any, prompts: list[str], device: torch.device) -> torch.Tensor:
    tok = pipe.tokenizer(
        prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    )  # fmt: skip
    return pipe.text_encoder(tok.input_ids.to(device))[0]


def shifted_sigmas(u: torch.Tensor, scheduler_config: dict[str, Any], image_seq_len: int) -> torch.Tensor:
    """Noise levels in (0, 1) shifted the way the flow-matching scheduler shifts its inference schedule."""
    cfg = scheduler_config
    if cfg.get("use_dynamic_shifting"):
        base_len, max_len = cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096)
        base_shift, max_shift = cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15)
        m = (max_shift - base_shift) / (max_len - base_len)
        mu = image_seq_len * m + (base_shift - m * base_len)
        return math.exp(mu) / (math.exp(mu) + (1.0 / u - 1.0))
    shift = float(cfg.get("shift", 1.0))
    return shift * u / (1.0 + (shift - 1.0) * u)


class Objective:
    """Computes the loss of one micro-batch; ``denoiser`` is what the optimizer trains (maybe wrapped)."""

    family: str = ""

    def __init__(self, pipe: Any, cfg: Any, device: torch.device, weight_dtype: torch.dtype) -> None:
        self.pipe, self.cfg, self.device, self.dtype = pipe, cfg, device, weight_dtype

    def loss(self, denoiser: Any, batch: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class UNetObjective(Objective):
    family = "unet"

    def __init__(self, pipe: Any, cfg: Any, device: torch.device, weight_dtype: torch.dtype) -> None:
        super().__init__(pipe, cfg, device, weight_dtype)
        from diffusers import DDPMScheduler

        # Training noise follows the pipeline scheduler's betas and prediction type, whatever its sampler.
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unsupported scheduler prediction_type {self.prediction_type!r}")
        self.concat = cfg.pipeline == "instruct-pix2pix"
        in_ch = pipe.unet.config.in_channels
        lat_ch = pipe.vae.config.latent_channels
        if self.concat and in_ch != 2 * lat_ch:
            raise ValueError(
                f"pipeline instruct-pix2pix needs a UNet with {2 * lat_ch} input channels (noisy + LQ latents), "
                f"this one has {in_ch}"
            )

    def loss(self, denoiser: Any, batch: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
        pipe, dev = self.pipe, self.device
        gt = batch["gt"].to(dev, self.dtype)
        bsz = gt.shape[0]
        with torch.no_grad():
            latents = _latent_sample(pipe.vae, gt, gen) * pipe.vae.config.scaling_factor
            text = encode_clip_text(pipe, batch["prompt"], dev)
            cond = (
                _latent_sample(pipe.vae, batch["lq"].to(dev, self.dtype), gen, mode=True)
                if self.concat
                else None
            )
        noise = torch.randn(latents.shape, generator=gen, dtype=torch.float32).to(dev, latents.dtype)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (bsz,), generator=gen).to(dev)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        p = self.cfg.conditioning_dropout
        if self.concat and cond is not None:
            if p > 0:
                # InstructPix2Pix's dropout: p drops the text, p the image, p both (classifier-free guidance).
                r = torch.rand(bsz, generator=gen).to(dev)
                keep_text = (r >= 2 * p).to(text.dtype).view(bsz, 1, 1)
                null = encode_clip_text(pipe, [""], dev).detach()
                text = keep_text * text + (1 - keep_text) * null
                keep_img = 1 - ((r >= p) & (r < 3 * p)).to(cond.dtype)
                cond = cond * keep_img.view(bsz, 1, 1, 1)
            noisy = torch.cat([noisy, cond], dim=1)
        pred = denoiser(noisy, t, encoder_hidden_states=text, return_dict=False)[0]
        if self.prediction_type == "epsilon":
            target = noise
        elif self.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, t)
        else:
            target = latents
        return F.mse_loss(pred.float(), target.float())


class FlowObjective(Objective):
    """Shared by FLUX Kontext and Qwen-Image-Edit: sample noise levels, mix, regress the velocity."""

    family = "flow"

    def sigmas(self, bsz: int, seq_len: int, gen: torch.Generator) -> torch.Tensor:
        if self.cfg.timestep_sampling == "logit-normal":
            u = torch.sigmoid(torch.randn(bsz, generator=gen))
        else:
            u = torch.rand(bsz, generator=gen).clamp(1e-4, 1 - 1e-4)
        return shifted_sigmas(u, dict(self.pipe.scheduler.config), seq_len)

    def _mix(self, x0: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32).to(self.device, x0.dtype)
        s = self.sigmas(x0.shape[0], x0.shape[1], gen).to(self.device, x0.dtype)
        noisy = (1.0 - s.view(-1, 1, 1)) * x0 + s.view(-1, 1, 1) * noise
        return noisy, noise - x0, s


class KontextObjective(FlowObjective):
    def loss(self, denoiser: Any, batch: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
        pipe, dev = self.pipe, self.device
        vae = pipe.vae
        shift, scale = vae.config.shift_factor or 0.0, vae.config.scaling_factor
        with torch.no_grad():
            x0 = (_latent_sample(vae, batch["gt"].to(dev, self.dtype), gen) - shift) * scale
            cond = (_latent_sample(vae, batch["lq"].to(dev, self.dtype), gen, mode=True) - shift) * scale
            embeds, pooled, text_ids = pipe.encode_prompt(
                prompt=batch["prompt"],
                prompt_2=None,
                device=dev,
                max_sequence_length=self.cfg.max_sequence_length,
            )
        b, c, h, w = x0.shape
        x0p = pipe._pack_latents(x0, b, c, h, w)
        condp = pipe._pack_latents(cond, b, c, h, w)
        ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, dev, x0.dtype)
        cond_ids = ids.clone()
        cond_ids[..., 0] = 1  # Kontext marks the context image's tokens with a 1 in the first rope axis
        noisy, target, s = self._mix(x0p, gen)
        guidance = None
        if denoiser_config(denoiser).get("guidance_embeds"):
            # Guidance-distilled FLUX models take the scale as an input; 3.5 is the pipeline's default.
            g = 3.5 if self.cfg.guidance_scale is None else self.cfg.guidance_scale
            guidance = torch.full((b,), g, device=dev, dtype=torch.float32)
        pred = denoiser(
            hidden_states=torch.cat([noisy, condp], dim=1),
            timestep=s,
            guidance=guidance,
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=text_ids,
            img_ids=torch.cat([ids, cond_ids], dim=0),
            return_dict=False,
        )[0][:, : noisy.shape[1]]
        return F.mse_loss(pred.float(), target.float())


class QwenEditObjective(FlowObjective):
    """Follows QwenImageEditPipeline: the VL text encoder sees the prompt with the LQ image; untested on
    CPU here (no tiny Qwen2.5-VL could be built offline in the time), so check it on a GPU first."""

    def loss(self, denoiser: Any, batch: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
        from PIL import Image

        pipe, dev = self.pipe, self.device
        lq = batch["lq"].to(dev, self.dtype)
        pil = [
            Image.fromarray(
                ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
            )
            for x in batch["lq"]
        ]
        with torch.no_grad():
            embeds, mask = pipe.encode_prompt(prompt=batch["prompt"], image=pil, device=dev)
            x0 = pipe._encode_vae_image(batch["gt"].to(dev, self.dtype).unsqueeze(2), generator=gen)
            cond = pipe._encode_vae_image(lq.unsqueeze(2), generator=gen)
        b, c, _, h, w = x0.shape
        x0p = pipe._pack_latents(x0, b, c, h, w)
        condp = pipe._pack_latents(cond, b, c, h, w)
        noisy, target, s = self._mix(x0p, gen)
        guidance = None
        if denoiser_config(denoiser).get("guidance_embeds"):
            g = 1.0 if self.cfg.guidance_scale is None else self.cfg.guidance_scale
            guidance = torch.full((b,), g, device=dev, dtype=torch.float32)
        pred = denoiser(
            hidden_states=torch.cat([noisy, condp], dim=1),
            timestep=s,
            guidance=guidance,
            encoder_hidden_states_mask=mask,
            encoder_hidden_states=embeds,
            img_shapes=[[(1, h // 2, w // 2), (1, h // 2, w // 2)]] * b,
            return_dict=False,
        )[0][:, : noisy.shape[1]]
        return F.mse_loss(pred.float(), target.float())


def denoiser_config(denoiser: Any) -> dict[str, Any]:
    inner = getattr(denoiser, "module", denoiser)  # DDP wraps the model
    return dict(inner.config)


OBJECTIVES: dict[str, type[Objective]] = {
    "instruct-pix2pix": UNetObjective,
    "image-to-image": UNetObjective,
    "kontext": KontextObjective,
    "qwen-edit": QwenEditObjective,
}

__all__ = ["OBJECTIVES", "Objective", "shifted_sigmas"]
