"""Restoration prompts from degradation reports, and the instruction that asks a VLM for a report.

`adaptive` prompts name exactly the degradations found, at their severity, and state the
preservation rules; `fixed` is one prompt for every photo (the GGT-100K paper's fixed-prompt
baseline), kept for comparison. Templates are Jinja2 files shipped in `templates/`; any of them can be
replaced by a file path from the config. A VLM writes its own prompt, but the same rules are appended
to it (`finalize_vlm_prompt`): the rules are what keeps a generator from re-imagining the photo, so
they are not left to the VLM's discretion.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2

from ggt.analyze.report import DegradationReport, DegradationType, SceneCategory, VLMAnalysis

PromptMode = Literal["adaptive", "fixed"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
RESTORE_TEMPLATE = TEMPLATE_DIR / "restore.j2"
RULES_TEMPLATE = TEMPLATE_DIR / "rules.j2"
VLM_TEMPLATE = TEMPLATE_DIR / "vlm_instruction.j2"

FIXED_PROMPT = (
    "Restore this photo to high quality: remove noise, blur, compression artefacts and any other "
    "degradation, and make it sharp and clean. Keep the content, layout, faces, text and colours "
    "unchanged, and add nothing new."
)
"""One prompt for all photos, like GGT-100K's fixed-prompt baseline."""

# What the generator should remove, in the words a person would use; the parenthesis says what it
# looks like, which image models follow better than the bare name.
DEGRADATION_PHRASES: dict[str, str] = {
    "noise": "noise (random grainy speckle, strongest in flat and dark areas)",
    "blur": "blur (soft, out-of-focus detail); sharpen only back to what the scene had",
    "motion_blur": "motion blur (detail smeared along one direction)",
    "jpeg": "JPEG compression artefacts (8x8 blocking, ringing around edges, smeared colour)",
    "low_resolution": "low resolution (missing fine detail, jagged or pixelated edges)",
    "haze": "haze (a milky veil that lowers contrast and saturation, stronger with distance)",
    "rain": "rain streaks (thin bright lines across the photo) and the veil they leave",
    "snow": "falling snowflakes (bright specks and blobs over the scene) and the veil they leave",
    "low_light": "under-exposure (too dark, with crushed shadows); brighten to a natural exposure",
    "color_cast": "a colour cast (a tint over the whole photo); restore neutral white balance",
    "fading": "fading (washed-out contrast and lifted blacks)",
    "sepia": "yellowed sepia toning; make the tones neutral without inventing colours",
    "film_grain": "film grain",
    "scratches": "scratches, creases and thin lines across the photo",
    "dust": "dust specks and spots",
    "oversharpening": "over-sharpening (bright and dark halos along edges)",
}

CATEGORY_PHRASES: dict[str, str] = {
    "social_media": "photo, which was resized and recompressed by social media",
    "old_photo": "scanned old photograph",
    "rain": "photo taken in the rain",
    "haze": "hazy photo",
    "snow": "photo taken in falling snow",
    "low_light": "photo taken in low light",
    "clean": "photo",
}


def severity_level(severity: float) -> str:
    """Severity in words: what a prompt says, since image models follow words better than numbers."""
    if severity < 0.25:
        return "light"
    if severity < 0.5:
        return "moderate"
    if severity < 0.75:
        return "strong"
    return "severe"


def _found(report: DegradationReport) -> list[dict[str, Any]]:
    ordered = sorted(report.degradations, key=lambda d: -d.severity)
    return [
        {
            "type": d.type,
            "severity": d.severity,
            "level": severity_level(d.severity),
            "phrase": DEGRADATION_PHRASES.get(d.type, d.type.replace("_", " ")),
        }
        for d in ordered
    ]


def _env(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,  # a typo in a user template must fail, not print nothing
        keep_trailing_newline=False,
        autoescape=False,  # plain text for models, not HTML
    )


@cache
def _env_for(directory: str) -> jinja2.Environment:
    return _env(Path(directory))


def _load(template: Path | str | None, default: Path, what: str) -> jinja2.Template:
    path = Path(default if template is None else template).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} template not found: {path} (give the path to a Jinja2 file, e.g. a copy of {default})"
        )
    try:
        return _env_for(str(path.resolve().parent)).get_template(path.name)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"{what} template {path} has a syntax error at line {e.lineno}: {e.message}") from e


def preservation_rules(
    report: DegradationReport | None = None, template: Path | str | None = None
) -> list[str]:
    """The rules every restoration prompt ends with, one per line of the rules template."""
    found = _found(report) if report is not None else []
    text = _load(template, RULES_TEMPLATE, "rules").render(found=found, report=report)
    return [line.strip() for line in text.splitlines() if line.strip()]


def build_prompt(
    report: DegradationReport,
    mode: PromptMode = "adaptive",
    template: Path | str | None = None,
    rules_template: Path | str | None = None,
) -> str:
    """The restoration instruction for one photo.

    `adaptive`: names exactly the degradations in `report` (strongest first), each with its severity
    in words and numbers, then the preservation rules. `fixed`: `FIXED_PROMPT`, whatever the report.
    `template` replaces the shipped `templates/restore.j2`; it is rendered with `report`, `found`
    (list of dicts with type, severity, level, phrase), `category`, `category_phrase` and `rules`.
    """
    if mode == "fixed":
        return FIXED_PROMPT
    if mode != "adaptive":
        raise ValueError(f"unknown prompt mode {mode!r}; use 'adaptive' or 'fixed'")
    tpl = _load(template, RESTORE_TEMPLATE, "prompt")
    text = tpl.render(
        report=report,
        found=_found(report),
        category=report.category,
        category_phrase=CATEGORY_PHRASES.get(report.category, "photo"),
        rules=preservation_rules(report, rules_template),
    )
    return text.strip() + "\n"


def vlm_response_schema() -> dict[str, Any]:
    """JSON Schema of `VLMAnalysis`, for APIs with structured output (OpenAI `json_schema`, Gemini
    `response_json_schema`)."""
    return VLMAnalysis.model_json_schema()


def vlm_instruction(
    template: Path | str | None = None,
    rules_template: Path | str | None = None,
    schema: dict[str, Any] | None = None,
) -> str:
    """The instruction sent with a photo to a VLM backend: return JSON with the category,
    degradations with severities, scene, and a restoration `prompt` it writes itself.

    `schema` is the JSON Schema quoted to the model; by default `vlm_response_schema()`. A VLM layer
    with its own answer model (same fields) passes that model's schema so the two cannot drift.
    """
    categories: list[str] = list(SceneCategory.__args__)  # type: ignore[attr-defined]
    types: list[str] = list(DegradationType.__args__)  # type: ignore[attr-defined]
    text = _load(template, VLM_TEMPLATE, "VLM instruction").render(
        categories=categories,
        types=types,
        schema=json.dumps(schema if schema is not None else vlm_response_schema(), separators=(",", ":")),
        rules=preservation_rules(None, rules_template),
    )
    return text.strip() + "\n"


def finalize_vlm_prompt(
    vlm_prompt: str, report: DegradationReport, rules_template: Path | str | None = None
) -> str:
    """A VLM-written prompt with the preservation rules appended (the rules are not optional).

    An empty VLM prompt falls back to the adaptive prompt built from `report`. Rules the VLM already
    quoted verbatim are not repeated.
    """
    body = vlm_prompt.strip()
    if not body:
        return build_prompt(report, "adaptive", rules_template=rules_template)
    rules = [r for r in preservation_rules(report, rules_template) if r not in body]
    if not rules:
        return body + "\n"
    return body + "\n\nRules:\n" + "".join(f"- {r}\n" for r in rules)
