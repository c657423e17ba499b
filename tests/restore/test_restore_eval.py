"""`ggt eval`: per-category tables, full-reference on exports with GT, no-reference on LQ folders."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("spandrel")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dataset"))
from dataset_helpers import make_run  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ggt.cli import app  # noqa: E402
from ggt.dataset import export  # noqa: E402
from ggt.imaging import encode_image  # noqa: E402
from ggt.photos import load_photo  # noqa: E402
from ggt.qc.metrics import create_metric  # noqa: E402
from ggt.restore.arch import ArchConfig, build_arch  # noqa: E402
from ggt.restore.evaluate import evaluate  # noqa: E402

CATS = {"haze": 4, "rain": 4}
NAFNET = {"type": "nafnet", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1], "dec_blk_nums": [1]}


def make_export(root: Path, fmt: str = "folder", size: int = 48, cats: dict[str, int] | None = None) -> Path:
    """An export whose pairs are photo crops (GT) and blurred, noisy copies (LQ); half of each category
    in the test split."""
    run, ids = make_run(root, cats or CATS, size=(size, size))
    rng = np.random.default_rng(0)
    photos = [cv2.resize(load_photo(p), (256, 256), interpolation=cv2.INTER_AREA)
              for p in ("astronaut", "coffee", "chelsea")]  # fmt: skip
    for k, item in enumerate(ids):
        y, x = rng.integers(0, 256 - size, 2)
        gt = photos[k % 3][y : y + size, x : x + size]
        lq = cv2.GaussianBlur(gt, (5, 5), 1.2).astype(np.float32) + rng.normal(0, 10, gt.shape)
        (run / "lq" / f"{item}.png").write_bytes(encode_image(np.clip(lq, 0, 255).astype(np.uint8), "png"))
        (run / "hq" / "classical" / f"{item}.png").write_bytes(encode_image(gt, "png"))
    out = root / fmt
    export(run, fmt, out, split="test=0.5", shard_size=4)
    return out


def _test_rows(export_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (export_dir / "metadata.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "test"]


def nr_folder(root: Path, corrupt: bool = False) -> Path:
    """Real-LQ stand-ins without GT: two category subfolders and one loose image."""
    src = root / "real"
    for cat, names in {"rain": ("coffee", "chelsea"), "snow": ("astronaut",)}.items():
        (src / cat).mkdir(parents=True)
        for n in names:
            img = cv2.resize(load_photo(n), (224, 128), interpolation=cv2.INTER_AREA)
            (src / cat / f"{n}.jpg").write_bytes(encode_image(img, "jpeg", quality=60))
    (src / "loose.png").write_bytes(encode_image(cv2.resize(load_photo("rocket"), (200, 120)), "png"))
    if corrupt:
        (src / "rain" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return src


def test_fr_table_has_a_row_per_category_and_overall_with_exact_values(tmp_path):
    data = make_export(tmp_path)
    rep = evaluate("identity", data, metrics=["psnr", "ssim"], out_dir=tmp_path / "ev", device="cpu")
    test = _test_rows(data)
    cats = sorted({r["category"] for r in test})
    assert [r.category for r in rep.rows] == [*cats, "overall"]
    assert rep.kind == "fr" and rep.split == "test" and [m.name for m in rep.metrics] == ["psnr", "ssim"]
    assert rep.row("overall").images == len(test) == len(rep.items)
    # The identity baseline's PSNR is the mean of the registry's PSNR of each (GT, LQ) pair.
    psnr = create_metric("psnr")
    from ggt.imaging import read_image

    for cat in cats:
        vals = [
            psnr(read_image(data / r["gt"]), read_image(data / r["lq"])) for r in test if r["category"] == cat
        ]
        assert rep.row(cat).images == len(vals)
        assert rep.row(cat).values["psnr"] == pytest.approx(np.mean(vals), abs=1e-6)
    with open(tmp_path / "ev" / "eval.csv") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["category", "images", "psnr", "ssim"]
    assert [r["category"] for r in table] == [*cats, "overall"]
    md = (tmp_path / "ev" / "eval.md").read_text()
    assert "| category | images | psnr ↑ | ssim ↑ |" in md and "| overall |" in md
    assert len((tmp_path / "ev" / "items.csv").read_text().splitlines()) == len(test) + 1


def _same_table_in(tmp_path, formats):
    base = evaluate("identity", make_export(tmp_path / "folder"), metrics=["psnr"], device="cpu")
    for fmt in formats:
        rep = evaluate("identity", make_export(tmp_path / fmt, fmt), metrics=["psnr"], device="cpu")
        assert rep.format == fmt
        assert [(r.category, r.images) for r in rep.rows] == [(r.category, r.images) for r in base.rows], fmt
        assert rep.row("overall").values["psnr"] == pytest.approx(
            base.row("overall").values["psnr"], abs=1e-9
        )


def test_parquet_and_webdataset_exports_give_the_folder_table(tmp_path):
    _same_table_in(tmp_path, ["parquet", "webdataset"])


def test_hf_export_gives_the_folder_table(tmp_path):
    _same_table_in(tmp_path, ["hf"])


def test_a_checkpoint_is_scored_through_tiles_and_metric_gaps_are_noted(tmp_path):
    from ggt.restore.checkpoint import save_weights

    data = make_export(tmp_path)
    torch.manual_seed(0)
    net = build_arch(NAFNET)
    ckpt = tmp_path / "model.safetensors"
    save_weights(ckpt, net.state_dict(), ArchConfig.model_validate(NAFNET), 1, ema=False)
    rep = evaluate(ckpt, data, metrics=["psnr", "ssim", "niqe"], tile=32, overlap=8, device="cpu",
                   out_dir=tmp_path / "ev", save_images=2)  # fmt: skip
    assert rep.model == str(ckpt) and [r.category for r in rep.rows][-1] == "overall"
    assert all(r.values["psnr"] is not None for r in rep.rows)
    # 48x48 images are too small for NIQE: the gap is reported, not hidden or fatal.
    assert rep.row("overall").values["niqe"] is None and any("niqe" in n for n in rep.notes)
    saved = sorted(p.name for p in (tmp_path / "ev" / "images").rglob("*.png"))
    assert len(saved) == 4 and sum(n.endswith(".gt.png") for n in saved) == 2


def test_nr_folder_without_gt_and_a_corrupt_image(tmp_path):
    src = nr_folder(tmp_path, corrupt=True)
    rep = evaluate("identity", src, metrics=["niqe", "brisque"], device="cpu")
    assert rep.kind == "nr" and rep.split is None
    assert [(r.category, r.images) for r in rep.rows] == [
        ("all", 1),
        ("rain", 2),
        ("snow", 1),
        ("overall", 4),
    ]
    assert [f.name for f in rep.failures] == ["rain/broken"]
    assert all(v is not None for r in rep.rows for v in r.values.values())
    with pytest.raises(ValueError, match="full-reference"):
        evaluate("identity", src, metrics=["psnr"], device="cpu")


def test_eval_cli_tables_json_and_exit_codes(tmp_path):
    data = make_export(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "--model", "identity", "--data", str(data), "--metrics", "psnr,ssim",
                              "--out", str(tmp_path / "ev"), "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "overall" in res.stdout and "psnr ↑" in res.stdout and (tmp_path / "ev" / "eval.md").exists()
    res = runner.invoke(app, ["eval", "--model", "identity", "--data", str(data), "--metrics", "psnr",
                              "--split", "train", "--json"])  # fmt: skip
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and doc["split"] == "train" and doc["rows"][-1]["category"] == "overall"

    src = nr_folder(tmp_path, corrupt=True)
    res = runner.invoke(app, ["eval", "--model", "identity", "--data", str(src), "--metrics", "brisque"])
    assert res.exit_code == 1 and "broken" in res.output
    for args, msg in (
        (["--data", str(src), "--metrics", "psnr"], "full-reference"),
        (["--data", str(data), "--metrics", "nope"], "unknown metric"),
        (["--data", str(data), "--metrics", "pyiqa"], "pyiqa:NAME"),  # was PSNR in a column named pyiqa
        (["--data", str(data), "--split", "val"], "no 'val' split"),
        (["--data", str(tmp_path / "missing")], "not a folder"),
    ):
        res = runner.invoke(app, ["eval", "--model", "identity", *args])
        assert res.exit_code == 2 and msg in res.output, (args, res.output)


def test_a_local_generator_is_scored_like_a_model(tmp_path):
    """`generator:classical` restores each LQ from its analysis, as synth would, and beats the blurred,
    noisy input on PSNR; a vendor API is refused (eval never pays)."""
    exp = make_export(tmp_path, size=64)
    base = evaluate("identity", exp, metrics=["psnr"], device="cpu")
    gen = evaluate("generator:classical", exp, metrics=["psnr"], device="cpu")
    assert gen.model == "classical" and not gen.failures
    assert [r.category for r in gen.rows] == [r.category for r in base.rows]
    # The inputs are blurred and noisy: the classical denoise/sharpen chain must bring them closer to GT.
    assert gen.rows[-1].values["psnr"] > base.rows[-1].values["psnr"] + 1.0
    with pytest.raises(ValueError, match="only local generators"):
        evaluate("generator:gemini:gemini-2.5-flash-image", exp, metrics=["psnr"], device="cpu")


@pytest.mark.parametrize(
    "args", [["--tile", "16"], ["--tile", "-4"], ["--overlap", "-1"], ["--tile", "0", "--overlap", "-1"]]
)
def test_bad_tiling_is_a_usage_error_that_keeps_an_earlier_eval(tmp_path, args):
    data = make_export(tmp_path)
    ev = tmp_path / "ev"
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "--model", "identity", "--data", str(data), "--metrics", "psnr",
                              "--out", str(ev), "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in ev.iterdir()}
    # A model that does not exist: the tiling error coming first shows nothing was loaded.
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "nope.pth"), "--data", str(data), "--metrics",
                              "psnr", "--out", str(ev), "--device", "cpu", *args])  # fmt: skip
    assert res.exit_code == 2 and "nope.pth" not in res.output and "failed" not in res.output, res.output
    assert {p.name: p.read_bytes() for p in ev.iterdir()} == before


def test_a_new_eval_removes_the_images_an_earlier_one_left(tmp_path):
    data = make_export(tmp_path)
    ev = tmp_path / "ev"
    evaluate("identity", data, metrics=["psnr"], device="cpu", out_dir=ev, save_images=-1)
    first = sorted(p.relative_to(ev).as_posix() for p in (ev / "images").rglob("*.png"))
    assert {p.split("/")[1] for p in first} == {"haze", "rain"}
    # Another model saving fewer images: none of the first model's may stay beside its tables.
    from ggt.restore.checkpoint import save_weights

    torch.manual_seed(0)
    ckpt = tmp_path / "model.safetensors"
    save_weights(ckpt, build_arch(NAFNET).state_dict(), ArchConfig.model_validate(NAFNET), 1, ema=False)
    rep = evaluate(ckpt, data, metrics=["psnr"], device="cpu", out_dir=ev, save_images=1)
    saved = sorted(p.relative_to(ev / "images") for p in (ev / "images").rglob("*.png"))
    assert len(saved) == 2 and saved[0].parts[0] == rep.items[0].category
    # Tables alone: the earlier images go too.
    evaluate("identity", data, metrics=["psnr"], device="cpu", out_dir=ev)
    assert not (ev / "images").exists() and (ev / "eval.csv").exists()
    # A folder that holds no earlier eval is not ours to clean.
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    (other / "images" / "mine.png").write_bytes(b"x")
    evaluate("identity", data, metrics=["psnr"], device="cpu", out_dir=other, save_images=1)
    assert (other / "images" / "mine.png").exists()
