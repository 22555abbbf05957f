"""kopf's log, without a line per watch event that a handler took in.

kopf logs "Handler '…' succeeded." at INFO for every event a handler took. The operator's per-event
handlers (an owned object changed; a ValkeyCluster seen) only ask for a pass: at 1,000 clusters their lines
were 22,000 of a sync's 35,000, each one formatted and written. `install()` drops those lines from kopf's
object logger; their failures, and every other line (the passes' own among them), stay.
"""

from __future__ import annotations

import logging

# The names of the handlers (in handlers/__init__.py) whose success is not worth a line.
QUIET_HANDLERS = ("owned_changed", "cluster_seen")


class QuietSuccesses(logging.Filter):
    """Drops kopf's success line of the QUIET_HANDLERS; their failures, and every other line, stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.msg, str) or not record.msg.endswith("succeeded."):
            return True
        return not any(f"{handler}'" in record.msg for handler in QUIET_HANDLERS)


def install() -> None:
    """QuietSuccesses on kopf's object logger; once per process."""
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietSuccesses) for f in objects.filters):
        objects.addFilter(QuietSuccesses())
