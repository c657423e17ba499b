"""`ggt export`: the kept pairs of a run as a training dataset (folder/BasicSR, webdataset, parquet, HF).

The job is planned once (which pairs, which split, which shard) and the plan is saved in the export's
work folder; each shard is then written atomically (temp file + rename) and marked done, so a killed
export resumes where it stopped and a finished one is verified against its manifest. Images are copied
byte for byte where the run already holds PNGs (no decode, no re-encode) and hashed while they stream.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, Field

from ggt.dataset.card import CardStats, write_card
from ggt.dataset.manifest import MANIFEST, WORK_DIR, hash_file, write_manifest_lines
from ggt.dataset.select import candidate_pairs, current_decisions, pair_metadata, status_of
from ggt.dataset.split import SplitSpec, assign_splits, near_dup_groups
from ggt.fsutil import sync_filesystem, write_bytes_atomic
from ggt.progress import ProgressFn
from ggt.store import Run
from ggt.store.run import hq_relpath

Format = Literal["folder", "webdataset", "parquet", "hf"]
FORMATS: tuple[str, ...] = ("folder", "webdataset", "parquet", "hf")
PLAN_VERSION = 1
ROW_GROUP = 64  # pairs per parquet row group: a reader's random access decodes at most this many
_BUF = 1 << 20
_COPY_THREADS = 4  # hashing releases the GIL; a few threads keep the disk busy while one hashes
_JSON_OVERHEAD = 4096  # per-pair bytes beside the two images in a tar (json member + headers)


class ExportError(RuntimeError):
    """An export that cannot go on; the message says why and what to do."""


class ExportUsageError(ExportError):
    """An export refused before it wrote anything: bad options or an unusable `out` (the CLI exits 2)."""


class SkippedPair(BaseModel):
    id: str
    generator: str
    reason: str
    message: str


class ExportSummary(BaseModel):
    run: str
    out: str
    format: str
    pairs: int = 0
    splits: dict[str, int] = Field(default_factory=dict)
    categories: dict[str, dict[str, int]] = Field(default_factory=dict)
    generators: list[str] = Field(default_factory=list)
    shards: int = 0
    shards_resumed: int = 0
    excluded: dict[str, int] = Field(default_factory=dict)
    skipped: list[SkippedPair] = Field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    manifest: str = ""
    notes: list[str] = Field(default_factory=list)


# -- output files ----------------------------------------------------------------------------------------


def _open_output(path: Path) -> IO[bytes]:
    """Every byte of the dataset goes through here (a seam the full-disk tests patch)."""
    return open(path, "wb")


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


_local = threading.local()


def _buffer() -> tuple[bytearray, memoryview]:
    # One buffer per thread, reused: a fresh 1 MB bytearray per file costs a page fault per 4 kB.
    if not hasattr(_local, "buf"):
        _local.buf = bytearray(_BUF)
        _local.view = memoryview(_local.buf)
    return _local.buf, _local.view


def _hash_path(path: Path) -> str:
    h = hashlib.sha256()
    buf, view = _buffer()
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


class _HashingWriter:
    """A write-only file that hashes what passes through, so a shard is hashed as it is written.

    The hashing runs on a second thread (hashlib releases the GIL), so it overlaps the writing instead of
    adding to it; small writes (tar headers) are batched so the thread hand-off stays cheap.
    """

    _SMALL = 1 << 16

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.h = hashlib.sha256()
        self.size = 0
        self._pool = ThreadPoolExecutor(1)
        self._inflight: deque[Future[None]] = deque()
        self._small = bytearray()

    def _submit(self, data: bytes) -> None:
        self._inflight.append(self._pool.submit(self.h.update, data))
        while len(self._inflight) > 8:  # bounded: never more than a few MB waiting to be hashed
            self._inflight.popleft().result()

    def write(self, data: bytes | memoryview) -> int:
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer once write returns
        self.fh.write(data)
        self.size += len(data)
        if len(data) < self._SMALL:
            self._small += data
            if len(self._small) >= self._SMALL:
                self._submit(bytes(self._small))
                self._small.clear()
        else:
            if self._small:
                self._submit(bytes(self._small))
                self._small.clear()
            self._submit(data)
        return len(data)

    def hexdigest(self) -> str:
        if self._small:
            self._submit(bytes(self._small))
            self._small.clear()
        while self._inflight:
            self._inflight.popleft().result()
        return self.h.hexdigest()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()

    @property
    def closed(self) -> bool:
        return self.fh.closed


def _png_shape(head: bytes) -> tuple[int, int, int] | None:
    """(h, w, c) from a PNG's IHDR chunk: BasicSR's meta_info wants it and reading it costs nothing."""
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(head[25], 3)
    return h, w, channels


class _Source:
    """One image of a pair as PNG bytes: the run's own PNG as is, anything else (a passthrough JPEG)
    decoded and re-encoded losslessly, so the dataset holds PNGs throughout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_png = path.suffix.lower() == ".png"

    def png_bytes(self) -> bytes:
        if self.is_png:
            return self.path.read_bytes()
        from ggt.imaging import decode_image, encode_image

        return encode_image(decode_image(self.path).rgb, "png")

    def copy_to(self, dst: Path, link: bool = False) -> tuple[str, int, tuple[int, int, int] | None, bool]:
        """Put the PNG at `dst` atomically (a hard link where allowed, else a copy hashed as it streams);
        returns (sha256, size, shape, linked)."""
        tmp = _tmp(dst)
        if link and self.is_png:
            linked = False
            try:
                os.link(self.path, tmp)
                linked = True
                # The link shares the run's inode: an in-place edit of the exported file would change the
                # run too, and the run keeps no hash to notice it. Read-only makes such an edit fail.
                # Writers of the run only replace files (rename), which read-only does not hinder.
                mode = os.stat(tmp).st_mode
                if mode & 0o222:
                    os.chmod(tmp, mode & 0o7555)
            except OSError as exc:
                # Another filesystem, one without hard links, or a file we may not chmod (another owner's):
                # copy instead. A full disk is an error.
                if linked:
                    tmp.unlink(missing_ok=True)
                if exc.errno == errno.ENOSPC:
                    raise
            else:
                try:
                    with open(self.path, "rb") as fh:
                        head = fh.read(32)
                    digest = _hash_path(self.path)
                    size = self.path.stat().st_size
                    os.replace(tmp, dst)
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                return digest, size, _png_shape(head), True
        try:
            if self.is_png:
                with open(self.path, "rb") as fh:
                    head = fh.read(32)
                size = _copy_file(self.path, tmp)
                # Hashing the source (in the page cache by now) beside a kernel-side copy is faster than
                # pulling every byte through Python to hash and write it in one pass.
                digest = _hash_path(self.path)
            else:
                data = self.png_bytes()
                head, size, digest = data[:32], len(data), hashlib.sha256(data).hexdigest()
                with _open_output(tmp) as fo:
                    fo.write(data)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest, size, _png_shape(head), False


