"""Pairs of a ggt export for fine-tuning: random access (all four formats), prompts, deterministic crops.

Every crop and every order is a function of (seed, position), never of hidden RNG state, so a resumed run
sees exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ggt.dataset.loaders import PairedDataset, detect_format


class _TarPairs:
    """Random access into webdataset tars via the members' byte offsets (no extraction)."""

    def __init__(self, root: Path, split: str) -> None:
        self.entries: list[tuple[str, dict[str, tuple[Path, int, int]]]] = []
        for tar in sorted((root / split).glob("*.tar")):
            found: dict[str, dict[str, tuple[Path, int, int]]] = {}
            with tarfile.open(tar) as tf:
                for m in tf:
                    if m.isfile() and "." in m.name:
                        key, ext = m.name.split(".", 1)
                        found.setdefault(key, {})[ext] = (tar, m.offset_data, m.size)
            self.entries += [(k, v) for k, v in found.items() if "lq.png" in v and "gt.png" in v]

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, i: int) -> tuple[str, bytes, bytes, dict[str, Any]]:
        key, members = self.entries[i]

        def get(ext: str) -> bytes:
            path, off, size = members[ext]
            with open(path, "rb") as fh:
                fh.seek(off)
                return fh.read(size)

        return key, get("lq.png"), get("gt.png"), self.meta(i)

    def meta(self, i: int) -> dict[str, Any]:
        """The sample's json member alone (no image read)."""
        members = self.entries[i][1]
        if "json" not in members:
            return {}
        path, off, size = members["json"]
        with open(path, "rb") as fh:
            fh.seek(off)
            return dict(json.loads(fh.read(size)))


def _prompts(root: Path, split: str) -> dict[str, str]:
    """name -> prompt for one split, from the export's metadata.jsonl (every format writes it)."""
    path = root / "metadata.jsonl"
    out: dict[str, str] = {}
    if not path.exists():
        return out
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("split", split) == split and row.get("prompt"):
                out[str(row["name"])] = str(row["prompt"])
    return out


