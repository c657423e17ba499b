"""Typed configuration: one pydantic model per stage, loaded from YAML, overridable from the CLI.

Unknown keys are errors (`extra="forbid"`), so a typo never silently falls back to a default. The
resolved configuration of a run lives in `RUN/config.yaml` and is what every stage of that run used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ggt import CATEGORIES

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif",
    ".heic", ".heif", ".avif",
)  # fmt: skip


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ImageLimits(BaseModel):
    """What ggt agrees to decode. Also the `ingest.image` section of the config."""

    model_config = ConfigDict(extra="forbid")

    max_pixels: int = Field(default=80_000_000, gt=0, description="refuse larger images before decoding")
    min_side: int = Field(default=32, ge=1, description="refuse images whose shorter side is smaller")
    background: tuple[int, int, int] = Field(
        default=(255, 255, 255), description="RGB that transparent pixels are composited on"
    )
    keep_alpha: bool = Field(default=False, description="return RGBA instead of compositing alpha")


class IngestConfig(Section):
    image: ImageLimits = Field(default_factory=ImageLimits)
    near_dup_distance: int = Field(
        default=6,
        ge=0,
        le=64,
        description="perceptual-hash Hamming distance at or below which a photo is flagged",
    )
    workers: int = Field(default=0, ge=0, description="decode processes; 0 = one per CPU core")
    batch_size: int = Field(default=32, ge=1, description="items committed to the store per transaction")
    extensions: list[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    jpeg_passthrough: bool = Field(
        default=True,
        description="keep an sRGB, upright JPEG as lq/ID.jpg (its bytes, metadata stripped) instead of "
        "re-encoding it as PNG: pixel-identical, about 7x smaller, and ingest is several times faster",
    )
    strip_metadata: bool = Field(
        default=True, description="drop EXIF/XMP/IPTC/comments (GPS, serial numbers) from passthrough JPEGs"
    )


class AnalyzeConfig(Section):
    vlm: Literal["heuristic", "gemini", "openai", "openai-compatible"] = Field(
        default="heuristic",
        description="who analyses each photo; `heuristic` is the offline measure-based analyzer",
    )
    vlm_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options of the VLM backend (model, base_url, api_key_env, timeout_s, ...), checked by it",
    )
    prompting: Literal["adaptive", "fixed"] = Field(
        default="adaptive",
        description="adaptive: a prompt per photo from its report; fixed: one prompt for all",
    )
    prompt_template: Path | None = Field(default=None, description="Jinja2 file replacing the restore prompt")
    rules_template: Path | None = Field(
        default=None, description="Jinja2 file replacing the preservation rules"
    )
    instruction_template: Path | None = Field(
        default=None, description="Jinja2 file replacing the VLM instruction"
    )
    heuristic: dict[str, Any] = Field(
        default_factory=dict,
        description="options of the heuristic analyzer (`ggt.analyze.heuristic.HeuristicConfig`)",
    )
    concurrency: int = Field(default=8, ge=1, description="VLM requests in flight")
    max_attempts: int = Field(default=4, ge=1, description="tries per photo for retryable VLM errors")
    workers: int = Field(
        default=0, ge=0, description="processes for the heuristic analyzer; 0 = one per core"
    )


class GeometryConfig(Section):
    """How an LQ photo is framed for a generator and how the answer is mapped back (`synth.geometry`)."""

    policy: Literal["pad_square", "native"] = Field(
        default="pad_square",
        description="pad_square: long edge to `size`, centre-pad to a square, crop the padding back (as the "
        "GGT authors do for Nano-Banana-2); native: send as is, ask for the closest supported aspect ratio",
    )
    size: int = Field(default=1024, ge=64, description="long edge sent to the generator (pad_square)")
    pad_value: float = Field(default=0.5, ge=0.0, le=1.0, description="grey level of the padding")
    aspects: list[str] = Field(
        default_factory=lambda: ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"],
        description="aspect ratios the generator accepts (Gemini's by default)",
    )
    upscale: int = Field(default=1, ge=1, le=8, description="the HQ is this integer multiple of the LQ size")
    aspect_tolerance: float = Field(
        default=0.03,
        gt=0,
        description="relative aspect mismatch beyond which an answer cannot be mapped back",
    )


class Price(Section):
    per_image: float | None = Field(default=None, ge=0, description="USD per output image")
    per_million_input_tokens: float | None = Field(default=None, ge=0)
    per_million_output_tokens: float | None = Field(default=None, ge=0)
    est_input_tokens: int = Field(default=0, ge=0, description="for estimates before a call")
    est_output_tokens: int = Field(default=0, ge=0, description="for estimates before a call")
    batch_discount: float = Field(default=0.5, gt=0, le=1, description="price factor in batch mode")
    as_of: str | None = None
    source: str | None = None


class SynthConfig(Section):
    generator: str = Field(default="classical", description="classical (offline), gemini, openai, ...")
    model: str | None = Field(default=None, description="the vendor's model name (API generators)")
    options: dict[str, Any] = Field(default_factory=dict, description="backend options, checked by it")
    geometry: GeometryConfig = Field(default_factory=GeometryConfig)
    concurrency: int = Field(default=16, ge=1, description="API requests in flight")
    requests_per_minute: float | None = Field(default=None, gt=0, description="API rate limit")
    max_attempts: int = Field(default=5, ge=1, description="tries per item for retryable errors")
    call_timeout_s: float = Field(default=300.0, gt=0)
    color_transfer: list[str] = Field(
        default_factory=list,
        description="categories whose HQ gets the LQ's colour statistics (off by default)",
    )
    prices: dict[str, Price] = Field(
        default_factory=dict, description="'backend/model' -> price, over the shipped table (prices.yaml)"
    )
    cache_dir: Path | None = Field(
        default=None, description="share paid responses across runs (default RUN/cache)"
    )
    workers: int = Field(
        default=0, ge=0, description="processes for the classical generator; 0 = one per core"
    )


class QCConfig(Section):
    """`ggt qc`: metrics, judge and policy (see docs/qc-validation.md)."""

    policy: Path | None = Field(default=None, description="policy YAML; unset: the shipped default policy")
    judge: Literal["heuristic", "gemini", "openai", "openai-compatible"] = Field(
        default="heuristic", description="who judges each pair; `heuristic` is the offline metric-based judge"
    )
    judge_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the VLM backend (model, base_url, ...), checked by it"
    )
    metrics: list[str] | None = Field(
        default=None, description="metric names to compute; unset: compute_all's default set"
    )
    concurrency: int = Field(default=8, ge=1, description="VLM judge requests in flight")
    max_attempts: int = Field(default=4, ge=1, description="tries per pair for retryable judge errors")
    retry_base_s: float = Field(default=2.0, ge=0, description="base of the judge's exponential backoff")
    retry_max_s: float = Field(default=60.0, ge=0, description="longest wait a server's Retry-After may ask")
    workers: int = Field(default=0, ge=0, description="processes for the metrics; 0 = one per core")
    report: bool = Field(default=True, description="write RUN/reports/qc.html after deciding")
    report_worst: int = Field(default=24, ge=0, description="worst pairs shown as thumbnails in the report")


class ExportConfig(Section):
    license: str = Field(
        default="unknown",
        description="licence written into the dataset card (SPDX id or text); the sources' terms decide it",
    )
    split: str = Field(
        default="test=0.05", description="held-out split: test=FRACTION (0-1) or test=COUNT; test=0 for none"
    )
    seed: int = Field(default=0, description="split seed: the same seed and pairs give the same split")
    include: list[Literal["kept", "undecided", "rejected"]] = Field(
        default_factory=lambda: ["kept"], description="which pairs by current decision; kept only by default"
    )
    shard_size: int = Field(default=1000, ge=1, description="pairs per shard (the unit of work and resume)")
    shard_bytes: int = Field(
        default=1_000_000_000, ge=1_000_000, description="largest tar/parquet shard, in bytes (approximate)"
    )
    link: bool = Field(
        default=True,
        description="folder format: hard-link the run's PNGs (no copy; the run only ever replaces files, "
        "never edits them) where the filesystem allows, else copy; linked files are made read-only, since "
        "an in-place edit of one would change the run's file too",
    )


class RayResources(Section):
    """What one shard's Ray task asks the cluster for (see docs/ray.md)."""

    num_cpus: float = Field(default=1.0, ge=0, description="CPUs per shard task")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs per shard task; fractions share a GPU")
    memory: int | None = Field(default=None, ge=0, description="bytes of memory reserved per shard task")


