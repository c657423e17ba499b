"""JSON Schemas for structured output, and lenient extraction of a JSON object from a model's text.

Each vendor accepts a different dialect: OpenAI's strict mode wants every object closed
(`additionalProperties: false`) with all properties required and no `default`; Gemini and vLLM/Ollama
accept plain JSON Schema but some versions choke on `$ref`. So we derive the schema from the pydantic
model once, inline its references, and tighten it for OpenAI when that is possible.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from pydantic import BaseModel

_MAX_REF_DEPTH = 32

# Keywords OpenAI's strict mode rejects (the request fails with 400 "Invalid schema"). Dropping them is
# safe: the answer is validated against the pydantic model afterwards, which still enforces them.
_STRICT_UNSUPPORTED = frozenset(
    {
        "default",
        "minLength",
        "maxLength",
        "uniqueItems",
        "contains",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
    }
)


class _Unconvertible(Exception):
    """The schema cannot be put in the requested form."""


def _inline(node: Any, defs: dict[str, Any], depth: int) -> Any:
    if depth > _MAX_REF_DEPTH:
        raise _Unconvertible
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = copy.deepcopy(defs[ref.removeprefix("#/$defs/")])
            # Sibling keys of a $ref (pydantic puts `description` there) override the target's.
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline(merged, defs, depth + 1)
        return {k: _inline(v, defs, depth) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs, depth) for v in node]
    return node


def json_schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with `$ref`s inlined (left as is for recursive models)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    if not defs:
        return schema
    try:
        return _inline(schema, defs, 0)
    except _Unconvertible:
        return schema


def strict_json_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """`schema` in OpenAI strict form, or None when it cannot be (an open map such as `dict[str, float]`)."""

    def tighten(node: Any) -> Any:
        # Walks schema positions only, so a field that happens to be called "default" or "properties"
        # is left alone.
        if not isinstance(node, dict):
            return node
        out = {k: v for k, v in node.items() if k not in _STRICT_UNSUPPORTED}
        if "properties" in out:
            out["properties"] = {name: tighten(sub) for name, sub in out["properties"].items()}
        for key in ("items", "not"):
            if isinstance(out.get(key), dict):
                out[key] = tighten(out[key])
        if "oneOf" in out:
            # Strict mode knows only anyOf; for the disjoint unions pydantic emits, they accept the same.
            out["anyOf"] = out.pop("oneOf")
        for key in ("anyOf", "allOf", "prefixItems"):
            if isinstance(out.get(key), list):
                out[key] = [tighten(sub) for sub in out[key]]
        if "$defs" in out:
            out["$defs"] = {name: tighten(sub) for name, sub in out["$defs"].items()}
        if out.get("type") == "object":
            if out.get("additionalProperties") not in (None, False):
                raise _Unconvertible  # an open map: strict mode has no way to say it
            out["additionalProperties"] = False
            out["required"] = list(out.get("properties", {}))
        return out

    try:
        return tighten(schema)
    except _Unconvertible:
        return None


_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def extract_json_text(text: str) -> str:
    """The JSON object inside `text`: as is, inside a ``` fence, or the outermost {...} of chattier prose.

    Models asked for "JSON only" (no structured-output support on the server) still wrap it in fences or
    a sentence often enough that refusing those would waste a paid call.
    """
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        return fenced.group(1).strip()
    if stripped.startswith(("{", "[")):
        return stripped
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        candidate = stripped[start : end + 1]
        try:
            json.loads(candidate)
        except ValueError:
            return stripped
        return candidate
    return stripped