def _copy_file(src: Path, dst: Path) -> int:
    """Copy bytes src -> dst through `_open_output`; in the kernel (sendfile) when dst is a real file."""
    with open(src, "rb") as fi, _open_output(dst) as fo:
        try:
            out_fd = fo.fileno()
        except (AttributeError, OSError, ValueError):
            shutil.copyfileobj(fi, fo, _BUF)  # type: ignore[misc]
            return fi.tell()
        size = os.fstat(fi.fileno()).st_size
        offset = 0
        while offset < size:
            sent = os.sendfile(out_fd, fi.fileno(), offset, size - offset)
            if sent == 0:
                break
            offset += sent
        return offset


# -- the plan --------------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    # webdataset splits a member name at its first dot into key and extension: keep keys dot-free.
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def _params(
    fmt: str,
    generator: str | None,
    split: str,
    seed: int,
    include: list[str],
    shard_size: int,
    shard_bytes: int,
) -> dict[str, Any]:
    return {"format": fmt, "generator": generator, "split": split, "seed": seed, "include": sorted(include),
            "shard_size": shard_size, "shard_bytes": shard_bytes}  # fmt: skip


def _make_plan(r: Run, params: dict[str, Any]) -> dict[str, Any]:
    """Which pairs go where. Holds a few short strings per pair, never images or metadata rows."""
    store = r.store
    spec = SplitSpec.parse(params["split"])
    include = set(params["include"])
    statuses = {k: status_of(v["decision"]) for k, v in current_decisions(store).items()}
    excluded: dict[str, int] = {}
    skipped: list[dict[str, str]] = []
    refs: list[tuple[str, str, str, str, str, int]] = []  # id, variant, category, lq, hq, bytes
    for row in candidate_pairs(store, params["generator"]):
        key = (row["id"], row["variant"])
        st = statuses.get(key, "undecided")
        if st not in include:
            excluded[st] = excluded.get(st, 0) + 1
            continue
        synth = json.loads(row["synth"] or "{}")
        hq_rel = hq_relpath(synth, row["variant"], row["id"])
        try:
            size = (r.root / row["lq_path"]).stat().st_size
        except OSError as exc:
            skipped.append({"id": row["id"], "generator": row["variant"], "reason": "missing_lq",
                            "message": f"{row['lq_path']}: {exc.strerror or exc}"})  # fmt: skip
            continue
        try:
            size += (r.root / hq_rel).stat().st_size
        except OSError as exc:
            skipped.append({"id": row["id"], "generator": row["variant"], "reason": "missing_hq",
                            "message": f"{hq_rel}: {exc.strerror or exc}"})  # fmt: skip
            continue
        refs.append((row["id"], row["variant"], row["category"], row["lq_path"], hq_rel, size))
    groups = near_dup_groups(
        (x["id"], x["near_dup_of"], x["phash"])
        for x in store.conn.execute("SELECT id, near_dup_of, phash FROM items")
    )
    units: dict[str, tuple[str, int]] = {}
    for item, _v, cat, *_ in refs:
        units[item] = (cat, units.get(item, (cat, 0))[1] + 1)
    side = assign_splits(units, groups, spec, params["seed"])
    variants = sorted({ref[1] for ref in refs})
    multi = len(variants) > 1
    by_split: dict[str, list[tuple[str, str, str, str, str, int]]] = {"train": [], "test": []}
    for ref in refs:
        by_split[side[ref[0]]].append(ref)
    notes = _split_check(params["split"], spec, len(refs), len(by_split["train"]), len(by_split["test"]))
    shards: list[dict[str, Any]] = []
    fmt = params["format"]
    for split_name, members in by_split.items():
        if not members:
            continue
        named = sorted(((f"{ref[0]}_{_safe(ref[1])}" if multi else ref[0]), ref) for ref in members)
        chunks: list[list[list[Any]]] = [[]]
        chunk_bytes = 0
        for name, (item, variant, _cat, lq, hq, size) in named:
            cur = chunks[-1]
            full = len(cur) >= params["shard_size"]
            # The byte limit shapes tar and parquet files; for hf a split is one unit; folder by count.
            if (
                fmt in ("webdataset", "parquet")
                and cur
                and chunk_bytes + size + _JSON_OVERHEAD > params["shard_bytes"]
            ):
                full = True
            if fmt == "hf":
                full = False
            if full:
                chunks.append([])
                chunk_bytes = 0
            chunks[-1].append([item, variant, name, lq, hq])
            chunk_bytes += size + _JSON_OVERHEAD
        for i, chunk in enumerate(chunks):
            shards.append({"name": f"{split_name}-{i:05d}", "split": split_name, "index": i,
                           "count": len(chunks), "pairs": chunk})  # fmt: skip
    return {"version": PLAN_VERSION, "params": params, "variants": variants, "shards": shards,
            "excluded": excluded, "skipped": skipped, "notes": notes}  # fmt: skip


