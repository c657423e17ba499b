"""Tiled inference (`ggt.restore.infer.restore_image`) and `ggt restore` over files and folders."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("spandrel")

from typer.testing import CliRunner  # noqa: E402

from fixtures.procs import die_mid_write  # noqa: E402
from ggt.cli import app  # noqa: E402
from ggt.imaging import encode_image, read_image  # noqa: E402
from ggt.photos import load_photo  # noqa: E402
from ggt.restore.arch import ArchConfig, build_arch  # noqa: E402
from ggt.restore.infer import (  # noqa: E402
    PROVENANCE_FILE,
    Restorer,
    axis_windows,
    restore,
    restore_image,
    tile_spans,
)

NAFNET = {"type": "nafnet", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}
SWINIR = {
    "type": "swinir",
    "embed_dim": 12,
    "depths": [1],
    "num_heads": [2],
    "window_size": 8,
    "img_size": 32,
}


def _net(spec: dict, seed: int = 0):
    torch.manual_seed(seed)
    return build_arch(spec).eval()


def _photo(h: int, w: int) -> np.ndarray:
    return load_photo("astronaut")[:h, :w].astype(np.float32) / 255.0


class _Local(torch.nn.Module):
    """Two 3x3 convolutions: receptive field radius 2, so tiles with enough overlap see all they need."""

    def __init__(self, scale: int = 1) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 3 * scale * scale, 3, padding=1)
        self.up = torch.nn.PixelShuffle(scale) if scale > 1 else torch.nn.Identity()

    def forward(self, x):
        return self.up(self.b(torch.relu(self.a(x)))) * 0.5 + 0.5


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "multiple"),
    [
        (100, 64, 16, 1),
        (300, 64, 16, 4),
        (65, 64, 32, 1),
        (999, 128, 0, 16),
        (1000, 96, 32, 8),
        (130, 64, 16, 16),
    ],
)
def test_tile_windows_sum_to_one_and_skip_tile_edges(length, tile, overlap, multiple):
    spans = tile_spans(length, tile, overlap, multiple)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(s % multiple == 0 for s, _ in spans)
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert s1 > s0 and e0 - s1 >= overlap  # each pair of neighbours shares at least the overlap
    for scale in (1, 2):
        wins = axis_windows(length, tile, overlap, scale, multiple)
        total = np.zeros(length * scale)
        for (start, size, w), (s0, e0) in zip(wins, spans, strict=True):
            assert (start, start + size) == (s0, e0) and len(w) == size * scale
            total[start * scale : (start + size) * scale] += w
            if overlap >= 8 and start > 0:  # a shared left edge: its first overlap//4 pixels get no weight
                assert np.all(w[: (overlap // 4) * scale] == 0)
        np.testing.assert_allclose(total, 1.0, atol=1e-12)


@pytest.mark.parametrize("spec", [NAFNET, SWINIR], ids=["nafnet", "swinir"])
def test_tiled_equals_untiled_when_the_image_fits_one_tile(spec):
    net = _net(spec)
    img = _photo(45, 37)  # odd sizes: padded to the window/level multiple and cropped back
    whole = restore_image(net, img, tile=None)
    tiled = restore_image(net, img, tile=64, overlap=16)
    assert whole.shape == img.shape and whole.dtype == np.float32
    assert np.abs(whole - tiled).max() < 1e-4
    assert whole.min() >= 0.0 and whole.max() <= 1.0


def test_tiling_is_exact_for_a_local_model_and_close_for_nafnet():
    img = _photo(150, 130)
    local = Restorer(_Local().eval())
    diff = np.abs(restore_image(local, img, tile=None) - restore_image(local, img, tile=64, overlap=16))
    assert diff.max() < 1e-5  # receptive field radius 2 <= overlap // 4: blending hides every tile edge

    net = _net(NAFNET)
    with torch.no_grad():  # NAFNet starts with its blocks switched off (beta = gamma = 0): switch them on,
        for name, p in net.named_parameters():  # so channel attention pools over the whole input
            if name.endswith(("beta", "gamma")):
                p.normal_(0.0, 0.3)
    whole = restore_image(net, img, tile=None)
    blended = np.abs(whole - restore_image(net, img, tile=64, overlap=16))
    hard = np.abs(whole - restore_image(net, img, tile=64, overlap=0))
    print(
        f"nafnet tiled vs untiled: max {blended.max():.5f}, mean {blended.mean():.6f}; without overlap: "
        f"max {hard.max():.4f}, mean {hard.mean():.5f}; the model changes pixels by {np.abs(whole - img).mean():.3f}"
    )
    # Global pooling sees less than the whole image in a tile, so tiles cannot match exactly; blending
    # keeps the difference far below visibility and far below that of hard-edged tiles.
    assert blended.max() < 0.01 and blended.mean() < 1e-3 and hard.max() > 10 * blended.max()


def test_scale_two_models_tile_in_output_pixels():
    img = _photo(90, 70)
    up = Restorer(_Local(scale=2).eval(), scale=2)
    whole = restore_image(up, img, tile=None)
    assert whole.shape == (180, 140, 3)
    assert np.abs(whole - restore_image(up, img, tile=40, overlap=16)).max() < 1e-5

    sr = _net({**SWINIR, "upscale": 2, "upsampler": "pixelshuffledirect"})
    r = Restorer(sr, scale=2, multiple=8)
    small = _photo(30, 21)
    a, b = restore_image(r, small, tile=None), restore_image(r, small, tile=32, overlap=8)
    assert a.shape == (60, 42, 3) and np.abs(a - b).max() < 1e-4


def test_bad_tiling_options_are_clear_errors():
    net = _net(NAFNET)
    with pytest.raises(ValueError, match="overlap"):
        restore_image(net, _photo(40, 40), tile=32, overlap=20)
    with pytest.raises(ValueError, match="CUDA"):
        restore_image(net, _photo(40, 40), tile=32, overlap=8, half=True)
    with pytest.raises(ValueError, match="RGB"):
        restore_image(net, np.zeros((8, 8), np.float32))


def _checkpoint(tmp_path):
    from ggt.restore.checkpoint import save_weights

    net = _net(NAFNET)
    path = tmp_path / "model.safetensors"
    save_weights(path, net.state_dict(), ArchConfig.model_validate(NAFNET), 7, ema=False)
    return path, net


def test_restore_folder_skips_done_outputs_and_fails_only_corrupt_files(tmp_path):
    src = tmp_path / "in"
    (src / "rain").mkdir(parents=True)
    (src / "rain" / "a.png").write_bytes(encode_image(load_photo("coffee")[:70, :90], "png"))
    (src / "b.jpg").write_bytes(encode_image(load_photo("chelsea")[:64, :80], "jpeg"))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (src / "notes.txt").write_text("not an image")
    ckpt, net = _checkpoint(tmp_path)
    out = tmp_path / "out"
    s = restore(ckpt, src, out, tile=48, overlap=16, device="cpu")
    assert s.found == 3 and s.written == 2 and [f.path for f in s.failed] == [str(src / "broken.png")]
    assert s.failed[0].reason in ("corrupt", "truncated", "unsupported_format", "not_an_image")
    got = read_image(out / "rain" / "a.png")
    expect = restore_image(net, read_image(src / "rain" / "a.png"), tile=48, overlap=16)
    assert got.shape == (70, 90, 3) and np.abs(got - expect).max() <= 1 / 255 + 1e-6
    assert (out / "b.png").exists()

    die_mid_write(out / "rain" / "c.png")  # a restore killed between an output's write and its rename
    again = restore(ckpt, src, out, tile=48, overlap=16, device="cpu")
    assert again.written == 0 and again.already_done == 2 and len(again.failed) == 1
    assert [p.name for p in out.rglob(".*")] == [PROVENANCE_FILE]  # no half-written file left


def test_an_output_folder_refuses_another_models_work_as_done(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode_image(load_photo("coffee")[:40, :56], "png"))
    first, _ = _checkpoint(tmp_path)
    out = tmp_path / "out"
    assert restore(first, src, out, tile=None, device="cpu").written == 1
    # The same weights elsewhere are the same model: its outputs count as done.
    copy = tmp_path / "copy" / "same.safetensors"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    assert restore(copy, src, out, tile=None, device="cpu").already_done == 1
    # Other weights are not: refused before loading, unless asked to redo.
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    from ggt.restore.checkpoint import save_weights

    save_weights(other, _net(NAFNET, seed=1).state_dict(), ArchConfig.model_validate(NAFNET), 7, ema=False)
    before = (out / "a.png").read_bytes()
    with pytest.raises(ValueError, match="another model"):
        restore(other, src, out, tile=None, device="cpu")
    res = CliRunner().invoke(app, ["restore", str(src), str(out), "--model", str(other), "--device", "cpu"])
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert (out / "a.png").read_bytes() == before
    redo = restore(other, src, out, tile=None, device="cpu", overwrite=True)
    assert redo.written == 1 and (out / "a.png").read_bytes() != before
    assert restore(other, src, out, tile=None, device="cpu").already_done == 1  # now its folder
    with pytest.raises(ValueError, match="another model"):
        restore("identity", src, out, device="cpu")


def test_restore_cli_one_file_and_exit_codes(tmp_path):
    src = tmp_path / "photo.png"
    src.write_bytes(encode_image(load_photo("coffee")[:40, :56], "png"))
    ckpt, _ = _checkpoint(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["restore", str(src), str(tmp_path / "o" / "x.png"), "--model", str(ckpt),
                              "--device", "cpu", "--tile", "32", "--overlap", "8", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["written"] == 1 and (tmp_path / "o" / "x.png").exists()

    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    res = runner.invoke(app, ["restore", str(tmp_path / "dir"), str(tmp_path / "o2"), "--model", "identity"])
    assert res.exit_code == 1 and "bad.jpg" in res.output

    res = runner.invoke(
        app, ["restore", str(src), str(tmp_path / "o3"), "--model", str(tmp_path / "nope.pth")]
    )
    assert res.exit_code == 2 and "nope.pth" in res.output


def test_two_inputs_for_one_output_fail_the_second_instead_of_counting_it_done(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode_image(load_photo("coffee")[:40, :56], "png"))
    (src / "a.jpg").write_bytes(encode_image(load_photo("chelsea")[:32, :48], "jpeg"))
    out = tmp_path / "out"
    s = restore("identity", src, out, tile=None, device="cpu")
    # Sorted order decides: a.jpg comes first and gets a.png; a.png is a listed failure, not "done".
    assert s.found == 2 and s.written == 1 and s.already_done == 0
    assert [(f.path, f.reason, f.message) for f in s.failed] == [
        (str(src / "a.png"), "output_taken", "output a.png already taken by a.jpg")
    ]
    assert read_image(out / "a.png").shape == (32, 48, 3)  # the JPEG's output
    res = CliRunner().invoke(app, ["restore", str(src), str(tmp_path / "o2"), "--model", "identity"])
    assert res.exit_code == 1 and "already taken by a.jpg" in res.output


@pytest.mark.parametrize(
    ("args", "msg"),
    [(["--tile", "16"], "overlap 32"), (["--tile", "-4"], "tile -4"), (["--overlap", "-1"], "overlap -1")],
)
def test_bad_tiling_options_are_one_usage_error_before_any_work(tmp_path, args, msg):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        (src / name).write_bytes(encode_image(load_photo("coffee")[:40, :56], "png"))
    out = tmp_path / "out"
    # The model does not exist: the tiling error coming first shows nothing was loaded.
    cmd = ["restore", str(src), str(out), "--model", str(tmp_path / "nope.pth"), *args]
    res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 2 and msg in res.output and "nope.pth" not in res.output, res.output
    assert not out.exists()
    res = CliRunner().invoke(app, ["restore", str(src), str(out), "--model", "identity", "--tile", "0"])
    assert res.exit_code == 0 and (out / "b.png").exists(), res.output  # 0: untiled, valid


def test_a_single_file_output_is_always_rewritten(tmp_path):
    src = tmp_path / "photo.png"
    src.write_bytes(encode_image(load_photo("coffee")[:40, :56], "png"))
    ckpt, net = _checkpoint(tmp_path)
    dst = tmp_path / "one.png"
    runner = CliRunner()
    res = runner.invoke(app, ["restore", str(src), str(dst), "--model", "identity", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["written"] == 1, res.output
    before = dst.read_bytes()
    # Nothing records which model made a lone PNG: the second model's run must not be "already done".
    res = runner.invoke(
        app, ["restore", str(src), str(dst), "--model", str(ckpt), "--device", "cpu", "--json"]
    )
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and doc["written"] == 1 and doc["already_done"] == 0, res.output
    assert dst.read_bytes() != before
    expect = restore_image(net, read_image(src), tile=512, overlap=32)
    assert np.abs(read_image(dst) - expect).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("name", ["out.jpg", "out.JPEG", "out.webp"])
def test_a_single_file_output_named_like_another_format_is_a_usage_error(tmp_path, name):
    src = tmp_path / "photo.png"
    src.write_bytes(encode_image(load_photo("coffee")[:40, :56], "png"))
    res = CliRunner().invoke(app, ["restore", str(src), str(tmp_path / name), "--model", "identity"])
    want = f"name it {name.rsplit('.', 1)[0]}.png"
    assert res.exit_code == 2 and "outputs are PNG" in res.output and want in res.output, res.output
    assert not (tmp_path / name).exists()
