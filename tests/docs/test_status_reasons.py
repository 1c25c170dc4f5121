"""Every reason the operator can put in status is documented in README, and every `Degraded`
reason raises an alert (or README says which alert covers it instead).

The reasons are read from the operator's source (tests/support/status_reasons.py), so a new
one fails here until it is documented; the alerts are read from
examples/observability/prometheusrule.yaml, which tests/packaging keeps equal to the chart's.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml
from support.status_reasons import reasons_in, status_reasons

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
ALERTS = REPO / "examples" / "observability" / "prometheusrule.yaml"
CONDITION_METRIC = "kinfer_operator_model_condition"


def _status_section() -> str:
    text = README.read_text()
    start = text.index("### Status")
    return text[start : text.index("\n### ", start + 1)]


def _backticked(text: str) -> set[str]:
    return set(re.findall(r"`([A-Za-z]+)`", text))


def _degraded_row() -> str:
    (row,) = [line for line in _status_section().splitlines() if line.startswith("| `Degraded`")]
    return row


def _alerts_paragraph() -> str:
    section = _status_section()
    start = section.index("**Alerts.**")
    return section[start : section.find("\n\n", start)]


def _matchers(selector: str) -> dict[str, tuple[str, str]]:
    return {
        m["label"]: (m["op"], m["value"])
        for m in re.finditer(r'(?P<label>\w+)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>[^"]*)"', selector)
    }


def reasons_alerted(expr: str, reasons: set[str]) -> set[str]:
    """Which of `reasons` a rule's expression fires for through Degraded conditions."""
    covered: set[str] = set()
    for selector in re.findall(CONDITION_METRIC + r"\{([^}]*)\}", expr):
        labels = _matchers(selector)
        if labels.get("type") != ("=", "Degraded"):
            continue
        op, value = labels.get("reason", ("=~", ".*"))
        if op in ("=", "!="):
            hit = {r for r in reasons if r == value}
        else:
            hit = {r for r in reasons if re.fullmatch(value, r)}
        covered |= hit if op in ("=", "=~") else reasons - hit
    return covered


def _alert_rules() -> list[dict[str, Any]]:
    spec = yaml.safe_load(ALERTS.read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"] if "alert" in rule]


def test_scan_finds_reasons_however_the_code_passes_them() -> None:
    source = """
def _c(status, reason, message): ...
def failed(message, reason="InvalidSpec"): ...
def pod_reason(text):
    for reason, needles in _TABLE:
        pass
    return "Other"
_TABLE = (("Quota", ("quota",)),)
x = _c("True", "Positional", "m")
y = thing(reason="Keyword")
reason = "Ready" if ok else "Waiting"
Event("Warning", "NotAStatus", "m")
"""
    found = reasons_in([ast.parse(source)])
    assert found == {"InvalidSpec", "Other", "Quota", "Positional", "Keyword", "Ready", "Waiting"}


def test_scan_of_the_operator_finds_reasons_from_every_source() -> None:
    found = status_reasons()
    # status/compute.py, status/cache.py, world/pods.py, reconcile/run.py, rollout/machine.py
    assert {"StartupTimeout", "ModelCacheFailed", "QuotaExceeded", "PodCreationFailed"} <= found
    assert {"MissingPermission", "AnalysisFailed", "Deploying", "RollingOut"} <= found
    assert "RolloutSuperseded" not in found  # an Event's reason


def test_every_status_reason_is_documented_in_the_readme_status_section() -> None:
    missing = status_reasons() - _backticked(_status_section())
    assert not missing, f"reasons the operator sets that README's Status section omits: {missing}"


def test_readme_degraded_reasons_are_all_real() -> None:
    degraded = _backticked(_degraded_row()) - {"Degraded"}
    assert "StartupTimeout" in degraded
    assert degraded <= status_reasons(), degraded - status_reasons()


def test_alert_matching_reads_equality_regex_and_negation() -> None:
    reasons = {"A", "B", "C"}
    assert reasons_alerted(f'{CONDITION_METRIC}{{type="Degraded", reason="A"}}', reasons) == {"A"}
    assert reasons_alerted(f'{CONDITION_METRIC}{{reason!~"A|B", type="Degraded"}}', reasons) == {
        "C"
    }
    assert reasons_alerted(f'{CONDITION_METRIC}{{type="Degraded"}}', reasons) == reasons
    assert reasons_alerted(f'{CONDITION_METRIC}{{type="Ready", reason="A"}}', reasons) == set()


def test_every_degraded_reason_raises_an_alert_or_readme_says_why_not() -> None:
    degraded = _backticked(_degraded_row()) - {"Degraded", "AsExpected"}
    alerted: set[str] = set()
    for rule in _alert_rules():
        alerted |= reasons_alerted(rule["expr"], degraded)
    unalerted = degraded - alerted
    explained = _backticked(_alerts_paragraph())
    assert unalerted <= explained, f"Degraded reasons with no alert and no word why: {unalerted}"
    assert {"StartupTimeout", "ModelCacheFailed", "ImagePullFailed", "ChildRejected"} <= alerted
