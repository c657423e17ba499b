"""QC policy: parsing errors that name the key and the file, rules per category, decisions with reasons."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ggt.qc.judge import JUDGE_KEYS
from ggt.qc.policy import PolicyError, load_policy, parse_when, policy_from_dict


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    p = write(tmp_path, "rules:\n  - name: a\n    when: psnr > 40\n    action: reject\n    treshold: 3\n")
    with pytest.raises(PolicyError) as err:
        load_policy(p)
    assert "treshold" in str(err.value) and str(p) in str(err.value)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    p = write(tmp_path, "rulez: []\nrules: []\n")
    with pytest.raises(PolicyError, match=r"unknown key 'rulez'"):
        load_policy(p)


def test_rule_over_missing_metric_is_a_clear_error(tmp_path: Path) -> None:
    p = write(tmp_path, "rules:\n  - name: bad\n    when: sharpnes.hq > 3\n    action: review\n")
    with pytest.raises(PolicyError) as err:
        load_policy(p)
    msg = str(err.value)
    assert "bad" in msg and "sharpnes.hq" in msg and str(p) in msg


def test_rule_over_missing_key_of_a_real_metric_fails_at_check(tmp_path: Path) -> None:
    pol = load_policy(
        write(tmp_path, "rules:\n  - name: r\n    when: misalign.shiftpx > 3\n    action: reject\n")
    )
    with pytest.raises(PolicyError, match=r"misalign.shiftpx.*available: .*misalign.shift_px"):
        pol.check_keys(["misalign.shift_px", "psnr"])


def test_bad_condition_action_and_category(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read condition"):
        policy_from_dict({"rules": [{"name": "a", "when": "psnr >> 3", "action": "reject"}]})
    with pytest.raises(PolicyError, match="action"):
        policy_from_dict({"rules": [{"name": "a", "when": "psnr > 3", "action": "delete"}]})
    with pytest.raises(PolicyError, match="unknown category 'rainy'"):
        policy_from_dict(
            {"rules": [{"name": "a", "when": "psnr > 3", "action": "review", "categories": ["rainy"]}]}
        )
    with pytest.raises(PolicyError, match="used twice"):
        policy_from_dict({"rules": [{"name": "a", "when": "psnr > 3", "action": "review"}] * 2})
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(write(tmp_path, "rules: [\n"))


def test_parse_when() -> None:
    conds = parse_when("misalign.shift_px > 2.5 and fidelity <= 0.8 and noise.gain < -4e0")
    assert [(c.key, c.op, c.value) for c in conds] == [
        ("misalign.shift_px", ">", 2.5),
        ("fidelity", "<=", 0.8),
        ("noise.gain", "<", -4.0),
    ]


POLICY = {
    "name": "t",
    "rules": [
        {"name": "shifted", "when": "misalign.shift_px > 2.5", "action": "reject"},
        {"name": "rain_left", "when": "noise.gain < 0", "action": "review", "categories": ["rain", "haze"]},
        {
            "name": "cast",
            "when": "drift.chroma_shift > 4",
            "action": "reject",
            "except_categories": ["old_photo"],
        },
        {"name": "judge_says_no", "when": "judge.says_reject == 1", "action": "review"},
    ],
}


def test_rules_fire_per_category() -> None:
    pol = policy_from_dict(POLICY)
    values = {
        "misalign.shift_px": 0.2,
        "noise.gain": -1.0,
        "drift.chroma_shift": 0.0,
        "judge.says_reject": 0.0,
    }
    assert pol.decide(values, "rain").model_dump() == {"verdict": "review", "reasons": ["rain_left"]}
    assert pol.decide(values, "haze").verdict == "review"
    assert pol.decide(values, "snow").model_dump() == {"verdict": "keep", "reasons": []}
    cast = {**values, "drift.chroma_shift": 9.0}
    assert pol.decide(cast, "old_photo").verdict == "keep"
    assert pol.decide(cast, "snow").model_dump() == {"verdict": "reject", "reasons": ["cast"]}


def test_reject_wins_and_all_reasons_are_listed() -> None:
    pol = policy_from_dict(POLICY)
    values = {
        "misalign.shift_px": 9.0,
        "noise.gain": -1.0,
        "drift.chroma_shift": 0.0,
        "judge.says_reject": 1.0,
    }
    d = pol.decide(values, "rain")
    assert d.verdict == "reject"
    assert d.reasons == ["shifted", "rain_left", "judge_says_no"]


def test_nan_value_goes_to_review_with_reason() -> None:
    pol = policy_from_dict(POLICY)
    values = {
        "misalign.shift_px": math.nan,
        "noise.gain": 1.0,
        "drift.chroma_shift": 0.0,
        "judge.says_reject": 0.0,
    }
    d = pol.decide(values, "snow")
    assert d.verdict == "review" and d.reasons == ["missing:misalign.shift_px"]


def test_shipped_default_policy_loads_and_reads_known_keys() -> None:
    from ggt.qc.metrics import compute_all

    pol = load_policy()
    assert pol.name == "default" and pol.rules
    assert all(r.action in ("reject", "review") for r in pol.rules)
    import numpy as np

    rng = np.random.default_rng(0)
    img = rng.random((200, 256, 3), dtype=np.float32)
    pol.check_keys([*compute_all(img, img), *JUDGE_KEYS])


def test_rules_over_unavailable_metrics_are_dropped() -> None:
    pol = policy_from_dict(POLICY)
    kept, skipped = pol.without_unmeasured(["misalign.shift_px", "noise.gain", "psnr"])
    assert skipped == ["cast"]
    assert [r.name for r in kept.rules] == ["shifted", "rain_left", "judge_says_no"]
