"""The spec's cross-field rules: one table renders the CRD's CEL and runs the same checks in Python."""

from __future__ import annotations

import pytest

from valkey_operator.api import rules, schema
from valkey_operator.api.spec import SpecError, parse_spec


@pytest.mark.parametrize("rule", [r for r in rules.RULES if r.ok], ids=lambda r: r.message)
def test_each_counterexample_breaks_its_rule_in_python(rule: rules.Rule) -> None:
    data = schema.apply_defaults(schema.spec_schema(), dict(rule.counterexample))
    assert rule in rules.violations(data)
    with pytest.raises(SpecError) as err:
        parse_spec(rule.counterexample)
    assert err.value.reason == rules.violations(data)[0].reason


def test_the_defaults_break_no_rule() -> None:
    assert rules.violations(schema.apply_defaults(schema.spec_schema(), {})) == []


def _cel_rules(node: object) -> list[str]:
    """Every x-kubernetes-validations rule text anywhere in a schema."""
    if isinstance(node, dict):
        here = [str(v["rule"]) for v in node.get("x-kubernetes-validations", [])]
        return here + [r for v in node.values() for r in _cel_rules(v)]
    if isinstance(node, list):
        return [r for v in node for r in _cel_rules(v)]
    return []


def test_every_rule_is_in_the_crd_once() -> None:
    found = _cel_rules(schema.crd())
    for rule in rules.RULES:
        assert found.count(rule.cel) == 1, rule.cel
