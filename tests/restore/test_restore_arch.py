"""Architecture registry: typed options checked against spandrel's constructors, builds, errors."""

import inspect

import pytest
import torch
from pydantic import ValidationError

from ggt.restore.arch import ARCHS, ArchConfig, build_arch, forward_padded

SMALL = {
    "nafnet": {"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]},
    "swinir": {"img_size": 32, "embed_dim": 12, "depths": [1], "num_heads": [2], "window_size": 8},
    "scunet": {"config": [1] * 7, "dim": 64, "input_resolution": 64},
    "uformer": {"img_size": 32, "embed_dim": 8, "depths": [1] * 9, "num_heads": [1] * 9, "win_size": 2},
    "hat": {"img_size": 32, "embed_dim": 12, "depths": [1], "num_heads": [2], "window_size": 8,
            "compress_ratio": 2, "squeeze_factor": 6},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_options_match_spandrel_constructor(name):
    import importlib

    spec = ARCHS[name]
    params = inspect.signature(getattr(importlib.import_module(spec.module), spec.cls).__init__).parameters
    assert set(spec.options.model_fields) <= set(params), set(spec.options.model_fields) - set(params)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_build_and_run_any_size(name):
    torch.manual_seed(0)
    cfg = ArchConfig.model_validate({"type": name, **SMALL[name]})
    assert cfg.scale == 1
    model = build_arch(cfg).eval()
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        y = forward_padded(model, x, cfg.pad_multiple)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_aliases_and_upscale():
    cfg = ArchConfig.model_validate(
        {"type": "SwinIR", **SMALL["swinir"], "upscale": 2, "upsampler": "pixelshuffle"}
    )
    assert cfg.type == "swinir" and cfg.scale == 2
    y = build_arch(cfg).eval()(torch.rand(1, 3, 16, 16))
    assert y.shape == (1, 3, 32, 32)
    assert ArchConfig.model_validate_json(cfg.to_json()) == cfg


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValidationError, match=r"unknown option\(s\) widht; valid: img_channel, width"):
        ArchConfig.model_validate({"type": "nafnet", "widht": 8})


def test_bad_values_and_types_are_clear():
    with pytest.raises(ValidationError, match=r"unknown arch type 'restormer'.*non-commercial"):
        ArchConfig.model_validate({"type": "restormer"})
    with pytest.raises(ValidationError, match="unknown arch type 'edsr'; known: nafnet"):
        ArchConfig.model_validate({"type": "edsr"})
    with pytest.raises(ValidationError, match="nafnet: width: Input should be greater than or equal to 1"):
        ArchConfig.model_validate({"type": "nafnet", "width": 0})
    with pytest.raises(ValidationError, match="same length"):
        ArchConfig.model_validate({"type": "nafnet", "enc_blk_nums": [1], "dec_blk_nums": [1, 1]})
    with pytest.raises(ValidationError, match="scunet: dim"):
        ArchConfig.model_validate({"type": "scunet", "dim": 32})
    with pytest.raises(ValidationError, match="needs a 'type'"):
        ArchConfig.model_validate({"width": 8})
