"""The training sample stream: deterministic, resumable and shardable across processes and workers.

The stream is an endless sequence of epochs; each epoch is a seeded permutation of the dataset (map-style
exports) or the tars in order through a seeded shuffle buffer (webdataset). Global position `g` of the
stream goes to rank `g % world`, and its crop and flips come from a generator seeded by `(seed, g)`, so
the data a step sees depends only on the seed and the step: a resumed run starts at the right sample,
and 2 processes with batch B see the same samples as one process with batch 2B.

Within a process, DataLoader worker `w` produces batches `start + w, start + w + workers, ...`; the loader
takes workers' batches in turn, so batches come out in order whatever the number of workers.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ggt.dataset.loaders import PairedDataset, _sample, detect_format
from ggt.restore.train_config import DataConfig

_MIX = 0x9E3779B97F4A7C15


def sample_seed(seed: int, g: int) -> int:
    return (seed * 1_000_003 + g * _MIX) % (2**63)


def data_format(cfg: DataConfig) -> str:
    if cfg.format != "auto":
        return cfg.format
    root = Path(cfg.path)
    if root.is_file() and root.suffix == ".tar":
        return "webdataset"
    try:
        return detect_format(root)
    except ValueError:
        if _tars(cfg):
            return "webdataset"
        raise


def _tars(cfg: DataConfig) -> list[str]:
    root = Path(cfg.path)
    if root.is_file():
        return [str(root)]
    for pattern in (f"{cfg.split}/*.tar", "*.tar"):
        found = sorted(str(p) for p in root.glob(pattern))
        if found:
            return found
    return []


class TrainStream(IterableDataset):  # type: ignore[type-arg]
    """Endless batches-worth of samples for one rank, from batch number `start_batch` on."""

    def __init__(
        self,
        cfg: DataConfig,
        *,
        crop: int,
        flips: bool,
        rot90: bool,
        batch: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        start_batch: int = 0,
    ) -> None:
        self.cfg, self.crop, self.flips, self.rot90 = cfg, crop, flips, rot90
        self.batch, self.seed, self.rank, self.world, self.start_batch = batch, seed, rank, world, start_batch
        self.format = data_format(cfg)
        if self.format == "webdataset":
            self.urls = _tars(cfg)
            if not self.urls:
                raise FileNotFoundError(f"{cfg.path}: no .tar shards for split {cfg.split!r}")
            self.ds: PairedDataset | None = None
        else:
            self.ds = PairedDataset(cfg.path, split=cfg.split, crop=crop, flips=flips, rot90=rot90)
            if len(self.ds) == 0:
                raise ValueError(f"{cfg.path}: split {cfg.split!r} has no pairs")

    def _perm(self, epoch: int) -> list[int]:
        assert self.ds is not None
        gen = torch.Generator().manual_seed(sample_seed(self.seed, -1 - epoch))
        return torch.randperm(len(self.ds), generator=gen).tolist()

    def _my_batches(self) -> Iterator[int]:
        info = get_worker_info()
        w, nw = (info.id, info.num_workers) if info else (0, 1)
        b = self.start_batch + w
        while True:
            yield b
            b += nw

    def _globals(self, b: int) -> range:
        """Global stream positions of this rank's batch `b`."""
        first = b * self.batch
        return range(
            first * self.world + self.rank, (first + self.batch) * self.world + self.rank, self.world
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.ds is not None:
            yield from self._iter_map()
        else:
            yield from self._iter_wds()

    def _item(self, name: str, lq: bytes, gt: bytes, g: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(sample_seed(self.seed, g))
        s = _sample(name, lq, gt, self.crop, self.flips, self.rot90, gen)
        s["g"] = g
        return s

    def _iter_map(self) -> Iterator[dict[str, Any]]:
        ds = self.ds
        assert ds is not None
        n = len(ds)
        perms: dict[int, list[int]] = {}
        for b in self._my_batches():
            for g in self._globals(b):
                epoch, pos = divmod(g, n)
                if epoch not in perms:
                    perms = {epoch: self._perm(epoch)}  # one epoch held at a time
                ds.gen = torch.Generator().manual_seed(sample_seed(self.seed, g))
                s = ds[perms[epoch][pos]]
                s["g"] = g
                yield s

    def _raw_stream(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(global position, raw tar sample) forever: epochs of the tars through a seeded shuffle buffer."""
        import webdataset as wds

        g, epoch = 0, 0
        while True:
            rng = random.Random(sample_seed(self.seed, -1 - epoch))
            buf: list[dict[str, Any]] = []
            empty = True
            # Every worker and rank reads all shards: the split is ours (by stream position), not webdataset's.
            tars = wds.WebDataset(
                self.urls, shardshuffle=False, empty_check=False, nodesplitter=None, workersplitter=None
            )
            for s in tars:
                empty = False
                if self.cfg.shuffle_buffer <= 1:
                    yield g, s
                    g += 1
                    continue
                buf.append(s)
                if len(buf) >= self.cfg.shuffle_buffer:
                    i = rng.randrange(len(buf))
                    buf[i], buf[-1] = buf[-1], buf[i]
                    yield g, buf.pop()
                    g += 1
            rng.shuffle(buf)
            for s in buf:
                yield g, s
                g += 1
            if empty:
                raise ValueError(f"{self.cfg.path}: the webdataset shards hold no samples")
            epoch += 1

    def _iter_wds(self) -> Iterator[dict[str, Any]]:
        batches = self._my_batches()
        b = next(batches)
        wanted = set(self._globals(b))
        # Samples before the wanted ones are read but not decoded (cheap skip on resume).
        for g, s in self._raw_stream():
            if g in wanted:
                yield self._item(s["__key__"], s["lq.png"], s["gt.png"], g)
                wanted.discard(g)
                if not wanted:
                    b = next(batches)
                    wanted = set(self._globals(b))


def val_dataset(cfg: DataConfig) -> Any:
    """Whole images of the validation split (map-style exports, or a webdataset in file order)."""
    fmt = data_format(cfg)
    if fmt == "webdataset":
        from ggt.dataset.loaders import webdataset_pipeline

        return list(webdataset_pipeline(_tars(cfg)))
    return PairedDataset(cfg.path, split=cfg.split)