def _split_check(text: str, spec: SplitSpec, total: int, train: int, test: int) -> list[str]:
    """Refuse a split that leaves no training pairs; a note when a requested test split came out empty."""
    if total and not train:
        want = spec.wanted(total)
        why = (
            "near-duplicate groups move as a whole and took every pair"
            if want < total
            else f"it asks for {spec.count if spec.count is not None else want} of the {total} pairs"
        )
        raise ExportUsageError(
            f"split {text!r} would put all {total} pairs in the test split and leave train empty ({why}); "
            f"ask for fewer test pairs (test={total - 1} at most) or test=0 for no test split"
        )
    if total and not test and (spec.fraction or spec.count):
        return [
            f"split {text!r} gives no test pairs: {total} pairs x {spec.fraction} rounds to 0, so there is "
            "no test split; ask for a count instead (e.g. test=1)"
            if spec.fraction
            else f"split {text!r} gives no test pairs (near-duplicate groups could not be split); "
            "there is no test split"
        ]
    return []


# -- shard writers ---------------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, r: Run, out: Path, plan: dict[str, Any], link: bool = False) -> None:
        self.r = r
        self.out = out
        self.plan = plan
        self.link = link


# {"files": [[rel, sha, size]], "rows": [...], "skipped": [...], "meta_info": [...]}, saved as the done marker.
ShardResult = dict[str, Any]