class ExecuteConfig(Section):
    """Where stages run: `local` (this machine) or `ray` (shards as Ray tasks; see docs/ray.md)."""

    executor: Literal["local", "ray"] = Field(default="local", description="local or ray")
    ray_address: str | None = Field(
        default=None, description="auto, ray://HOST:10001, or unset: RAY_ADDRESS, else a local Ray instance"
    )
    shard_size: int = Field(default=64, ge=1, description="items per shard (the unit of work, retry, resume)")
    storage: str | None = Field(
        default=None, description="fsspec URL for shard files and the request cache; unset: RUN/shards"
    )
    stage_files: bool | None = Field(
        default=None,
        description="copy a shard's input files to the storage and its outputs back, so workers need no access"
        " to the run folder; unset: only when the storage is not a local file system (s3://, gs://, ...)",
    )
    max_in_flight: int = Field(default=0, ge=0, description="shards submitted at once; 0 = 2 per cluster CPU")
    max_retries: int = Field(default=3, ge=0, description="Ray retries of a shard whose worker died")
    resources: dict[Literal["analyze", "synth", "qc"], RayResources] = Field(
        default_factory=dict, description="per-stage task resources; unset stages take 1 CPU"
    )


class GGTConfig(Section):
    """The whole configuration of a run. Later stages add their sections here."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    analyze: AnalyzeConfig = Field(default_factory=AnalyzeConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    qc: QCConfig = Field(default_factory=QCConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    execute: ExecuteConfig = Field(default_factory=ExecuteConfig)


def format_validation_error(exc: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem, each naming the file (or other source) and the dotted key (under `prefix`,
    for a model validated on its own, such as a backend's options)."""
    lines = []
    for err in exc.errors():
        key = ".".join([*([prefix] if prefix else []), *(str(p) for p in err["loc"])]) or "(root)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        else:
            lines.append(f"{source}: key '{key}': {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["ingest.image.min_side=64", "ingest.workers=2"]` -> nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. ingest.workers=2")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is set both as a value and as a section")
        node[parts[-1]] = value
    return out


