"""QC policy: named rules over a pair's metrics and judge scores, read from YAML.

A policy file::

    name: default
    rules:
      - name: misaligned
        when: misalign.shift_px > 2.5          # conditions joined by `and`
        action: reject                          # reject | review
        why: the HQ is shifted against the LQ   # optional, shown in reports
      - name: rain_left
        when: noise.gain < 0 and fidelity > 0.97
        categories: [rain, snow]                # optional: only for items of these categories
        # except_categories: [haze]             # optional: not for items of these categories
        action: review

A pair's verdict is `reject` when a reject rule fires, else `review` when a review rule fires, else
`keep`; the reasons are the names of every rule that fired, in file order. A condition whose value is
NaN (a metric that could not be measured on that pair) does not fire: the policy's `on_missing` action
(default review) is applied instead, with the reason `missing:KEY`, so an unmeasured pair is looked at
by a person rather than silently kept.

Keys are the flat names of `ggt.qc.metrics.compute_all` (`misalign.shift_px`, `niqe.gain`, ...) and the
judge's `judge.*` values (see `ggt.qc.judge.judge_values`). Unknown YAML keys and unknown metrics are
errors naming the key and the file.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ggt import CATEGORIES
from ggt.config import format_validation_error

Verdict = Literal["keep", "reject", "review"]
Action = Literal["reject", "review"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
}
_COND = re.compile(
    r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|!=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_VALID_CATEGORIES = (*CATEGORIES, "clean", "unknown")


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the file, the rule and the key."""


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    op: str
    value: float

    def test(self, x: float) -> bool:
        return _OPS[self.op](x, self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value:g}"


def parse_when(text: str) -> list[Condition]:
    """`"a.b > 1 and c < 2"` -> conditions; raises ValueError naming the part it could not read."""
    conds = []
    for part in re.split(r"\s+and\s+", text.strip()):
        m = _COND.match(part)
        if not m:
            raise ValueError(f"cannot read condition {part!r}: expected KEY OP NUMBER, e.g. 'ssim < 0.5'")
        conds.append(Condition(key=m.group(1), op=m.group(2), value=float(m.group(3))))
    return conds


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="short id, reported as the reason")
    when: str = Field(description="conditions `KEY OP NUMBER` joined by `and`")
    action: Action
    categories: list[str] | None = Field(default=None, description="only items of these categories")
    except_categories: list[str] | None = Field(default=None, description="not for items of these categories")
    why: str = Field(default="", description="one line for people: what firing means")

    @field_validator("when")
    @classmethod
    def _check_when(cls, v: str) -> str:
        parse_when(v)
        return v

    @field_validator("categories", "except_categories")
    @classmethod
    def _check_categories(cls, v: list[str] | None) -> list[str] | None:
        for c in v or []:
            if c not in _VALID_CATEGORIES:
                raise ValueError(f"unknown category {c!r}; valid: {', '.join(_VALID_CATEGORIES)}")
        return v

    @property
    def conditions(self) -> list[Condition]:
        return parse_when(self.when)

    def applies_to(self, category: str | None) -> bool:
        if self.except_categories is not None and category in self.except_categories:
            return False
        return self.categories is None or category in self.categories


class Decision(BaseModel):
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    description: str = ""
    on_missing: Action = Field(default="review", description="action when a rule's value is NaN or absent")
    rules: list[Rule]
    source: str = Field(default="<memory>", exclude=True)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, v: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for r in v:
            if r.name in seen:
                raise ValueError(f"rule name {r.name!r} is used twice")
            seen.add(r.name)
        return v

    def keys(self) -> set[str]:
        return {c.key for r in self.rules for c in r.conditions}

    def check_keys(self, available: Iterable[str]) -> None:
        """Raise PolicyError when a rule reads a key that the metrics (and judge) do not provide."""
        have = set(available)
        for r in self.rules:
            for c in r.conditions:
                if c.key not in have:
                    close = sorted(k for k in have if k.split(".")[0] == c.key.split(".")[0]) or sorted(have)
                    raise PolicyError(
                        f"{self.source}: rule {r.name!r} reads {c.key!r}, which no metric or judge provides;"
                        f" available: {', '.join(close[:40])}"
                    )

    def without_unmeasured(self, available: Iterable[str]) -> tuple[Policy, list[str]]:
        """The policy minus rules over metrics that produced no value at all (not installed here, e.g.
        BRISQUE without opencv-contrib), and those rules' names. Judge rules are kept."""
        heads = {k.split(".")[0] for k in available}
        keep, skipped = [], []
        for r in self.rules:
            if all(c.key.startswith("judge.") or c.key.split(".")[0] in heads for c in r.conditions):
                keep.append(r)
            else:
                skipped.append(r.name)
        return self.model_copy(update={"rules": keep}), skipped

    def decide(self, values: Mapping[str, float], category: str | None = None) -> Decision:
        """keep / reject / review for one pair, with the names of the rules that fired."""
        fired: list[tuple[str, Action]] = []
        for r in self.rules:
            if not r.applies_to(category):
                continue
            ok = True
            missing = None
            for c in r.conditions:
                x = values.get(c.key)
                if x is None or (isinstance(x, float) and math.isnan(x)):
                    missing = c.key
                    break
                if not c.test(float(x)):
                    ok = False
                    break
            if missing is not None:
                fired.append((f"missing:{missing}", self.on_missing))
            elif ok:
                fired.append((r.name, r.action))
        reasons = list(dict.fromkeys(name for name, _ in fired))
        actions = {a for _, a in fired}
        verdict: Verdict = "reject" if "reject" in actions else "review" if "review" in actions else "keep"
        return Decision(verdict=verdict, reasons=reasons)


def known_metric(key: str) -> bool:
    """Whether `key` can come from compute_all or the judge: its first part is a registered metric."""
    from ggt.qc.metrics import METRICS

    head = key.split(".")[0]
    return head == "judge" or head in METRICS


def policy_from_dict(data: Any, source: str = "<memory>") -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy is a mapping with a 'rules' list, got {type(data).__name__}")
    try:
        policy = Policy.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise PolicyError(format_validation_error(exc, source)) from None
    for r in policy.rules:
        for c in r.conditions:
            if not known_metric(c.key):
                raise PolicyError(
                    f"{source}: rule {r.name!r} reads {c.key!r}, but there is no metric {c.key.split('.')[0]!r}"
                    " (see docs/qc-metrics.md; judge values start with 'judge.')"
                )
    return policy


def default_policy_path() -> Path:
    return Path(str(resources.files("ggt.qc").joinpath("policies/default.yaml")))


def load_policy(path: Path | str | None = None) -> Policy:
    """Read a policy file (the shipped default when None)."""
    p = Path(path) if path is not None else default_policy_path()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{p}: cannot read policy file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{p}: not valid YAML ({exc})") from None
    return policy_from_dict(data, str(p))