def _rows_and_sources(
    ctx: _Ctx, shard: dict[str, Any]
) -> Iterator[tuple[dict[str, Any] | None, _Source, _Source, dict[str, str] | None]]:
    """(metadata row, lq, gt, skip) per pair of a shard; a pair whose files vanished yields a skip."""
    keys = [(p[0], p[1]) for p in shard["pairs"]]
    meta = pair_metadata(ctx.r.store, keys)
    for item, variant, name, lq, hq in shard["pairs"]:
        lq_src, gt_src = _Source(ctx.r.root / lq), _Source(ctx.r.root / hq)
        missing = [("missing_lq", lq, lq_src), ("missing_hq", hq, gt_src)]
        gone = next(((why, rel) for why, rel, s in missing if not s.path.is_file()), None)
        m = meta.get((item, variant))
        if gone is None and m is None:
            gone = ("missing_row", f"{item}/{variant}")
        if gone is not None:
            yield None, lq_src, gt_src, {"id": item, "generator": variant, "reason": gone[0],
                                         "message": f"{gone[1]} is gone from the run"}  # fmt: skip
            continue
        assert m is not None
        row = {"name": name, "split": shard["split"], **m}
        yield row, lq_src, gt_src, None


def _write_folder(ctx: _Ctx, shard: dict[str, Any]) -> ShardResult:
    split = shard["split"]
    (ctx.out / split / "lq").mkdir(parents=True, exist_ok=True)
    (ctx.out / split / "gt").mkdir(parents=True, exist_ok=True)
    res: ShardResult = {"files": [], "rows": [], "skipped": [], "meta_info": [], "linked": 0}

    def one(
        args: tuple[dict[str, Any], _Source, _Source],
    ) -> tuple[dict[str, Any], list[list[Any]], str, int]:
        row, lq_src, gt_src = args
        name = row["name"]
        files = []
        shape = None
        linked = 0
        for kind, src in (("lq", lq_src), ("gt", gt_src)):
            rel = f"{split}/{kind}/{name}.png"
            digest, size, shp, was_linked = src.copy_to(ctx.out / rel, link=ctx.link)
            linked += was_linked
            files.append([rel, digest, size])
            row[kind] = rel
            if kind == "gt":
                shape = shp
        h, w, c = shape or (0, 0, 3)
        row["gt_size"] = [w, h]
        return row, files, f"{name}.png ({h},{w},{c})", linked

    todo = []
    for row, lq_src, gt_src, skip in _rows_and_sources(ctx, shard):
        if skip:
            res["skipped"].append(skip)
        else:
            assert row is not None
            todo.append((row, lq_src, gt_src))
    with ThreadPoolExecutor(_COPY_THREADS) as pool:
        for row, files, meta_line, linked in pool.map(one, todo):
            res["linked"] += linked
            res["rows"].append(row)
            res["files"].extend(files)
            res["meta_info"].append(meta_line)
    return res


def _tar_add(tar: tarfile.TarFile, name: str, src: _Source | bytes, mtime: float) -> tuple[int, int] | None:
    info = tarfile.TarInfo(name)
    info.mtime = int(mtime)  # fixed, so a rerun writes identical shards
    info.mode = 0o644
    if isinstance(src, bytes):
        data = src
    elif src.is_png:
        info.size = src.path.stat().st_size
        with open(src.path, "rb") as fh:
            head = fh.read(32)
            fh.seek(0)
            tar.addfile(info, fh)
        shp = _png_shape(head)
        return (shp[1], shp[0]) if shp else None
    else:
        data = src.png_bytes()
    import io

    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    shp = _png_shape(data[:32])
    return (shp[1], shp[0]) if shp else None


@contextmanager
def _shard_file(ctx: _Ctx, rel: str, res: ShardResult) -> Iterator[_HashingWriter]:
    """A shard file written to a temporary name through a hashing writer, renamed into place when the body
    finishes and listed in `res["files"]` with its hash and size; removed if the body fails."""
    dst = ctx.out / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(dst)
    hw: _HashingWriter | None = None
    try:
        with _open_output(tmp) as raw:
            hw = _HashingWriter(raw)
            yield hw
            digest = hw.hexdigest()
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if hw is not None:
            hw.shutdown()
    res["files"].append([rel, digest, hw.size])


