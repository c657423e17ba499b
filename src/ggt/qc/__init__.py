"""Quality control of generated pairs: metrics, judge, policy, decisions and the HTML report.

    from ggt.qc import qc, inspect_pairs, load_policy, heuristic_judge

    summary = qc(Path("runs/x"))                  # metrics once, judge, policy decision, reports/qc.html
    lines = inspect_pairs([lq_path], [hq_path])   # verdict, reasons and metrics without a run

The stage module is imported lazily so `import ggt.qc` stays light.
"""

from __future__ import annotations

from typing import Any

from ggt.qc.judge import CHECKLIST, JudgeAnswer, JudgeScores, heuristic_judge, judge_instruction, judge_values
from ggt.qc.policy import Decision, Policy, PolicyError, Rule, load_policy, policy_from_dict


def __getattr__(name: str) -> Any:
    if name in {"qc", "inspect_pairs", "QCSummary", "decide_pair"}:
        from ggt.qc import stage

        return getattr(stage, name)
    raise AttributeError(name)


__all__ = [
    "CHECKLIST",
    "Decision",
    "JudgeAnswer",
    "JudgeScores",
    "Policy",
    "PolicyError",
    "QCSummary",
    "Rule",
    "decide_pair",
    "heuristic_judge",
    "inspect_pairs",
    "judge_instruction",
    "judge_values",
    "load_policy",
    "policy_from_dict",
    "qc",
]
