"""ONNX export (`ggt.restore.onnx_export`, `ggt onnx`): onnxruntime reproduces torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from ggt.cli import app  # noqa: E402
from ggt.restore.arch import ArchConfig, build_arch  # noqa: E402
from ggt.restore.onnx_export import export_onnx  # noqa: E402

NAFNET = {"type": "nafnet", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}
SWINIR = {
    "type": "swinir",
    "embed_dim": 12,
    "depths": [1],
    "num_heads": [2],
    "window_size": 8,
    "img_size": 32,
}


def _net(spec):
    torch.manual_seed(0)
    return build_arch(spec).eval()


def test_dynamic_nafnet_export_matches_torch_at_other_sizes(tmp_path):
    net = _net(NAFNET)
    r = export_onnx(net, tmp_path / "n.onnx", sample=32)
    assert r.ok and r.dynamic and r.max_abs_diff is not None and r.max_abs_diff < 1e-4
    # A second, non-square size and batch 2, and a size that is not a multiple of 4, padded by the check
    # the way a caller must pad it (the graph does not).
    assert r.size_multiple == 4 and len(r.checked_shapes) == 3
    assert any(h % 4 or w % 4 for _, _, h, w in r.checked_shapes)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "n.onnx")).metadata_props}
    assert meta["ggt_scale"] == "1" and meta["ggt_size_multiple"] == "4"

    # Independently of the export's own check: a size it never saw, clamped like ggt restore's output.
    x = np.random.default_rng(1).random((1, 3, 36, 52), dtype=np.float32)
    got = ort.InferenceSession(str(tmp_path / "n.onnx")).run(None, {"input": x})[0]
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).clamp(0, 1).numpy()
    assert got.shape == (1, 3, 36, 52) and np.abs(got - ref).max() < 1e-4


def test_static_swinir_export_round_trips(tmp_path):
    r = export_onnx(_net(SWINIR), tmp_path / "s.onnx", dynamic=False, sample=30)
    assert r.ok and r.checked_shapes == [[1, 3, 32, 32]]  # the sample rounded up to the window multiple
    assert r.max_abs_diff is not None and r.max_abs_diff < 1e-4


def test_onnx_cli_on_a_checkpoint_and_bad_arguments(tmp_path):
    from ggt.restore.checkpoint import save_weights

    path = tmp_path / "model.safetensors"
    save_weights(path, _net(NAFNET).state_dict(), ArchConfig.model_validate(NAFNET), 3, ema=False)
    runner = CliRunner()
    res = runner.invoke(app, ["onnx", "--model", str(path), "--out", str(tmp_path / "m.onnx"), "--sample", "32",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["max_abs_diff"] < 1e-4 and (tmp_path / "m.onnx").stat().st_size == doc["bytes"]
    # The graph does not pad: the message must say the caller does, not that inputs are padded.
    res = runner.invoke(
        app, ["onnx", "--model", str(path), "--out", str(tmp_path / "m.onnx"), "--sample", "32"]
    )
    text = " ".join(res.output.split())
    assert res.exit_code == 0 and "caller must pad inputs to a multiple of 4 (reflect)" in text, res.output
    assert "crop the output" in text and "inputs padded to" not in text
    res = runner.invoke(app, ["onnx", "--model", str(path), "--out", str(tmp_path / "m.bin")])
    assert res.exit_code == 2 and ".onnx" in res.output
    res = runner.invoke(app, ["onnx", "--model", "identity", "--out", str(tmp_path / "i.onnx")])
    assert res.exit_code == 2 and "identity" in res.output
