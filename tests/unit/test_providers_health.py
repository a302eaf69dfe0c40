"""Health checks against listeners this test starts on 127.0.0.1, and the polling deadline."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from seawall.sites.health import check_guest_ip, check_http, check_tcp, poll


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/ok": 200, "/moved": 302}.get(self.path, 503)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_tcp_passes_on_a_listening_port(listener: int) -> None:
    result = check_tcp("127.0.0.1", listener, timeout=5)
    assert result.ok and result.attempts == 1
    assert f"127.0.0.1:{listener}" in result.detail


def test_tcp_retries_until_the_deadline_on_a_closed_port() -> None:
    port = _free_port()
    start = time.monotonic()
    result = check_tcp("127.0.0.1", port, timeout=0.6, interval=0.1)
    elapsed = time.monotonic() - start
    assert not result.ok and result.attempts >= 3
    assert 0.5 <= elapsed < 3
    assert "refused" in result.detail.lower()


def test_tcp_passes_once_the_service_comes_up() -> None:
    port = _free_port()
    server = socket.socket()

    def start_later() -> None:
        time.sleep(0.3)
        server.bind(("127.0.0.1", port))
        server.listen(1)

    threading.Thread(target=start_later, daemon=True).start()
    try:
        result = check_tcp("127.0.0.1", port, timeout=10, interval=0.05)
    finally:
        server.close()
    assert result.ok and result.attempts > 1


def test_http_expects_the_status(web: str) -> None:
    assert check_http(f"{web}/ok", timeout=5).ok
    # A redirect is an answer, not something to follow to a page that happens to work.
    assert check_http(f"{web}/moved", status=302, timeout=5).ok
    failed = check_http(f"{web}/down", timeout=0.3, interval=0.1)
    assert not failed.ok and "503 (want 200)" in failed.detail
    refused = check_http(f"http://127.0.0.1:{_free_port()}/", timeout=0.3, interval=0.1)
    assert not refused.ok and "ConnectionError" in refused.detail


def test_guest_ip_check_polls_the_callback() -> None:
    answers = iter([[], ["192.168.100.5"], ["192.168.100.5", "10.2.1.21"]])
    result = check_guest_ip(lambda: next(answers), "10.2.1.21", timeout=5, interval=0.01)
    assert result.ok and result.attempts == 3
    missing = check_guest_ip(lambda: ["10.0.0.9"], "10.2.1.21", timeout=0.05, interval=0.01)
    assert not missing.ok and "10.0.0.9" in missing.detail


def test_a_check_that_raises_is_a_failed_attempt_with_the_reason() -> None:
    def broken(_budget: float) -> tuple[bool, str]:
        raise RuntimeError("vSphere session expired")

    result = poll(broken, timeout=0.05, interval=0.01)
    assert not result.ok and "vSphere session expired" in result.detail


def test_the_deadline_bounds_the_attempts_with_a_fake_clock() -> None:
    now = [0.0]
    budgets: list[float] = []

    def attempt(budget: float) -> tuple[bool, str]:
        budgets.append(budget)
        now[0] += budget  # each attempt uses its whole budget (a hanging connect)
        return False, "timed out"

    def sleep(seconds: float) -> None:
        now[0] += seconds

    result = poll(attempt, timeout=12, interval=1, attempt_timeout=5, sleep=sleep, clock=lambda: now[0])
    assert not result.ok
    assert result.elapsed == pytest.approx(12, abs=0.2)
    assert budgets[:2] == [5, 5] and budgets[-1] <= 5
