"""Any pyiqa metric behind the ggt ``Metric`` interface, with weights only from a local folder.

::

    m = create_metric("pyiqa", metric="musiq", weights_dir="/models/pyiqa", device="cpu")
    m.kind, m.lower_better, m.range      # taken from pyiqa's DEFAULT_CONFIGS
    m(img)                               # float; FR metrics as m(lq, hq)

pyiqa downloads missing weights on first use; a QC run must never reach the network, so the weight
files pyiqa would fetch are looked up in ``weights_dir`` first (``MetricUnavailableError`` naming them
when absent), and while the pyiqa model is built its downloader is replaced by one that only reads
``weights_dir``. Weight-free metrics (psnr, ssim, gmsd, vif, ...) need no folder.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from ggt.qc.metrics.base import Kind, Metric, MetricUnavailableError, register


def _pyiqa_configs() -> dict[str, dict[str, Any]]:
    # Imported lazily: pyiqa (and torch) are an optional extra and slow to import.
    try:
        from pyiqa.default_model_configs import DEFAULT_CONFIGS
    except ImportError as exc:
        raise MetricUnavailableError("the pyiqa metric needs pyiqa: install the 'iqa' extra") from exc
    return DEFAULT_CONFIGS


class PyiqaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # A weight-free default so that ``create_metric("pyiqa")`` works like every other registered metric.
    metric: str = "psnr"
    weights_dir: Path | None = None
    device: str = "cpu"
    # Extra keyword arguments for pyiqa.create_metric (e.g. test_y_channel); override metric_opts.
    metric_opts: dict[str, Any] = {}

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        configs = _pyiqa_configs()
        if v not in configs:
            raise ValueError(f"unknown pyiqa metric {v!r}; pyiqa knows: {', '.join(sorted(configs))}")
        return v


def _parse_range(text: Any) -> tuple[float, float] | None:
    # pyiqa writes ranges as strings like "0, ~1" where "~" marks an approximate bound; keep the numbers.
    if not isinstance(text, str):
        return None
    parts = [p.strip().lstrip("~").strip() for p in text.split(",")]
    if len(parts) != 2:
        return None
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        return None


def _file_name(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def expected_weight_files(metric: str, overrides: dict[str, Any] | None = None) -> list[str]:
    """Weight file names pyiqa would download for ``metric``, as far as its arch module declares them.

    Each pyiqa arch keeps a ``default_model_urls`` dict but picks its key in its own way (``pretrained``,
    ``train_dataset``, ``'url'``...), so this is a best effort: option values that name a key, else the
    ``'url'`` key, else the only entry. Anything it misses is still caught while the model is built.
    """
    from pyiqa.utils.registry import ARCH_REGISTRY

    opts = {**_pyiqa_configs()[metric]["metric_opts"], **(overrides or {})}
    arch_type = opts.pop("type")
    if arch_type not in ARCH_REGISTRY:
        # pyiqa imports arch modules on demand in build_network; do the same to read the module's urls.
        from pyiqa.archs import _lazy_import_arch

        try:
            _lazy_import_arch(arch_type)
        except ImportError as exc:
            raise MetricUnavailableError(f"pyiqa metric {metric!r} needs module {exc.name!r}") from exc
    if arch_type not in ARCH_REGISTRY:
        return []
    arch = ARCH_REGISTRY.get(arch_type)
    # Keys are often built from constructor defaults the config leaves out (NIMA's train_dataset).
    defaults = {
        k: p.default
        for k, p in inspect.signature(arch.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    opts = {**defaults, **opts}
    if opts.get("pretrained") is False or opts.get("pretrained_model_path"):
        return []
    urls = getattr(sys.modules[arch.__module__], "default_model_urls", None)
    if not isinstance(urls, dict) or not urls:
        return []
    values = [str(v) for v in opts.values() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    # Some archs join two options into the key: LPIPS f"{version}_{net}", NIMA f"{base}-{dataset}".
    joined = [f"{a}{sep}{b}" for a in values for b in values for sep in ("_", "-")]
    keys = list(dict.fromkeys(k for k in values + joined if k in urls))
    if not keys and "url" in urls:
        keys = ["url"]
    if not keys and len(urls) == 1:
        keys = list(urls)
    return [_file_name(urls[k]) for k in keys]


@contextlib.contextmanager
def _local_weights_only(weights_dir: Path | None) -> Iterator[None]:
    """Make every download path pyiqa uses read ``weights_dir`` instead, failing when a file is absent.

    Arch modules bind ``load_file_from_url`` by ``from ... import``, so every pyiqa module holding it
    is patched. Backbones that torchvision fetches through torch.hub are looked up under
    ``weights_dir/checkpoints`` (torch.hub's layout) and any actual download raises; huggingface_hub
    (timm backbones) is switched to offline mode, which it reads from its constants at call time.
    """
    import huggingface_hub.constants as hf_constants
    import torch.hub

    def missing(name: str) -> MetricUnavailableError:
        where = f"in {weights_dir}" if weights_dir is not None else "(no weights_dir set: pass weights_dir=)"
        return MetricUnavailableError(f"pyiqa weight file {name!r} not found {where}")

    def local(
        url: str, model_dir: str | None = None, progress: bool = True, file_name: str | None = None
    ) -> str:
        name = file_name or _file_name(url)
        if weights_dir is None or not (weights_dir / name).is_file():
            raise missing(name)
        return str(weights_dir / name)

    def no_download(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        raise missing(os.path.basename(dst))

    patches: list[tuple[object, str, object]] = [(torch.hub, "download_url_to_file", no_download)]
    patches.append((hf_constants, "HF_HUB_OFFLINE", True))
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("pyiqa"):
            continue
        if callable(getattr(mod, "load_file_from_url", None)):
            patches.append((mod, "load_file_from_url", local))
        if callable(getattr(mod, "download_url_to_file", None)):
            patches.append((mod, "download_url_to_file", no_download))
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in patches]
    old_hub_dir = torch.hub.get_dir()
    old_env = os.environ.get("HF_HUB_OFFLINE")
    try:
        for mod, attr, value in patches:
            setattr(mod, attr, value)
        os.environ["HF_HUB_OFFLINE"] = "1"
        if weights_dir is not None:
            torch.hub.set_dir(str(weights_dir))
        yield
    finally:
        for mod, attr, value in reversed(saved):
            setattr(mod, attr, value)
        torch.hub.set_dir(old_hub_dir)
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


@register
class PyiqaMetric(Metric):
    """Adapter: one pyiqa metric, its kind, direction and range read from pyiqa's own config."""

    name = "pyiqa"
    # Class values describe the default (pyiqa psnr) for the registry; instances take the chosen metric's.
    kind: ClassVar[Kind] = "fr"
    lower_better: ClassVar[bool] = False
    range: ClassVar[tuple[float, float] | None] = (0.0, 40.0)
    description = "any pyiqa metric, weights read from a local folder only"
    # Needs a metric name and often weights, so compute_all only runs it when asked.
    default = False
    Options = PyiqaOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o: PyiqaOptions = self.options  # type: ignore[assignment]
        cfg = _pyiqa_configs()[o.metric]
        # Instance attributes shadow the class placeholders; pyiqa's InferenceModel reads the same keys.
        self.kind = "fr" if cfg.get("metric_mode") == "FR" else "nr"  # type: ignore[misc]
        self.lower_better = bool(cfg.get("lower_better", False))  # type: ignore[misc]
        self.range = _parse_range(cfg.get("score_range"))  # type: ignore[misc]
        self.pyiqa_name = o.metric  # type: ignore[misc]
        self._model: Any = None

    def check_available(self) -> None:
        o: PyiqaOptions = self.options  # type: ignore[assignment]
        needed = expected_weight_files(o.metric, o.metric_opts)
        if not needed:
            return
        if o.weights_dir is None:
            raise MetricUnavailableError(
                f"pyiqa metric {o.metric!r} needs weight file(s) {', '.join(needed)}: give the folder that holds"
                " them (`--iqa-weights DIR` on `ggt eval`, weights_dir= in Python)"
            )
        missing = [n for n in needed if not (o.weights_dir / n).is_file()]
        if missing:
            raise MetricUnavailableError(
                f"pyiqa metric {o.metric!r}: weight file(s) {', '.join(missing)} not found in {o.weights_dir}"
            )

    def _build(self) -> Any:
        if self._model is None:
            self.check_available()
            import pyiqa

            o: PyiqaOptions = self.options  # type: ignore[assignment]
            with _local_weights_only(o.weights_dir):
                self._model = pyiqa.create_metric(o.metric, device=o.device, **o.metric_opts)
        return self._model

    def compute(self, *images: np.ndarray) -> float:
        import torch

        model = self._build()
        tensors = []
        for img in images:
            a = np.asarray(img, dtype=np.float32)
            if a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(f"pyiqa metric expects RGB HxWx3 images, got shape {a.shape}")
            # pyiqa asserts inputs lie in [0, 1]; float rounding from degradations can step just outside.
            a = np.clip(a, 0.0, 1.0)
            tensors.append(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None])
        with torch.no_grad():
            # FR: same positional order as tests/qc/test_metrics_pyiqa.py, so ours(lq, hq) equals
            # pyiqa's metric(lq, hq) for the metrics calibrated against it.
            out = model(*tensors)
        return float(out.reshape(-1)[0].item())
