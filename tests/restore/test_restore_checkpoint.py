"""Checkpoint folders, ggt weights with metadata, community weights through spandrel, clear errors."""

import json

import pytest
import torch

from ggt.restore.arch import ArchConfig, build_arch
from ggt.restore.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_model,
    load_training_state,
    save_checkpoint,
)

ARCH = ArchConfig.model_validate({"type": "nafnet", "width": 8, "enc_blk_nums": [1], "dec_blk_nums": [1]})


def _save(root, it, model, keep=None):
    state = {"iteration": it, "rng": torch.get_rng_state(), "opt": {"lr": 1e-3}}
    return save_checkpoint(root, it, ARCH, model.state_dict(), state, ema=False, keep=keep)


def test_round_trip_folder_and_file(tmp_path):
    torch.manual_seed(0)
    model = build_arch(ARCH)
    ck = _save(tmp_path / "ckpt", 200, model)
    assert ck.name == "iter_000200" and not list(tmp_path.glob("ckpt/*.tmp"))
    x = torch.rand(1, 3, 20, 24)
    expected = model.eval()(x)
    for source in (ck, ck / "model.safetensors", tmp_path, tmp_path / "ckpt"):
        loaded = load_model(source)
        assert loaded.scale == 1 and loaded.arch["type"] == "nafnet" and loaded.iteration == 200
        assert not loaded.model.training
        assert torch.equal(loaded.model(x), expected)
    assert load_training_state(ck)["iteration"] == 200


def test_latest_ignores_partial_and_keep_prunes(tmp_path):
    model = build_arch(ARCH)
    root = tmp_path / "ckpt"
    for it in (10, 20, 30):
        _save(root, it, model, keep=2)
    assert [p.name for p in sorted(root.iterdir())] == ["iter_000020", "iter_000030"]
    (root / "iter_000040.tmp").mkdir()  # a save killed half-way
    (root / "iter_000050").mkdir()  # a folder without its files
    assert latest_checkpoint(root).name == "iter_000030"


def test_spandrel_community_weights(tmp_path):
    from spandrel.architectures.SwinIR import SwinIR

    net = SwinIR(img_size=32, embed_dim=12, depths=[1], num_heads=[2], window_size=8, upscale=2,
                 upsampler="pixelshuffle")  # fmt: skip
    pth = tmp_path / "community_swinir_x2.pth"
    torch.save({"params": net.state_dict()}, pth)
    loaded = load_model(pth)
    assert loaded.scale == 2 and loaded.arch["type"] == "SwinIR" and loaded.arch["spandrel"]
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), net.eval()(x), atol=1e-6)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.pth"):
        load_model(tmp_path / "nope.pth")
    bad = tmp_path / "garbled.pth"
    bad.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(CheckpointError, match=r"garbled.pth: not a model spandrel can identify"):
        load_model(bad)
    with pytest.raises(CheckpointError, match=r"no model.safetensors"):
        load_model(tmp_path)
    ck = _save(tmp_path / "ckpt", 5, build_arch(ARCH))
    (ck / "training_state.pt").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match=r"training_state.pt: cannot read"):
        load_training_state(ck)
    # Weights that do not fit the architecture named in the metadata.
    from safetensors.torch import load_file, save_file

    state = load_file(ck / "model.safetensors")
    state.pop(next(iter(state)))
    meta = {"ggt_arch": json.dumps(ARCH.model_dump()), "scale": "1", "iteration": "5"}
    save_file(state, tmp_path / "short.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=r"short.safetensors: weights do not fit nafnet"):
        load_model(tmp_path / "short.safetensors")
