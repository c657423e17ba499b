"""The run folder: where a run's store, configuration, images, cache and reports live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ggt.config import GGTConfig, dump_config, resolve_run_config
from ggt.fsutil import write_bytes_atomic
from ggt.store.db import RunStore, StoreError

STORE_FILE = "ggt.sqlite"
CONFIG_FILE = "config.yaml"


class Run:
    """A run folder and its open store. `Run.open(path)` for an existing run, `Run.create(path)` to make one."""

    def __init__(self, root: Path, store: RunStore) -> None:
        self.root = root
        self.store = store

    @classmethod
    def create(cls, root: Path) -> Run:
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root} exists and is not a folder")
        for sub in ("lq", "hq", "cache", "reports"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return cls(root, RunStore(root / STORE_FILE))

    @classmethod
    def open(cls, root: Path) -> Run:
        root = Path(root)
        if not (root / STORE_FILE).exists():
            raise StoreError(f"{root} is not a ggt run (no {STORE_FILE}); create one with `ggt ingest`")
        return cls(root, RunStore(root / STORE_FILE, create=False))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def lq_dir(self) -> Path:
        return self.root / "lq"

    def hq_dir(self, generator: str) -> Path:
        return self.root / "hq" / generator

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def resolve_config(self, path: Path | None = None, overrides: list[str] | None = None) -> GGTConfig:
        """Merge a file and overrides onto the run's saved config, and save the result (provenance)."""
        cfg = resolve_run_config(self.config_path, path, overrides)
        text = dump_config(cfg)
        if not self.config_path.exists() or self.config_path.read_text(encoding="utf-8") != text:
            write_bytes_atomic(self.config_path, text.encode("utf-8"))
        return cfg


def hq_relpath(synth_result: dict[str, Any], variant: str, item_id: str) -> str:
    """Where a synth result's HQ lies, relative to the run: its recorded `hq_path`, else (results written
    before it was recorded) the generator folder's default name."""
    return synth_result.get("hq_path") or f"hq/{variant}/{item_id}.png"
