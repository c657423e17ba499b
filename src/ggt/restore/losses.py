"""Training losses, chosen by name: l1, charbonnier, ms_ssim, perceptual (VGG features, local weights only).

A config lists them with weights; the total is the weighted sum:

    losses: [{type: charbonnier, weight: 1.0}, {type: ms_ssim, weight: 0.2}]

All are plain differentiable torch; nothing is downloaded. SSIM and MS-SSIM use an 11-tap Gaussian
window (sigma 1.5) as Wang et al. do; `ssim` is also what validation reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    import torch


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class L1Options(_Options):
    pass


class CharbonnierOptions(_Options):
    eps: float = Field(1e-3, gt=0)


class MSSSIMOptions(_Options):
    # Scales beyond what the crop allows are dropped (an 11-px window needs 11 px at the coarsest scale).
    scales: int = Field(5, ge=1, le=5)


VGG_LAYERS = {
    "relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26, "relu5_4": 35,  # vgg19 indexes
}  # fmt: skip
VGG16_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}


class PerceptualOptions(_Options):
    weights: Path = Field(
        description="a local torchvision VGG state_dict (.pth/.safetensors); never downloaded"
    )
    network: Literal["vgg19", "vgg16"] = "vgg19"
    layers: dict[str, float] = Field(default_factory=lambda: {"relu2_2": 1.0, "relu3_4": 1.0})
    normalize: bool = Field(
        True, description="unit-normalise each feature vector over channels, as LPIPS does"
    )

    @model_validator(mode="after")
    def _layers(self) -> PerceptualOptions:
        table = VGG_LAYERS if self.network == "vgg19" else VGG16_LAYERS
        bad = sorted(set(self.layers) - set(table))
        if bad or not self.layers:
            raise ValueError(f"{self.network} layers must be among {', '.join(table)}; got {bad or 'none'}")
        return self


LOSSES: dict[str, type[_Options]] = {
    "l1": L1Options,
    "charbonnier": CharbonnierOptions,
    "ms_ssim": MSSSIMOptions,
    "perceptual": PerceptualOptions,
}


class LossConfig(BaseModel):
    """`type` (one of `LOSSES`), `weight`, and that loss's options as sibling keys."""

    model_config = ConfigDict(extra="allow")

    type: str
    weight: float = Field(1.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = str(data.get("type", "")).lower()
        if name not in LOSSES:
            raise ValueError(f"unknown loss type {data.get('type')!r}; known: {', '.join(LOSSES)}")
        opts_model = LOSSES[name]
        kwargs = {k: v for k, v in data.items() if k not in ("type", "weight")}
        unknown = sorted(set(kwargs) - set(opts_model.model_fields))
        if unknown:
            valid = ", ".join(["weight", *opts_model.model_fields])
            raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; valid: {valid}")
        try:
            opts = opts_model.model_validate(kwargs)
        except ValidationError as exc:
            msgs = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            raise ValueError(f"{name}: {msgs}") from None
        return {"type": name, "weight": data.get("weight", 1.0), **opts.model_dump(mode="json")}

    @property
    def options(self) -> _Options:
        return LOSSES[self.type].model_validate(self.model_extra or {})


def _gaussian_window(
    channels: int, device: Any, dtype: Any, size: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    import torch

    g = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = (g / g.sum()).to(device=device, dtype=dtype)
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and mean contrast-structure term (valid filtering, data range 1)."""
    import torch.nn.functional as F

    c1, c2 = 0.01**2, 0.03**2
    ch = x.shape[1]
    mu_x, mu_y = F.conv2d(x, window, groups=ch), F.conv2d(y, window, groups=ch)
    sxx = F.conv2d(x * x, window, groups=ch) - mu_x**2
    syy = F.conv2d(y * y, window, groups=ch) - mu_y**2
    sxy = F.conv2d(x * y, window, groups=ch) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image of two NxCxHxW batches in [0, 1] (images at least 11 px a side)."""
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {tuple(x.shape[-2:])}")
    x, y = x.float(), y.float()
    return _ssim_terms(x, y, _gaussian_window(x.shape[1], x.device, x.dtype))[0]


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image (data range 1); identical images give +inf."""
    import torch

    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)


_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, scales: int = 5) -> torch.Tensor:
    """Multi-scale SSIM per image; scales that would shrink below the 11-px window are left out."""
    import torch
    import torch.nn.functional as F

    x, y = x.float(), y.float()
    n = 1
    while n < scales and min(x.shape[-2:]) // (2**n) >= 11:
        n += 1
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"MS-SSIM needs crops of at least 11x11 pixels, got {tuple(x.shape[-2:])}")
    w = torch.tensor(_MS_WEIGHTS[:n], device=x.device)
    w = w / w.sum()
    window = _gaussian_window(x.shape[1], x.device, x.dtype)
    vals = []
    for i in range(n):
        s, cs = _ssim_terms(x, y, window)
        # relu: negative contrast-structure values make fractional powers NaN early in training.
        vals.append(torch.relu(s if i == n - 1 else cs))
        if i < n - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(vals, dim=1).clamp_min(1e-8)
    return torch.prod(stacked ** w[None, :], dim=1)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if not path.exists():
        raise FileNotFoundError(
            f"perceptual loss: weights file {path} not found (ggt never downloads weights: give a local"
            " torchvision VGG state_dict, or drop the perceptual loss)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"perceptual loss: cannot read {path} ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def _build_loss(cfg: LossConfig) -> Any:
    import torch
    from torch import nn

    opts = cfg.options

    class L1(nn.Module):
        def forward(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
            return (pred - gt).abs().mean()

    class Charbonnier(nn.Module):
        def __init__(self, eps: float) -> None:
            super().__init__()
            self.eps2 = eps * eps

        def forward(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
            return torch.sqrt((pred - gt).float().pow(2) + self.eps2).mean()

    class MSSSIM(nn.Module):
        def __init__(self, scales: int) -> None:
            super().__init__()
            self.scales = scales

        def forward(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
            with torch.autocast(pred.device.type, enabled=False):
                return 1 - ms_ssim(pred.float(), gt.float(), self.scales).mean()

    class Perceptual(nn.Module):
        def __init__(self, o: PerceptualOptions) -> None:
            super().__init__()
            from torchvision.models.vgg import cfgs, make_layers

            table = VGG_LAYERS if o.network == "vgg19" else VGG16_LAYERS
            self.taps = {table[k]: w for k, w in o.layers.items()}
            last = max(self.taps)
            # Only the feature layers (torchvision's layout, so its state_dict keys fit): no classifier.
            features = make_layers(cfgs["E" if o.network == "vgg19" else "D"])[: last + 1]
            state = _load_state(o.weights)
            # Accept a whole VGG (features.N.weight) or only its feature layers (N.weight); layers past the
            # deepest tap are not needed, so a truncated file is enough.
            state = {k.removeprefix("features."): v for k, v in state.items()}
            want = features.state_dict().keys()
            missing = [k for k in want if k not in state]
            if missing:
                raise ValueError(
                    f"perceptual loss: {o.weights} lacks {o.network} weights {', '.join(missing[:4])}"
                )
            features.load_state_dict({k: state[k] for k in want})
            self.features = features.eval().requires_grad_(False)
            self.normalize = o.normalize
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

        def _feats(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
            out, h = {}, (x - self.mean) / self.std
            for i, layer in enumerate(self.features):
                h = layer(h)
                if i in self.taps:
                    out[i] = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) if self.normalize else h
            return out

        def train(self, mode: bool = True) -> Perceptual:
            super().train(mode)
            self.features.eval()  # the feature net is fixed whatever the trainer's mode
            return self

        def forward(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
            fp, fg = self._feats(pred), self._feats(gt.detach())
            return sum(w * (fp[i] - fg[i]).abs().mean() for i, w in self.taps.items())

    if isinstance(opts, CharbonnierOptions):
        return Charbonnier(opts.eps)
    if isinstance(opts, MSSSIMOptions):
        return MSSSIM(opts.scales)
    if isinstance(opts, PerceptualOptions):
        return Perceptual(opts)
    return L1()


def build_losses(cfgs: list[LossConfig]) -> Any:
    """A module whose forward returns `(total, {name: value})`; names are `type` or `type_2`, ... when repeated."""
    from torch import nn

    class Combined(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []
            self.weights: list[float] = []
            self.terms = nn.ModuleList()
            for c in cfgs:
                name = c.type if c.type not in self.names else f"{c.type}_{self.names.count(c.type) + 1}"
                self.names.append(name)
                self.weights.append(c.weight)
                self.terms.append(_build_loss(c))

        def forward(
            self, pred: torch.Tensor, gt: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            parts = {n: t(pred, gt) for n, t in zip(self.names, self.terms, strict=True)}
            total = sum(w * parts[n] for n, w in zip(self.names, self.weights, strict=True))
            return total, parts  # type: ignore[return-value]

    return Combined()
