"""PairedDataset over folder, parquet and hf exports, and the webdataset pipeline: aligned crops."""

import numpy as np
import pytest
import torch
from dataset_helpers import make_run

from ggt.dataset import PairedDataset, export, webdataset_pipeline


def _aligned(sample, scale):
    lq, gt = sample["lq"], sample["gt"]
    assert lq.dtype == torch.float32 and float(lq.min()) >= 0.0 and float(lq.max()) <= 1.0
    assert gt.shape[1:] == (lq.shape[1] * scale, lq.shape[2] * scale)
    # The GT is the LQ enlarged by pixel repetition, so any shared crop/flip/rotation keeps them equal.
    assert torch.equal(gt[:, ::scale, ::scale], lq)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("loaders")
    run, _ = make_run(root, {"haze": 6, "rain": 2}, size=(40, 30), scale=2, hq_from_lq=True)
    for fmt in ("folder", "parquet", "hf", "webdataset"):
        export(run, fmt, root / fmt, split="test=0.25", shard_size=3)
    return root


@pytest.mark.parametrize("fmt", ["folder", "parquet", "hf"])
def test_paired_dataset_crops_line_up(exports, fmt):
    ds = PairedDataset(exports / fmt, crop=16, flips=True, rot90=True, seed=1)
    assert ds.format == fmt and len(ds) == 6
    for i in range(len(ds)):
        s = ds[i]
        assert s["lq"].shape == (3, 16, 16) and s["gt"].shape == (3, 32, 32)
        _aligned(s, 2)
    full = PairedDataset(exports / fmt, split="test")[0]
    assert full["lq"].shape == (3, 30, 40)
    loader = torch.utils.data.DataLoader(ds, batch_size=3)
    assert next(iter(loader))["gt"].shape == (3, 3, 32, 32)


def test_same_seed_same_crops(exports):
    a = PairedDataset(exports / "folder", crop=8, flips=True, seed=5)
    b = PairedDataset(exports / "parquet", crop=8, flips=True, seed=5)
    assert all(torch.equal(a[i]["lq"], b[i]["lq"]) for i in range(len(a)))


def test_webdataset_pipeline(exports):
    urls = sorted(str(p) for p in (exports / "webdataset" / "train").glob("*.tar"))
    samples = list(webdataset_pipeline(urls, crop=12, flips=True, rot90=True))
    assert len(samples) == 6 and all(s["meta"]["split"] == "train" for s in samples)
    for s in samples:
        _aligned(s, 2)


def test_crop_larger_than_image_is_an_error(exports):
    with pytest.raises(ValueError, match="larger than"):
        PairedDataset(exports / "folder", crop=64)[0]
    with pytest.raises(ValueError, match="webdataset"):
        PairedDataset(exports / "webdataset")
    assert np.isfinite(PairedDataset(exports / "hf")[0]["gt"].numpy()).all()


def test_a_split_the_export_lacks_names_the_splits_it_has(exports):
    with pytest.raises(FileNotFoundError, match=r"no 'validation' split \(splits: test, train\)"):
        PairedDataset(exports / "folder", split="validation")
