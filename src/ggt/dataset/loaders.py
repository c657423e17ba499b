"""PyTorch loading of an export: `PairedDataset` (folder, parquet, hf) and `webdataset_pipeline` (tars).

Each sample is `{"lq": float32 CxHxW in [0, 1], "gt": ..., "name": str}`, optionally a random crop taken
at the same place in both images (the GT may be an integer multiple of the LQ size) and the same random
flips and 90-degree rotations applied to both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ggt.imaging import decode_png_fast


def paired_crop(
    lq: np.ndarray,
    gt: np.ndarray,
    crop: int | None,
    flips: bool,
    rot90: bool,
    gen: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The same random crop (`crop` LQ pixels a side) and augmentation of both images of a pair."""
    scale = gt.shape[0] // lq.shape[0]
    if scale < 1 or gt.shape[0] != lq.shape[0] * scale or gt.shape[1] != lq.shape[1] * scale:
        raise ValueError(f"GT {gt.shape[:2]} is not an integer multiple of LQ {lq.shape[:2]}")
    if crop is not None:
        h, w = lq.shape[:2]
        if h < crop or w < crop:
            raise ValueError(f"crop {crop} is larger than the LQ image ({w}x{h})")
        y = int(torch.randint(0, h - crop + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - crop + 1, (1,), generator=gen))
        lq = lq[y : y + crop, x : x + crop]
        gt = gt[y * scale : (y + crop) * scale, x * scale : (x + crop) * scale]
    if flips:
        if int(torch.randint(0, 2, (1,), generator=gen)):
            lq, gt = lq[:, ::-1], gt[:, ::-1]
        if int(torch.randint(0, 2, (1,), generator=gen)):
            lq, gt = lq[::-1], gt[::-1]
    if rot90:
        k = int(torch.randint(0, 4, (1,), generator=gen))
        lq, gt = np.rot90(lq, k), np.rot90(gt, k)
    return lq, gt


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def _sample(
    name: str,
    lq_png: bytes,
    gt_png: bytes,
    crop: int | None,
    flips: bool,
    rot90: bool,
    gen: torch.Generator | None,
) -> dict[str, Any]:
    lq, gt = paired_crop(decode_png_fast(lq_png), decode_png_fast(gt_png), crop, flips, rot90, gen)
    return {"lq": _tensor(lq), "gt": _tensor(gt), "name": name}


def detect_format(root: Path) -> str:
    if (root / "dataset_dict.json").exists():
        return "hf"
    if (root / "data").is_dir() and any((root / "data").glob("*.parquet")):
        return "parquet"
    if any(root.glob("*/lq")):
        return "folder"
    if any(root.glob("*/*.tar")):
        raise ValueError(f"{root} is a webdataset export: use ggt.dataset.webdataset_pipeline")
    raise ValueError(f"{root} is not a ggt export (folder, parquet or hf)")


class PairedDataset(Dataset[dict[str, Any]]):
    """Random-access pairs of one split of an export; the format is detected from the folder."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        crop: int | None = None,
        flips: bool = False,
        rot90: bool = False,
        seed: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.split, self.crop, self.flips, self.rot90 = split, crop, flips, rot90
        # A seed makes crops repeatable (tests, evaluation); unset, DataLoader workers' seeding applies.
        self.gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.format = detect_format(self.root)
        self._cache: tuple[Any, Any] | None = None
        if self.format == "folder":
            meta = self.root / split / "meta_info.txt"
            if not meta.is_file():  # a mistyped split (`validation`) deserves the names there are
                have = sorted(p.parent.name for p in self.root.glob("*/meta_info.txt"))
                raise FileNotFoundError(
                    f"{self.root} has no {split!r} split (splits: {', '.join(have) or 'none'})"
                )
            self.names = [
                line.split(" (")[0][: -len(".png")]
                for line in meta.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
        elif self.format == "parquet":
            import pyarrow.parquet as pq

            # (file, row group, row) per sample: reading one sample decodes only its row group.
            self.index: list[tuple[Path, int, int]] = []
            for f in sorted((self.root / "data").glob(f"{split}-*.parquet")):
                meta = pq.ParquetFile(f).metadata
                for g in range(meta.num_row_groups):
                    self.index += [(f, g, i) for i in range(meta.row_group(g).num_rows)]
        else:
            import datasets

            ds = datasets.load_from_disk(str(self.root / split))
            # Raw bytes: we decode with OpenCV ourselves, faster than PIL objects.
            self.ds = ds.cast_column("lq", datasets.Image(decode=False)).cast_column(
                "gt", datasets.Image(decode=False)
            )

    def __len__(self) -> int:
        if self.format == "folder":
            return len(self.names)
        if self.format == "parquet":
            return len(self.index)
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.format == "folder":
            name = self.names[i]
            lq = (self.root / self.split / "lq" / f"{name}.png").read_bytes()
            gt = (self.root / self.split / "gt" / f"{name}.png").read_bytes()
        elif self.format == "parquet":
            import pyarrow.parquet as pq

            f, g, row = self.index[i]
            if self._cache is None or self._cache[0] != (f, g):
                table = pq.ParquetFile(f).read_row_group(g, columns=["name", "lq", "gt"])
                self._cache = ((f, g), table.to_pydict())
            cols = self._cache[1]
            name, lq, gt = cols["name"][row], cols["lq"][row]["bytes"], cols["gt"][row]["bytes"]
        else:
            rec = self.ds[i]
            name, lq, gt = rec["name"], rec["lq"]["bytes"], rec["gt"]["bytes"]
        return _sample(name, lq, gt, self.crop, self.flips, self.rot90, self.gen)


def webdataset_pipeline(
    urls: str | list[str], crop: int | None = None, flips: bool = False, rot90: bool = False, shuffle: int = 0
) -> Any:
    """An iterable `webdataset.WebDataset` over export tars yielding the same samples as PairedDataset.

    `shuffle` is a sample buffer size (0: file order); shards are read in order (`shardshuffle=False`),
    so a run over the same tars is reproducible.
    """
    import webdataset as wds

    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    if shuffle:
        ds = ds.shuffle(shuffle)

    def to_sample(s: dict[str, Any]) -> dict[str, Any]:
        out = _sample(s["__key__"], s["lq.png"], s["gt.png"], crop, flips, rot90, None)
        out["meta"] = json.loads(s["json"])
        return out

    return ds.map(to_sample)