def _write_webdataset(ctx: _Ctx, shard: dict[str, Any]) -> ShardResult:
    rel = f"{shard['split']}/{shard['split']}-{shard['index']:06d}.tar"
    res: ShardResult = {"files": [], "rows": [], "skipped": [], "meta_info": []}
    mtime = 0.0
    with (
        _shard_file(ctx, rel, res) as hw,
        tarfile.open(fileobj=hw, mode="w", format=tarfile.USTAR_FORMAT, copybufsize=_BUF) as tar,  # type: ignore[call-overload]
    ):
        for row, lq_src, gt_src, skip in _rows_and_sources(ctx, shard):
            if skip:
                res["skipped"].append(skip)
                continue
            assert row is not None
            key = row["name"]
            _tar_add(tar, f"{key}.lq.png", lq_src, mtime)
            gt_wh = _tar_add(tar, f"{key}.gt.png", gt_src, mtime)
            row["gt_size"] = list(gt_wh or row["lq_size"])
            row["shard"] = rel
            _tar_add(tar, f"{key}.json", json.dumps(row, sort_keys=True).encode(), mtime)
            res["rows"].append(row)
    return res


def _hf_features_json() -> dict[str, Any]:
    """The `datasets` feature spec, written into parquet schema metadata so `load_dataset` decodes the
    image columns as `Image` (plain pyarrow structs otherwise load as dicts)."""
    s = {"dtype": "string", "_type": "Value"}
    i = {"dtype": "int32", "_type": "Value"}
    return {
        "id": s, "name": s, "split": s, "category": s, "source_name": s, "generator": s, "model": s,
        "prompt": s, "prompting": s, "qc_verdict": s, "decision": s, "reviewer": s,
        "lq_width": i, "lq_height": i, "gt_width": i, "gt_height": i,
        "lq": {"_type": "Image"}, "gt": {"_type": "Image"}, "metadata": s,
    }  # fmt: skip


def _arrow_schema() -> Any:
    import pyarrow as pa

    img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = []
    for name, spec in _hf_features_json().items():
        if spec["_type"] == "Image":
            fields.append(pa.field(name, img))
        else:
            fields.append(pa.field(name, pa.int32() if spec["dtype"] == "int32" else pa.string()))
    meta = {b"huggingface": json.dumps({"info": {"features": _hf_features_json()}}).encode()}
    return pa.schema(fields, metadata=meta)


def _flat(row: dict[str, Any], lq: bytes, gt: bytes) -> dict[str, Any]:
    d = row.get("decision") or {}
    qc = row.get("qc") or {}
    return {
        "id": row["id"], "name": row["name"], "split": row["split"], "category": row["category"],
        "source_name": row["source_name"], "generator": row["generator"], "model": row.get("model"),
        "prompt": row.get("prompt"), "prompting": row.get("prompting"), "qc_verdict": qc.get("verdict"),
        "decision": d.get("decision"), "reviewer": d.get("reviewer"),
        "lq_width": row["lq_size"][0], "lq_height": row["lq_size"][1],
        "gt_width": row["gt_size"][0], "gt_height": row["gt_size"][1],
        "lq": {"bytes": lq, "path": f"{row['name']}.lq.png"}, "gt": {"bytes": gt, "path": f"{row['name']}.gt.png"},
        "metadata": json.dumps(row, sort_keys=True),
    }  # fmt: skip


def _with_images(ctx: _Ctx, shard: dict[str, Any], res: ShardResult) -> Iterator[dict[str, Any]]:
    for row, lq_src, gt_src, skip in _rows_and_sources(ctx, shard):
        if skip:
            res["skipped"].append(skip)
            continue
        assert row is not None
        lq, gt = lq_src.png_bytes(), gt_src.png_bytes()
        shp = _png_shape(gt[:32])
        row["gt_size"] = [shp[1], shp[0]] if shp else list(row["lq_size"])
        res["rows"].append(row)
        yield _flat(row, lq, gt)


def _write_parquet(ctx: _Ctx, shard: dict[str, Any]) -> ShardResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rel = shard.get("rel") or f"data/{shard['split']}-{shard['index']:05d}-of-{shard['count']:05d}.parquet"
    schema = _arrow_schema()
    res: ShardResult = {"files": [], "rows": [], "skipped": [], "meta_info": []}
    # zstd is for the metadata columns; on the (already compressed) PNG bytes it gains nothing.
    with (
        _shard_file(ctx, rel, res) as hw,
        pq.ParquetWriter(hw, schema, compression="zstd", use_dictionary=False) as writer,
    ):
        batch: list[dict[str, Any]] = []
        for flat in _with_images(ctx, shard, res):
            batch.append(flat)
            if len(batch) >= ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch or not res["rows"]:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return res


