"""Fine-tuning data: every export format gives the same pairs and prompts; crops and order are functions of
(seed, position) only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from finetune_helpers import tiny_export

from ggt.restore.generative.data import CropDataset, ExportPairs, batch_indices, square_crop


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {fmt: tiny_export(tmp_path_factory.mktemp(fmt), n=3, size=(40, 24), fmt=fmt)
            for fmt in ("folder", "webdataset", "parquet", "hf")}  # fmt: skip


def test_all_formats_give_the_same_pairs_and_prompts(exports: dict[str, Path]) -> None:
    def read(fmt: str) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
        pairs = ExportPairs(exports[fmt], "train", "pair", "FIXED")
        assert len(pairs) == 3 and pairs.missing_prompts() == 0
        return {n: (lq, gt, p) for n, lq, gt, p in (pairs.get(i) for i in range(len(pairs)))}

    ref = read("folder")
    for name, (lq, gt, prompt) in ref.items():
        assert prompt == f"fix {name}" and lq.shape == gt.shape == (24, 40, 3) and lq.dtype == np.float32
    for fmt in ("webdataset", "parquet", "hf"):
        got = read(fmt)
        assert got.keys() == ref.keys(), fmt
        for k in ref:
            np.testing.assert_allclose(got[k][0], ref[k][0], atol=1e-6)
            np.testing.assert_allclose(got[k][1], ref[k][1], atol=1e-6)
            assert got[k][2] == ref[k][2]
    fixed = ExportPairs(exports["parquet"], "train", "fixed", "FIXED")
    assert {fixed.get(i)[3] for i in range(3)} == {"FIXED"}
    with pytest.raises(ValueError, match="no split 'val'"):
        ExportPairs(exports["folder"], "val", "pair", "x")


def test_crops_and_order_depend_on_seed_and_position_only(exports: dict[str, Path]) -> None:
    ds = CropDataset(ExportPairs(exports["folder"], "train", "pair", "x"), 16, seed=5)
    a, b, c = ds[(1, 7)], ds[(1, 7)], ds[(1, 8)]
    assert a["lq"].shape == (3, 16, 16) and float(a["lq"].min()) >= -1 and float(a["lq"].max()) <= 1
    assert np.array_equal(a["gt"].numpy(), b["gt"].numpy())  # same position, same crop
    assert not np.array_equal(a["gt"].numpy(), c["gt"].numpy())  # (deterministically) another crop
    # Every epoch visits each pair once; two processes split each global batch without overlap.
    seen = [i for mb in range(3) for p in range(2) for i, _ in batch_indices(3, 0, mb, p, 2, 1)]
    assert sorted(seen) == [0, 0, 1, 1, 2, 2]
    assert batch_indices(3, 0, 4, 1, 2, 2) == batch_indices(3, 0, 4, 1, 2, 2)
    # A GT twice the LQ's size: the LQ is brought to it and both are cut at the same place.
    lq = np.random.default_rng(0).random((8, 12, 3), dtype=np.float32)
    gt = np.repeat(np.repeat(lq, 2, 0), 2, 1)
    lq_c, gt_c = square_crop(lq, gt, 16, np.random.default_rng(1))
    assert lq_c.shape == gt_c.shape == (16, 16, 3)
    assert np.abs(lq_c - gt_c).mean() < 0.1
