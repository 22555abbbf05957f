"""When the next pass is due, and whether that time is promised (the prompt lane): a table of what the
last pass found."""

from __future__ import annotations

import pytest

from valkey_operator.pacing import FAST_BACKOFF_CAP, Pace, next_pass

FAST, SLOW = 5.0, 300.0


def pace(**kw: object) -> Pace:
    args: dict[str, object] = {"retry_after": None, "wake_in": None, "fast": False, "quiet": True, "step": 0.0}
    args.update({"jitter": 0.0, **kw})
    return next_pass(fast_interval=FAST, slow_interval=SLOW, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "kw", "want"),
    [
        ("settled: the slow timer", {}, Pace(300.0, 0.0)),
        ("settled, jittered down by up to 15 %", {"jitter": 0.999}, Pace(SLOW * (1 - 0.15 * 0.999), 0.0)),
        (
            "the pass asked for a time: taken as is",
            {"retry_after": 0.5, "fast": True, "step": 20.0},
            Pace(0.5, 20.0, prompt=True),
        ),
        ("work in flight, first look", {"fast": True}, Pace(5.0, 5.0)),
        ("in flight, quiet again: doubles", {"fast": True, "step": 5.0}, Pace(10.0, 10.0)),
        (
            "in flight, quiet: capped",
            {"fast": True, "step": 20.0},
            Pace(FAST_BACKOFF_CAP, FAST_BACKOFF_CAP),
        ),
        (
            "no pod runs, quiet: the slow timer (pod events start passes)",
            {"fast": True, "step": 5.0, "pods_running": False},
            Pace(SLOW, SLOW),
        ),
        (
            "no pod runs, it acted: a fast look (its own writes echo)",
            {"fast": True, "step": SLOW, "pods_running": False, "quiet": False},
            Pace(5.0, 5.0),
        ),
        ("in flight, it acted: fast again", {"fast": True, "step": 30.0, "quiet": False}, Pace(5.0, 5.0)),
        ("settled after fast looks: the step resets", {"step": 30.0}, Pace(300.0, 0.0)),
        ("the clock makes work sooner", {"wake_in": 42.0}, Pace(42.0, 0.0, prompt=True)),
        ("the clock's wake-up is never sooner than 1 s", {"wake_in": 0.01}, Pace(1.0, 0.0, prompt=True)),
        ("a later wake-up changes nothing", {"wake_in": 400.0}, Pace(300.0, 0.0)),
    ],
)
def test_next_pass(case: str, kw: dict[str, object], want: Pace) -> None:
    assert pace(**kw) == want, case


def test_a_slow_timer_shorter_than_the_fast_look_wins() -> None:
    # Tests run the slow timer every 2 s: a backed-off fast look never waits longer than it.
    got = next_pass(
        retry_after=None, wake_in=None, fast=True, quiet=True, step=20.0, fast_interval=5.0, slow_interval=2.0,
        jitter=0.0,
    )  # fmt: skip
    assert got == Pace(2.0, 30.0)


def test_a_fleet_created_at_once_spreads_over_the_jitter_window() -> None:
    dues = sorted(pace(jitter=i / 100).delay for i in range(100))
    assert dues[0] < 0.86 * SLOW
    assert dues[-1] == SLOW
