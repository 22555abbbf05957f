"""The operator's settings from the environment the chart sets."""

from __future__ import annotations

import pytest

from valkey_operator.config import OperatorConfig


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, OperatorConfig()),
        ({"VALKEY_OPERATOR_TIMER_INTERVAL": "60"}, OperatorConfig(timer_interval=60.0)),
        ({"VALKEY_OPERATOR_WORKERS": "16"}, OperatorConfig(workers=16)),
        ({"VALKEY_OPERATOR_WORKERS": "0"}, OperatorConfig(workers=1)),  # never none: no pass would run
        ({"VALKEY_OPERATOR_CLUSTER_DOMAIN": "corp.example"}, OperatorConfig(cluster_domain="corp.example")),
    ],
)
def test_settings_from_the_environment(env: dict[str, str], want: OperatorConfig) -> None:
    assert OperatorConfig.from_env(env) == want