def _write_hf(ctx: _Ctx, shard: dict[str, Any]) -> ShardResult:
    """A split as a `datasets` Dataset saved with `save_to_disk`.

    The rows stream into a parquet file first (our writer, HF features in its schema), which `datasets`
    converts to Arrow on disk: neither step holds the split's images in memory.
    """
    import datasets

    split = shard["split"]
    work = ctx.out / WORK_DIR / "hf_work" / split
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    res = _write_parquet(ctx, {**shard, "rel": f"{WORK_DIR}/hf_work/{split}/rows.parquet"})
    features = datasets.Features.from_dict(_hf_features_json())
    dst = ctx.out / split
    tmp = ctx.out / f".{split}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # datasets' own bars would interleave with ours (and print under --json); restore them afterwards.
    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        ds = datasets.Dataset.from_parquet(
            str(work / "rows.parquet"), features=features, cache_dir=str(work / "cache"), keep_in_memory=False
        )
        ds.save_to_disk(str(tmp))
        del ds
    finally:
        if bars_were_on:
            datasets.utils.enable_progress_bars()
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    shutil.rmtree(work, ignore_errors=True)
    res["files"] = []
    for path in sorted(dst.rglob("*")):
        if path.is_file():
            digest, size = hash_file(path)
            res["files"].append([path.relative_to(ctx.out).as_posix(), digest, size])
    return res


WRITERS: dict[str, Callable[[_Ctx, dict[str, Any]], ShardResult]] = {
    "folder": _write_folder,
    "webdataset": _write_webdataset,
    "parquet": _write_parquet,
    "hf": _write_hf,
}


# -- the verb --------------------------------------------------------------------------------------------


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> tuple[dict[str, Any] | None, bool]:
    """(the saved plan when resuming, whether `out` is an earlier export to delete first); refuses to
    write into a non-empty folder otherwise. Changes nothing: the caller deletes once the new plan stands."""
    plan_path = out / WORK_DIR / "plan.json"
    # The nearest existing folder above `out` must be a folder: `--out afile/sub` is a usage error.
    for above in (out, *out.parents):
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                what = "" if above == out else f" (in the way of {out})"
                raise ExportUsageError(f"{above} is a file, not a folder{what}; choose another --out")
            break
    non_empty = out.exists() and any(out.iterdir())
    if not non_empty:
        return None, False
    if resume and plan_path.exists():
        return json.loads(plan_path.read_text(encoding="utf-8")), False
    if overwrite:
        # Only a ggt export is deleted: a mistyped --out must never cost someone their files.
        if not (out / WORK_DIR).is_dir():
            raise ExportUsageError(
                f"{out} is not empty and is not a ggt export; refusing to delete it with --overwrite"
            )
        return None, True
    if resume:
        raise ExportUsageError(
            f"{out} is not empty and holds no export to resume ({WORK_DIR}/plan.json missing)"
        )
    raise ExportUsageError(f"{out} is not empty; pass --resume (resume=True) to continue an export there, "
                           "or --overwrite (overwrite=True) to replace it")  # fmt: skip


def _disk_error(exc: OSError, out: Path, done: int, total: int) -> ExportError:
    what = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return ExportError(
        f"export to {out} stopped: {what} ({getattr(exc, 'filename', None) or 'writing a shard'}); "
        f"{done} of {total} shards are complete and kept, the interrupted one was discarded. "
        "Free space (or choose another --out) and rerun with --resume (resume=True)."
    )


