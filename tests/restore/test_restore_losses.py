"""Losses: values against references, MS-SSIM behaviour, perceptual loss from local weights only."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from skimage.metrics import structural_similarity

from ggt.restore.losses import LossConfig, build_losses, ms_ssim, psnr, ssim


def _pair(seed=0, noise=0.1, size=64):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 3, size, size, generator=g)
    gt = torch.nn.functional.avg_pool2d(gt, 3, 1, 1)  # some structure, not pure noise
    return (gt + noise * torch.randn(gt.shape, generator=g)).clamp(0, 1), gt


def test_l1_and_charbonnier():
    pred, gt = _pair()
    loss = build_losses(
        [LossConfig(type="l1"), LossConfig.model_validate({"type": "charbonnier", "eps": 1e-3, "weight": 2})]
    )
    total, parts = loss(pred, gt)
    l1 = (pred - gt).abs().mean()
    assert torch.allclose(parts["l1"], l1)
    assert torch.allclose(parts["charbonnier"], torch.sqrt((pred - gt) ** 2 + 1e-6).mean())
    assert torch.allclose(total, parts["l1"] + 2 * parts["charbonnier"])
    dup = build_losses([LossConfig(type="l1"), LossConfig(type="l1", weight=0.5)])
    assert dup.names == ["l1", "l1_2"]


def test_ssim_matches_skimage_and_psnr():
    pred, gt = _pair()
    ours = ssim(pred, gt)
    for i in range(2):
        ref = structural_similarity(
            gt[i].permute(1, 2, 0).numpy(), pred[i].permute(1, 2, 0).numpy(), channel_axis=2, data_range=1.0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )  # fmt: skip
        assert float(ours[i]) == pytest.approx(ref, abs=2e-4)
    mse = float(((pred[0] - gt[0]) ** 2).mean())
    assert float(psnr(pred, gt)[0]) == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)


def test_ms_ssim_orders_and_differentiates():
    _, gt = _pair(size=96)
    assert torch.allclose(ms_ssim(gt, gt), torch.ones(2), atol=1e-5)
    vals = [float(ms_ssim(_pair(size=96, noise=n)[0], gt).mean()) for n in (0.02, 0.1, 0.3)]
    assert vals[0] > vals[1] > vals[2] > 0
    pred = _pair(size=24)[0].requires_grad_(True)  # 24 px: only 2 of the 5 scales fit
    loss = build_losses([LossConfig(type="ms_ssim")])(pred, _pair(size=24)[1])[0]
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 11x11"):
        ms_ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_perceptual_needs_local_weights(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    missing = LossConfig.model_validate({"type": "perceptual", "weights": str(tmp_path / "vgg19.pth")})
    with pytest.raises(FileNotFoundError, match=r"vgg19.pth not found.*never downloads"):
        build_losses([missing])
    # A randomly initialised VGG19 cut after relu2_2 stands in for real weights (none ship offline);
    # the loader takes torchvision's key layout, with or without the `features.` prefix.
    torch.manual_seed(0)
    feats = make_layers(cfgs["E"])[:9]
    path = tmp_path / "vgg19_trunc.pth"
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, path)
    cfg = LossConfig.model_validate(
        {"type": "perceptual", "weights": str(path), "layers": {"relu1_2": 1, "relu2_2": 0.5}}
    )
    loss = build_losses([cfg])
    pred, gt = _pair(size=32)
    assert float(loss(gt, gt)[0]) == 0.0
    pred.requires_grad_(True)
    total, _ = loss(pred, gt)
    total.backward()
    assert float(total) > 0 and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())
    deep = LossConfig.model_validate({"type": "perceptual", "weights": str(path), "layers": {"relu3_4": 1}})
    with pytest.raises(ValueError, match=r"lacks vgg19 weights 10.weight"):
        build_losses([deep])


def test_loss_config_errors():
    with pytest.raises(
        ValidationError, match="unknown loss type 'ssim'; known: l1, charbonnier, ms_ssim, perceptual"
    ):
        LossConfig(type="ssim")
    with pytest.raises(
        ValidationError, match="charbonnier: unknown option\\(s\\) epsilon; valid: weight, eps"
    ):
        LossConfig.model_validate({"type": "charbonnier", "epsilon": 1})
    with pytest.raises(ValidationError, match="layers must be among"):
        LossConfig.model_validate({"type": "perceptual", "weights": "x", "layers": {"conv9": 1}})
