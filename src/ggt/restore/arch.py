"""Restoration architectures taken from spandrel, chosen by name and built from typed options.

A config names one with `type:` and gives its options beside it (as traiNNer-redux does):

    arch: {type: nafnet, width: 16, enc_blk_nums: [1, 1], dec_blk_nums: [1, 1]}

Options are checked here (pydantic, no torch needed); `build_arch` imports spandrel's class and calls its
keyword-only constructor. Restormer is not offered: it lives in `spandrel-extra-arches` under the
Academic Public License (non-commercial use only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    import torch


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NAFNetOptions(_Options):
    img_channel: int = Field(3, ge=1)
    width: int = Field(16, ge=1)
    middle_blk_num: int = Field(1, ge=0)
    enc_blk_nums: list[int] = Field(default_factory=lambda: [1, 1, 1, 28])
    dec_blk_nums: list[int] = Field(default_factory=lambda: [1, 1, 1, 1])

    @model_validator(mode="after")
    def _levels(self) -> NAFNetOptions:
        if len(self.enc_blk_nums) != len(self.dec_blk_nums):
            raise ValueError("enc_blk_nums and dec_blk_nums must have the same length (one per level)")
        return self


class SwinIROptions(_Options):
    img_size: int = Field(64, ge=1)
    in_chans: int = Field(3, ge=1)
    embed_dim: int = Field(96, ge=1)
    depths: list[int] = Field(default_factory=lambda: [6, 6, 6, 6])
    num_heads: list[int] = Field(default_factory=lambda: [6, 6, 6, 6])
    window_size: int = Field(8, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    drop_path_rate: float = Field(0.1, ge=0, lt=1)
    upscale: int = Field(1, ge=1)
    img_range: float = 1.0
    upsampler: Literal["", "pixelshuffle", "pixelshuffledirect", "nearest+conv"] = ""
    resi_connection: Literal["1conv", "3conv"] = "1conv"

    @model_validator(mode="after")
    def _stages(self) -> SwinIROptions:
        if len(self.depths) != len(self.num_heads):
            raise ValueError("depths and num_heads must have the same length (one per stage)")
        if any(self.embed_dim % h for h in self.num_heads):
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by every num_heads entry")
        if self.upscale > 1 and not self.upsampler:
            raise ValueError("upscale > 1 needs an upsampler (e.g. pixelshuffle)")
        return self


class SCUNetOptions(_Options):
    in_nc: int = Field(3, ge=1)
    config: list[int] = Field(default_factory=lambda: [4, 4, 4, 4, 4, 4, 4], min_length=7, max_length=7)
    dim: int = Field(64, ge=64, multiple_of=32)  # spandrel's SCUNet fails below 64 (32-channel heads)
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    input_resolution: int = Field(256, ge=1)


class UformerOptions(_Options):
    img_size: int = Field(256, ge=1)
    in_chans: int = Field(3, ge=1)
    dd_in: int = Field(3, ge=1)
    embed_dim: int = Field(32, ge=1)
    depths: list[int] = Field(default_factory=lambda: [2] * 9, min_length=9, max_length=9)
    num_heads: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16, 16, 8, 4, 2], min_length=9, max_length=9
    )
    win_size: int = Field(8, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    drop_path_rate: float = Field(0.1, ge=0, lt=1)
    token_projection: Literal["linear", "conv"] = "linear"
    token_mlp: Literal["leff", "mlp", "ffn"] = "leff"
    modulator: bool = False


class HATOptions(_Options):
    img_size: int = Field(64, ge=1)
    in_chans: int = Field(3, ge=1)
    embed_dim: int = Field(96, ge=1)
    depths: list[int] = Field(default_factory=lambda: [6, 6, 6, 6])
    num_heads: list[int] = Field(default_factory=lambda: [6, 6, 6, 6])
    window_size: int = Field(16, ge=1)
    compress_ratio: int = Field(3, ge=1)
    squeeze_factor: int = Field(30, ge=1)
    conv_scale: float = 0.01
    overlap_ratio: float = Field(0.5, ge=0)
    mlp_ratio: float = Field(2.0, gt=0)
    drop_path_rate: float = Field(0.1, ge=0, lt=1)
    upscale: int = Field(1, ge=1)
    img_range: float = 1.0
    upsampler: Literal["", "pixelshuffle"] = ""
    resi_connection: Literal["1conv", "identity"] = "1conv"
    num_feat: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _stages(self) -> HATOptions:
        if len(self.depths) != len(self.num_heads):
            raise ValueError("depths and num_heads must have the same length (one per stage)")
        if any(self.embed_dim % h for h in self.num_heads):
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by every num_heads entry")
        if (
            self.embed_dim % self.compress_ratio
            or (self.embed_dim // self.compress_ratio) < self.squeeze_factor
        ):
            raise ValueError(
                f"embed_dim {self.embed_dim} / compress_ratio {self.compress_ratio} must be a whole number"
                f" of at least squeeze_factor {self.squeeze_factor}"
            )
        if self.upscale > 1 and not self.upsampler:
            raise ValueError("upscale > 1 needs an upsampler (pixelshuffle)")
        return self


class ArchSpec(BaseModel):
    """One registry entry: where spandrel keeps the class, its option model, and its size needs."""

    module: str
    cls: str
    options: type[_Options]
    # Inputs are padded (replicate) to a multiple of this before the forward pass: most networks pad
    # themselves, but Uformer and SCUNet fail on sizes they do not divide.
    pad_multiple: Any = 1
    license: str = "MIT"


ARCHS: dict[str, ArchSpec] = {
    "nafnet": ArchSpec(module="spandrel.architectures.NAFNet", cls="NAFNet", options=NAFNetOptions),
    "swinir": ArchSpec(module="spandrel.architectures.SwinIR", cls="SwinIR", options=SwinIROptions),
    "scunet": ArchSpec(
        module="spandrel.architectures.SCUNet", cls="SCUNet", options=SCUNetOptions, pad_multiple=64
    ),
    "uformer": ArchSpec(
        module="spandrel.architectures.Uformer",
        cls="Uformer",
        options=UformerOptions,
        pad_multiple=lambda o: o.win_size * 16,
    ),
    "hat": ArchSpec(module="spandrel.architectures.HAT", cls="HAT", options=HATOptions),
}

_ALIASES = {"NAFNet": "nafnet", "SwinIR": "swinir", "SCUNet": "scunet", "Uformer": "uformer", "HAT": "hat"}


class ArchConfig(BaseModel):
    """`type` (one of `ARCHS`) and that architecture's options as sibling keys; unknown options are errors."""

    model_config = ConfigDict(extra="allow")

    type: str

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("type")
        if not isinstance(name, str):
            raise ValueError(f"arch needs a 'type', one of: {', '.join(ARCHS)}")
        key = _ALIASES.get(name, name.lower())
        if key not in ARCHS:
            hint = " (Restormer is non-commercial: not supported)" if key == "restormer" else ""
            raise ValueError(f"unknown arch type {name!r}{hint}; known: {', '.join(ARCHS)}")
        spec = ARCHS[key]
        kwargs = {k: v for k, v in data.items() if k != "type"}
        unknown = sorted(set(kwargs) - set(spec.options.model_fields))
        if unknown:
            raise ValueError(
                f"{key}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(spec.options.model_fields)}"
            )
        try:
            opts = spec.options.model_validate(kwargs)
        except ValidationError as exc:
            msgs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or key}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ValueError(f"{key}: {msgs}") from None
        return {"type": key, **opts.model_dump()}

    @property
    def spec(self) -> ArchSpec:
        return ARCHS[self.type]

    @property
    def options(self) -> _Options:
        return self.spec.options.model_validate(self.model_extra or {})

    @property
    def scale(self) -> int:
        """Output size over input size: 1 for restoration, `upscale` for SwinIR/HAT super-resolution."""
        return int(getattr(self.options, "upscale", 1))

    @property
    def pad_multiple(self) -> int:
        m = self.spec.pad_multiple
        return int(m(self.options) if callable(m) else m)

    def to_json(self) -> str:
        return self.model_dump_json()


def _import_torch_stack() -> None:
    try:
        import spandrel  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{exc.name} is not installed: pip install 'ggt[train]'") from None


def build_arch(cfg: ArchConfig | dict[str, Any]) -> torch.nn.Module:
    """A freshly initialised network (train mode) from an architecture config."""
    import importlib

    if isinstance(cfg, dict):
        cfg = ArchConfig.model_validate(cfg)
    _import_torch_stack()
    cls = getattr(importlib.import_module(cfg.spec.module), cfg.spec.cls)
    return cls(**cfg.options.model_dump())


def forward_padded(model: torch.nn.Module, x: torch.Tensor, multiple: int, scale: int = 1) -> torch.Tensor:
    """`model(x)` on an input padded (edge replicate) to a multiple of `multiple`, cropped back."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return model(x)
    y = model(F.pad(x, (0, pw, 0, ph), mode="replicate"))
    return y[..., : h * scale, : w * scale]