def export(
    run: Path,
    format: Format,
    out: Path,
    generator: str | None = None,
    split: str | None = None,
    seed: int | None = None,
    include: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    link: bool | None = None,
    shard_size: int | None = None,
    shard_bytes: int | None = None,
    config: Path | None = None,
    overrides: list[str] | None = None,
    progress: ProgressFn | None = None,
) -> ExportSummary:
    """Export the pairs of `run` whose current decision is in `include` (default: kept) to `out`.

    Unset options come from the run's config (`export:` section). Resumable: with `resume=True` a
    partly written export continues from its saved plan (its options must match); `overwrite=True`
    replaces an earlier ggt export. Pairs whose files vanished from the run are skipped and reported.
    `link` (folder format): hard-link the run's PNGs instead of copying them where the filesystem allows.
    """
    if format not in FORMATS:
        raise ExportUsageError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    # Checked here, not only by the config model: explicit arguments bypass its bounds (0 was read as
    # "unset", a negative count wrote empty shards).
    for name, value in (("shard_size", shard_size), ("shard_bytes", shard_bytes)):
        if value is not None and value < 1:
            flag = "--shard-size" if name == "shard_size" else "--set export.shard_bytes"
            raise ExportUsageError(f"{name} ({flag}) must be at least 1, got {value}")
    started = time.time()
    out = Path(out)
    with Run.open(run) as r:
        cfg = r.resolve_config(config, overrides).export
        params = _params(
            format,
            generator,
            split if split is not None else cfg.split,
            cfg.seed if seed is None else seed,
            list(include if include is not None else cfg.include),
            cfg.shard_size if shard_size is None else shard_size,
            cfg.shard_bytes if shard_bytes is None else shard_bytes,
        )
        bad = set(params["include"]) - {"kept", "undecided", "rejected"}
        if bad:
            raise ExportUsageError(
                f"include: unknown decision status {sorted(bad)}; use kept, undecided, rejected"
            )
        SplitSpec.parse(params["split"])  # fail on a bad spec before touching the output folder
        if generator is not None and not r.store.scalar(
            "SELECT 1 FROM stage_results WHERE stage = 'synth' AND variant = ? LIMIT 1", (generator,)
        ):
            raise ExportUsageError(f"no generated pairs for generator {generator!r} in {run}")
        saved, wipe = _prepare_out(out, resume, overwrite)
        if saved is not None and saved.get("params") != params:
            raise ExportUsageError(
                f"{out} holds an export with other options ({saved.get('params')}); resume with the same "
                "options, or pass --overwrite (overwrite=True) to start again"
            )
        # Planned before `out` is touched, so a refused split leaves an earlier export in place.
        plan = saved if saved is not None else _make_plan(r, params)
        if wipe:
            shutil.rmtree(out)
        work = out / WORK_DIR
        try:
            (work / "done").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportUsageError(
                f"cannot create {work}: {exc.strerror or exc}; choose another --out"
            ) from exc
        if saved is None:
            write_bytes_atomic(work / "plan.json", json.dumps(plan).encode("utf-8"))
        summary = ExportSummary(run=str(run), out=str(out), format=format, generators=plan["variants"],
                                excluded=plan["excluded"], shards=len(plan["shards"]))  # fmt: skip
        summary.skipped = [SkippedPair(**s) for s in plan["skipped"]]
        summary.notes += plan.get("notes", [])
        ctx = _Ctx(r, out, plan, link=cfg.link if link is None else link)
        writer = WRITERS[format]
        total_pairs = sum(len(s["pairs"]) for s in plan["shards"])
        done_pairs = 0
        redone = 0
        if progress:
            progress(0, total_pairs)
        for n_done, shard in enumerate(plan["shards"]):
            marker = work / "done" / f"{shard['name']}.json"
            if marker.exists() and _shard_intact(out, marker):
                summary.shards_resumed += 1
            else:
                if marker.exists():
                    redone += 1
                try:
                    res = writer(ctx, shard)
                    # The marker is the commit point: written after every file of the shard is in place.
                    write_bytes_atomic(marker, json.dumps(res).encode("utf-8"), fsync=False)
                except OSError as exc:
                    raise _disk_error(exc, out, n_done, len(plan["shards"])) from exc
            done_pairs += len(shard["pairs"])
            if progress:
                progress(done_pairs, total_pairs)
        if redone:
            summary.notes.append(f"{redone} shards were marked done but had files missing or cut short; "
                                 "they were written again")  # fmt: skip
        try:
            _finish(r, out, plan, summary, cfg.license)
        except OSError as exc:
            raise _disk_error(exc, out, len(plan["shards"]), len(plan["shards"])) from exc
    summary.seconds = round(time.time() - started, 3)
    return summary


