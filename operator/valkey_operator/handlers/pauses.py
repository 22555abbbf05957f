"""What kopf serves, as the passes follow it: kopf pauses an operator while another peer leads (and while
it has not yet seen its peers), stops its watches, and resumes them with a fresh listing; and it ends a
watch when the operator stops or a watched namespace goes.

kopf tells no handler: its pause toggles and its watches' ends reach the operator through its watch
streams (kopf_streams). From then on the scheduler asks `paused()` before it admits a cluster or starts a
pass, so no pass starts from the moment kopf pauses; `_follow` then drops every admitted cluster and
freezes the cache's trust in kopf's indexes, and the listing after the pause admits again the clusters
that still exist. The end of a ValkeyCluster watch drops the clusters it showed (at a SIGTERM, kopf
stops its watches first and runs the cleanup handlers only after).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from kopf._cogs.aiokits.aiotoggles import ToggleSet

from valkey_operator import names

log = logging.getLogger(__name__)


class Pauses:
    """`on_pause()` when kopf pauses this replica after it served; `on_watch_end(namespace)` when a
    ValkeyCluster watch ends (None: a cluster-wide one)."""

    def __init__(self, on_pause: Callable[[], None], on_watch_end: Callable[[str | None], None]) -> None:
        self._on_pause = on_pause
        self._on_watch_end = on_watch_end
        self._toggles: ToggleSet | None = None
        self._task: asyncio.Task[None] | None = None

    def paused(self) -> bool:
        """Whether kopf pauses this replica now (read by the pass workers too: kopf may add or drop a
        toggle in its loop while a worker reads them, so a read that raced it is done again)."""
        toggles = self._toggles
        if toggles is None:
            return False
        for _ in range(5):
            try:
                return toggles.is_on()
            except RuntimeError:  # "Set changed size during iteration"
                continue
        return False  # never seen: a pass may start during a pause sooner than a served cluster never get one

    def receive(self, toggles: ToggleSet) -> None:
        """kopf's pause toggles, from its first watch (in its loop): followed from now on."""
        if self._toggles is None:
            self._toggles = toggles
            self._task = asyncio.get_running_loop().create_task(self._follow(toggles), name="valkey pauses")

    async def _follow(self, toggles: ToggleSet) -> None:
        # A replica that starts paused (it has not seen its peers yet) has admitted nothing and its indexes
        # wait for their first listing: nothing to drop.
        await toggles.wait_for(False)
        while True:
            await toggles.wait_for(True)
            blockers = sorted(t.name for t in toggles if t.is_on() and t.name)
            log.info("kopf paused this replica (%s): no pass starts until it resumes", ", ".join(blockers) or "?")
            try:
                self._on_pause()
            except Exception:  # the next pause must be followed too
                log.exception("following kopf's pause failed")
            await toggles.wait_for(False)
            log.info("kopf resumed this replica: its listing admits the clusters again")

    def watch_ended(self, kind: str, namespace: str | None) -> None:
        """A watch ended (kopf_streams): a ValkeyCluster watch's clusters are forgotten."""
        if kind == names.KIND:
            self._on_watch_end(namespace)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
