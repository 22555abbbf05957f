"""kopf's object logger without the per-event handlers' success lines."""

from __future__ import annotations

import logging

import pytest

from valkey_operator.config import OperatorConfig
from valkey_operator.handlers import registry
from valkey_operator.handlers.kopf_logs import QuietSuccesses


@pytest.mark.parametrize(
    ("level", "message", "kept"),
    [
        (logging.INFO, "Handler '_register_watches.<locals>.owned_changed' succeeded.", False),
        (logging.INFO, "Handler '_register_cluster_handlers.<locals>.cluster_seen' succeeded.", False),
        # Their failures, and any other handler's success, stay.
        (logging.ERROR, "Handler '_register_watches.<locals>.owned_changed' failed with an exception.", True),
        (logging.WARNING, "Handler '_register_cluster_handlers.<locals>.cluster_seen' succeeded.", True),
        (logging.INFO, "Handler '_register_cluster_handlers.<locals>.reconcile' succeeded.", True),
        (logging.INFO, "Handler 'owned_changed_elsewhere' succeeded.", True),
        (logging.INFO, "Something else about owned_changed' happened.", True),
    ],
)
def test_kopfs_success_line_of_each_watch_event_is_dropped(level: int, message: str, kept: bool) -> None:
    record = logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)
    assert QuietSuccesses().filter(record) is kept


def test_the_registry_quiets_kopfs_object_logger_once() -> None:
    registry(OperatorConfig())
    registry(OperatorConfig())
    assert sum(isinstance(f, QuietSuccesses) for f in logging.getLogger("kopf.objects").filters) == 1
