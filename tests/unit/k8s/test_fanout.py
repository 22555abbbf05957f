"""Independent calls of one pass at once."""

from __future__ import annotations

import threading

import pytest

from valkey_operator.k8s.fanout import Fanout, in_turn


def test_the_calls_of_a_batch_overlap_and_answer_in_order() -> None:
    meet = threading.Barrier(3, timeout=5)  # broken (an error) unless all three are under way at once

    def call(i: int) -> int:
        meet.wait()
        return i

    assert Fanout(4)([lambda i=i: call(i) for i in range(3)]) == [0, 1, 2]  # type: ignore[misc]


def test_the_first_error_in_order_is_raised_once_every_call_is_done() -> None:
    done: list[str] = []

    def fails(what: str) -> str:
        done.append(what)
        raise ValueError(what)

    def slow() -> str:
        threading.Event().wait(0.2)
        done.append("slow")
        return "slow"

    with pytest.raises(ValueError, match="first"):
        Fanout(4)([slow, lambda: fails("first"), lambda: fails("second")])
    assert sorted(done) == ["first", "second", "slow"]


def test_a_batch_of_one_runs_in_the_callers_thread() -> None:
    assert Fanout(1)([threading.get_ident]) == [threading.get_ident()]
    assert in_turn([lambda: 1, lambda: 2]) == [1, 2]