def _shard_intact(out: Path, marker: Path) -> bool:
    """Whether every file a done marker lists is still there at its size: a resume must not count a shard
    whose file was deleted since (a full re-hash is `verify`'s job, and costs a read of the dataset)."""
    try:
        res = json.loads(marker.read_text(encoding="utf-8"))
        return all((out / rel).stat().st_size == size for rel, _digest, size in res["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _markers(out: Path, plan: dict[str, Any]) -> Iterator[ShardResult]:
    for shard in plan["shards"]:
        yield json.loads((out / WORK_DIR / "done" / f"{shard['name']}.json").read_text(encoding="utf-8"))


def _finish(r: Run, out: Path, plan: dict[str, Any], summary: ExportSummary, license: str) -> None:
    """metadata.jsonl, BasicSR meta_info, the card and the manifest, streamed from the done markers."""
    fmt = plan["params"]["format"]
    stats = CardStats()
    entries: list[tuple[str, str]] = []
    meta_info: dict[str, list[str]] = {}
    linked = 0
    tmp_meta = _tmp(out / "metadata.jsonl")
    with open(tmp_meta, "w", encoding="utf-8") as fh:
        for res in _markers(out, plan):
            for row in res["rows"]:
                fh.write(json.dumps(row, sort_keys=True) + "\n")
                stats.add(row)
                summary.splits[row["split"]] = summary.splits.get(row["split"], 0) + 1
                cat = summary.categories.setdefault(row["category"], {})
                cat[row["split"]] = cat.get(row["split"], 0) + 1
            for rel, digest, size in res["files"]:
                entries.append((rel, digest))
                summary.bytes += size
            summary.skipped += [SkippedPair(**s) for s in res["skipped"]]
            linked += res.get("linked", 0)
            for line in res["meta_info"]:
                # One file per split, as BasicSR's paired meta_info files list the GT folder.
                meta_info.setdefault(line_split(res), []).append(line)
    os.replace(tmp_meta, out / "metadata.jsonl")
    written = ["metadata.jsonl"]
    if fmt == "folder":
        for split_name, lines in meta_info.items():
            rel = f"{split_name}/meta_info.txt"
            write_bytes_atomic(out / rel, ("\n".join(lines) + "\n").encode("utf-8"), fsync=False)
            written.append(rel)
    if fmt == "hf":
        splits = [s for s in ("train", "test") if s in summary.splits]
        write_bytes_atomic(out / "dataset_dict.json", json.dumps({"splits": splits}).encode(), fsync=False)
        written.append("dataset_dict.json")
    written += write_card(
        out, stats, r.store, fmt=fmt, license=license, split=plan["params"]["split"],
        seed=plan["params"]["seed"], include=plan["params"]["include"], excluded=plan["excluded"],
        skipped=len(summary.skipped), run_name=r.root.name,
    )  # fmt: skip
    summary.pairs = sum(summary.splits.values())
    summary.manifest = MANIFEST
    if summary.skipped:
        summary.notes.append(
            f"{len(summary.skipped)} pairs skipped because their files are gone from the run"
        )
    if linked:
        summary.notes.append(
            f"{linked} files are hard links to the run's own files, made read-only so that editing one in "
            "place fails instead of silently changing the run (except for root); copy a file before "
            "editing it, or export with --set export.link=false (link=False) for independent copies"
        )
    if not summary.pairs:
        summary.notes += _why_empty(plan, summary)
    export_json = json.dumps(
        summary.model_dump(exclude={"seconds", "shards_resumed"}), indent=1, sort_keys=True
    )
    write_bytes_atomic(out / "export.json", export_json.encode("utf-8"), fsync=False)
    written.append("export.json")
    for rel in written:
        entries.append((rel, hash_file(out / rel)[0]))
    _remove_stray_temps(out)
    # One filesystem sync for the whole export, before the manifest declares it complete.
    sync_filesystem(out)
    entries.sort()
    write_bytes_atomic(out / MANIFEST, "".join(write_manifest_lines(entries)).encode("utf-8"))


def _why_empty(plan: dict[str, Any], summary: ExportSummary) -> list[str]:
    """Why an export holds no pairs, and what to run: an empty dataset with exit 0 gives no other hint."""
    excluded = plan["excluded"]
    gen = plan["params"]["generator"]
    if not excluded and not summary.skipped:
        where = f" for generator {gen!r}" if gen else ""
        return [f"no pairs exported: the run has no generated pairs{where}; run `ggt synth` first"]
    notes = []
    if excluded.get("undecided"):
        notes.append(
            f"{excluded['undecided']} undecided pairs were left out (no decision yet, or "
            "QC said review); decide them with `ggt qc` and `ggt review`, or pass --include undecided "
            "(include=[..., 'undecided'])"
        )
    if excluded.get("rejected"):
        notes.append(
            f"{excluded['rejected']} rejected pairs were left out (--include rejected to export them anyway)"
        )
    if excluded.get("kept"):
        notes.append(f"{excluded['kept']} kept pairs were left out by --include")
    if summary.skipped:
        notes.append(f"{len(summary.skipped)} pairs were skipped: their files are gone from the run")
    return [f"no pairs exported: {notes[0]}", *notes[1:]] if notes else notes


def line_split(res: ShardResult) -> str:
    return res["rows"][0]["split"] if res["rows"] else "train"


def _remove_stray_temps(out: Path) -> None:
    """Temp files a killed writer left behind; they never became dataset files."""
    for dirpath, dirnames, filenames in os.walk(out):
        if Path(dirpath) == out:
            dirnames[:] = [d for d in dirnames if d != WORK_DIR]
        for name in filenames:
            if name.startswith(".") and name.endswith(".tmp"):
                (Path(dirpath) / name).unlink(missing_ok=True)
