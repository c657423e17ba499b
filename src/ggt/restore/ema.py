"""Exponential moving average of a model's weights, kept as a second model (used for validation and saving)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """`ema = decay * ema + (1 - decay) * weights` after each optimizer step; buffers are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._src: list[torch.Tensor] = []
        self._dst: list[torch.Tensor] = []
        self._bind(model)

    def _bind(self, model: nn.Module) -> None:
        src = dict(model.named_parameters())
        self._dst = [p for _, p in self.model.named_parameters() if p.dtype.is_floating_point]
        self._src = [src[n] for n, p in self.model.named_parameters() if p.dtype.is_floating_point]
        self._src_buf = dict(model.named_buffers())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        torch._foreach_lerp_(self._dst, [p.detach() for p in self._src], 1.0 - self.decay)
        for name, b in self.model.named_buffers():
            b.copy_(self._src_buf[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