def validate_config(data: dict[str, Any], source: str) -> GGTConfig:
    """The typed config, its chosen backends' options included (`backend_options`), or a `ConfigError`."""
    try:
        cfg = GGTConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    from ggt.backend_options import check_backend_options  # imports the backend registries

    check_backend_options(cfg, source)
    return cfg


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> GGTConfig:
    """Defaults, then the YAML file, then `--set` overrides."""
    data: dict[str, Any] = _read_yaml(path) if path else {}
    sources = [str(path)] if path else []
    if overrides:
        data = _deep_merge(data, parse_overrides(overrides))
        sources.append("--set")
    return validate_config(data, " + ".join(sources) or "defaults")


def resolve_run_config(run_config: Path, path: Path | None, overrides: list[str] | None) -> GGTConfig:
    """The run's saved config, then a file, then overrides: what a stage of that run must use."""
    data: dict[str, Any] = {}
    sources: list[str] = []
    if run_config.exists():
        data = _read_yaml(run_config)
        sources.append(str(run_config))
    if path:
        data = _deep_merge(data, _read_yaml(path))
        sources.append(str(path))
    if overrides:
        data = _deep_merge(data, parse_overrides(overrides))
        sources.append("--set")
    return validate_config(data, " + ".join(sources) or "defaults")


def dump_config(cfg: GGTConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def config_schema() -> str:
    """JSON Schema of the whole configuration, for editors (YAML language servers read it)."""
    schema = GGTConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ggt configuration"
    return json.dumps(schema, indent=2)


Category = Literal["social_media", "old_photo", "rain", "haze", "snow", "low_light", "unknown"]

_CATEGORY_ALIASES = {
    "social": "social_media", "socialmedia": "social_media", "web": "social_media",
    "old": "old_photo", "oldphoto": "old_photo", "old_photos": "old_photo",
    "rainy": "rain", "hazy": "haze", "fog": "haze", "foggy": "haze", "snowy": "snow",
    "lowlight": "low_light", "low_light": "low_light", "dark": "low_light", "night": "low_light",
}  # fmt: skip


def normalize_category(name: str) -> str | None:
    """Map a folder or option name onto one of the six categories (or 'unknown'); None if it is none."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in CATEGORIES or key == "unknown":
        return key
    return _CATEGORY_ALIASES.get(key.replace("_", "")) or _CATEGORY_ALIASES.get(key)
