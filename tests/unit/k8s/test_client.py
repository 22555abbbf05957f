"""k8s.client's request bound, against API servers that never answer.

The real API server cannot be made to hang here, so the seam is a loopback socket that listens and never
speaks: the kernel completes the TCP handshake, and nothing more comes. Over plain HTTP the request is sent
and no answer is read (the read bound); over HTTPS the TLS handshake gets no answer (the connect bound).
Each call runs in a thread joined with a bound, so that a client that waits forever fails the test rather
than hanging it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import urllib3
from kubernetes import client as k8s

from valkey_operator.k8s.client import REQUEST_TIMEOUT, Kube, bound_requests

BOUND = (0.25, 0.25)  # seconds (connect, read) for these tests
JOIN = 30.0  # seconds: a call still running then is taken as one that never ends


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def _api_client(url: str) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    configuration.host = url
    configuration.verify_ssl = False  # the handshake never starts: nothing to verify
    return k8s.ApiClient(configuration)


def _ends(call: Callable[[], object]) -> BaseException | None:
    """What `call` raised (None: it returned); fails if it runs past JOIN."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(JOIN)
    assert not thread.is_alive(), f"the call still waited after {JOIN} s"
    return outcome[0]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_client_of_a_server_that_never_answers_gives_up(silent_port: int, scheme: str) -> None:
    """The dynamic client asks for /version as Kube is made: bounded, it fails with urllib3's timeout
    (after urllib3's own retries) instead of waiting for good."""
    raised = _ends(lambda: Kube(_api_client(f"{scheme}://127.0.0.1:{silent_port}"), timeout=BOUND))
    assert isinstance(raised, urllib3.exceptions.MaxRetryError), repr(raised)
    assert isinstance(raised.reason, urllib3.exceptions.TimeoutError), repr(raised.reason)


def test_without_the_bound_the_same_request_waits(silent_port: int) -> None:
    """The same request through the kubernetes client as it comes is still waiting after eight times the
    bound: what the bound is for. (It ends when the listener closes after the test: the kernel resets the
    connections it held.)"""
    api_client = _api_client(f"http://127.0.0.1:{silent_port}")
    done = threading.Event()

    def call() -> None:
        with contextlib.suppress(urllib3.exceptions.HTTPError):
            api_client.call_api("GET", f"http://127.0.0.1:{silent_port}/version")
        done.set()

    threading.Thread(target=call, daemon=True).start()
    assert not done.wait(sum(BOUND) * 8)


def test_a_request_that_names_its_own_timeout_keeps_it(silent_port: int) -> None:
    """A bound of a minute (four tries: past JOIN) set, then replaced: each call below ends within JOIN
    only by the timeout it was meant to get."""
    api_client = _api_client(f"http://127.0.0.1:{silent_port}")
    bound_requests(api_client, (60.0, 60.0))
    request: Callable[..., object] = api_client.rest_client.request
    raised = _ends(lambda: request("GET", f"http://127.0.0.1:{silent_port}/version", _request_timeout=BOUND))
    assert isinstance(raised, urllib3.exceptions.MaxRetryError), repr(raised)
    bound_requests(api_client, BOUND)  # a second call replaces the bound (it does not wrap the first)
    rebound: Callable[..., object] = api_client.rest_client.request
    raised = _ends(lambda: rebound("GET", f"http://127.0.0.1:{silent_port}/version"))
    assert isinstance(raised, urllib3.exceptions.MaxRetryError), repr(raised)


def test_the_operators_bound_is_set_for_connect_and_read() -> None:
    connect, read = REQUEST_TIMEOUT
    assert 0 < connect <= read < 60
