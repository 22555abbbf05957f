"""When a cluster's next pass is due, from what its last pass found (pure).

Work in flight (pods starting or rolling, a CA rotation, cert-manager issuing) wants a quick look again, but
a look that found nothing to do and changed nothing backs off (events report pod readiness and Secret
changes anyway), up to FAST_BACKOFF_CAP. While no pod of the cluster runs, nothing in Valkey can move and
what the cluster waits for arrives as pod events: a quiet look then waits for the slow timer. A settled
cluster is looked at on the slow timer, jittered so that a fleet created at once does not wake at once.
A time the pass asked for (a failover's re-check, a pod that did not answer, a failed pass's retry) and the
clock's own wake-up are promised (`prompt`: the pass queue starts them ahead of admissions and news). A
fast look is not: it looks again in case, while pod events bring the same news; nor is the slow timer.
"""

from __future__ import annotations

from dataclasses import dataclass

FAST_BACKOFF_CAP = 30.0  # seconds: the longest a quiet fast look waits
SLOW_JITTER = 0.15  # the slow timer runs at (1 - SLOW_JITTER * u) of its interval, u uniform in [0, 1)
MIN_WAKE = 1.0  # seconds: the clock's own wake-ups are never sooner than this


@dataclass(frozen=True)
class Pace:
    delay: float  # seconds until the next pass
    step: float  # the fast look's current step (0: not looking fast), fed back to the next call
    prompt: bool = False  # a promised time (asked for, or the clock's wake-up); not a fast look nor the slow timer


def next_pass(
    *,
    retry_after: float | None,
    wake_in: float | None,
    fast: bool,
    quiet: bool,
    step: float,
    pods_running: bool = True,
    fast_interval: float,
    slow_interval: float,
    jitter: float,
) -> Pace:
    """The next pass of one cluster. `retry_after`: the pass asked for it (taken as is). `wake_in`: the
    clock alone makes work then. `fast`: work is in flight. `quiet`: the pass acted on nothing and changed
    no status. `step`: what the previous call returned. `pods_running`: some pod of the cluster runs.
    `jitter`: uniform in [0, 1)."""
    slow = slow_interval * (1.0 - SLOW_JITTER * jitter)
    if retry_after is not None:
        return Pace(retry_after, step, prompt=True)
    if fast:
        if step <= 0 or not quiet:
            step = fast_interval
        else:
            step = min(step * 2, max(FAST_BACKOFF_CAP, fast_interval)) if pods_running else slow
        delay = min(step, slow)
    else:
        step, delay = 0.0, slow
    if wake_in is not None and wake_in < delay:
        return Pace(max(wake_in, MIN_WAKE), step, prompt=True)
    return Pace(delay, step)