def _to_array(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


class ExportPairs:
    """One split of an export as (name, lq, gt, prompt) with float32 HxWx3 images in [0, 1]."""

    def __init__(self, root: Path, split: str, prompt_mode: str, fixed_prompt: str) -> None:
        self.root, self.split = Path(root), split
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset {self.root} does not exist")
        try:
            self.format = detect_format(self.root)
            self._tar: _TarPairs | None = None
            self._ds: PairedDataset | None = PairedDataset(self.root, split=split)
        except ValueError as e:
            if "webdataset" not in str(e):
                raise
            self.format, self._ds, self._tar = "webdataset", None, _TarPairs(self.root, split)
        except FileNotFoundError:
            raise ValueError(f"{self.root} has no split {split!r}") from None
        self.prompt_mode, self.fixed_prompt = prompt_mode, fixed_prompt
        self.prompts = _prompts(self.root, split) if prompt_mode == "pair" else {}
        self.fixed_count = 0

    def __len__(self) -> int:
        return len(self._ds) if self._ds is not None else len(self._tar or ())

    def get(self, i: int) -> tuple[str, np.ndarray, np.ndarray, str]:
        if self._ds is not None:
            s = self._ds[i]
            name, lq, gt = s["name"], _to_array(s["lq"]), _to_array(s["gt"])
            meta_prompt = None
        else:
            assert self._tar is not None
            from ggt.imaging import decode_png_fast

            name, lq_b, gt_b, meta = self._tar.read(i)
            lq = decode_png_fast(lq_b).astype(np.float32) / 255.0
            gt = decode_png_fast(gt_b).astype(np.float32) / 255.0
            meta_prompt = meta.get("prompt")
        prompt = self.fixed_prompt
        if self.prompt_mode == "pair":
            prompt = self.prompts.get(name) or meta_prompt or self.fixed_prompt
        return name, lq, gt, prompt

    def missing_prompts(self) -> int:
        """How many pairs fall back to the fixed instruction (prompt mode `pair`)."""
        if self.prompt_mode != "pair":
            return 0
        if self._tar is not None:
            tar = self._tar
            return sum(
                1
                for i, (key, _m) in enumerate(tar.entries)
                if not (self.prompts.get(key) or tar.meta(i).get("prompt"))
            )
        names = self._names()
        return sum(1 for n in names if n not in self.prompts)

    def _names(self) -> list[str]:
        ds = self._ds
        assert ds is not None
        if ds.format == "folder":
            return list(ds.names)
        if ds.format == "hf":
            return list(ds.ds["name"])
        import pyarrow.parquet as pq

        names: list[str] = []
        for f in sorted((self.root / "data").glob(f"{self.split}-*.parquet")):
            names += pq.read_table(f, columns=["name"]).column("name").to_pylist()
        return names


def square_crop(
    lq: np.ndarray, gt: np.ndarray, size: int, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """The LQ brought to the GT's size, both images' shorter side raised to ``size`` if below it, then the
    same ``size`` square cut from both: at random with ``rng``, centred without. Native resolution is kept
    where possible because downscaling the GT would erase the detail the model should learn."""
    import cv2

    h, w = gt.shape[:2]
    if lq.shape[:2] != (h, w):
        lq = cv2.resize(lq, (w, h), interpolation=cv2.INTER_CUBIC)
    if min(h, w) < size:
        f = size / min(h, w)
        nw, nh = max(size, round(w * f)), max(size, round(h * f))
        lq = cv2.resize(lq, (nw, nh), interpolation=cv2.INTER_CUBIC)
        gt = cv2.resize(gt, (nw, nh), interpolation=cv2.INTER_CUBIC)
        h, w = nh, nw
    if rng is None:
        y, x = (h - size) // 2, (w - size) // 2
    else:
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return (
        np.clip(lq[y : y + size, x : x + size], 0.0, 1.0),
        np.clip(gt[y : y + size, x : x + size], 0.0, 1.0),
    )


class CropDataset(Dataset[dict[str, Any]]):
    """Indexed by (pair index, sample position): the crop depends on the seed and the position only."""

    def __init__(self, pairs: ExportPairs, size: int, seed: int, random_crop: bool = True) -> None:
        self.pairs, self.size, self.seed, self.random_crop = pairs, size, seed, random_crop

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, position = key
        name, lq, gt, prompt = self.pairs.get(index)
        rng = np.random.default_rng([self.seed, position]) if self.random_crop else None
        lq, gt = square_crop(lq, gt, self.size, rng)

        def t(a: np.ndarray) -> torch.Tensor:
            # [-1, 1], CxHxW: what the VAEs expect.
            return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() * 2.0 - 1.0

        return {"lq": t(lq), "gt": t(gt), "prompt": prompt, "name": name}


def batch_indices(
    n: int, seed: int, micro_batch: int, process: int, processes: int, batch: int
) -> list[tuple[int, int]]:
    """The (pair index, sample position) list of global micro-batch ``micro_batch`` for one process.

    Epoch ``e`` visits the pairs in a permutation seeded by (seed, e); global sample positions run on
    across epochs, so any micro-batch can be rebuilt from its number alone (exact resume).
    """
    out = []
    per = batch * processes
    start = micro_batch * per + process * batch
    perms: dict[int, np.ndarray] = {}
    for pos in range(start, start + batch):
        epoch, k = divmod(pos, n)
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch, 7]).permutation(n)
        out.append((int(perms[epoch][k]), pos))
    return out


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "lq": torch.stack([s["lq"] for s in samples]),
        "gt": torch.stack([s["gt"] for s in samples]),
        "prompt": [s["prompt"] for s in samples],
        "name": [s["name"] for s in samples],
    }


__all__ = ["CropDataset", "ExportPairs", "batch_indices", "collate", "square_crop"]
