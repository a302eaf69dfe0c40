"""Readiness checks for a recovered VM: a TCP port, an HTTP URL, or the address the guest reports.

Each check retries until it passes or its deadline passes and returns a ``HealthResult`` (never
raises for an unhealthy target: "not healthy yet" is an answer, not an error). The deadline bounds
the whole check, including the connect/read timeout of the last attempt, so a caller (an activity
with a start-to-close timeout) can rely on it. ``sleep``/``clock`` are injectable for tests.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

__all__ = ["HealthResult", "check_guest_ip", "check_http", "check_tcp", "poll"]


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    attempts: int
    elapsed: float  # seconds
    detail: str  # what the last attempt saw


Attempt = Callable[[float], tuple[bool, str]]
"""One try, given the time it may take at most; returns (passed, what it saw)."""


def poll(
    attempt: Attempt,
    *,
    timeout: float,
    interval: float = 1.0,
    attempt_timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> HealthResult:
    """Run ``attempt`` until it passes or ``timeout`` seconds have passed (at least one attempt)."""
    start = clock()
    deadline = start + timeout
    attempts = 0
    detail = "not tried"
    while True:
        attempts += 1
        budget = max(0.1, min(attempt_timeout, deadline - clock()))
        try:
            ok, detail = attempt(budget)
        except Exception as exc:  # a check that blows up is a failed attempt, reported, not raised
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        if ok:
            return HealthResult(True, attempts, clock() - start, detail)
        remaining = deadline - clock()
        if remaining <= 0:
            return HealthResult(False, attempts, clock() - start, detail)
        sleep(min(interval, remaining))


def check_tcp(
    host: str,
    port: int,
    *,
    timeout: float = 60.0,
    interval: float = 1.0,
    connect_timeout: float = 3.0,
    sleep: Callable[[float], None] = time.sleep,
) -> HealthResult:
    """Passes once a TCP connection to ``host:port`` is accepted."""

    def attempt(budget: float) -> tuple[bool, str]:
        try:
            with socket.create_connection((host, port), timeout=budget):
                return True, f"connected to {host}:{port}"
        except OSError as exc:
            return False, f"{host}:{port}: {exc.strerror or type(exc).__name__}"

    return poll(attempt, timeout=timeout, interval=interval, attempt_timeout=connect_timeout, sleep=sleep)


def check_http(
    url: str,
    *,
    status: int = 200,
    timeout: float = 60.0,
    interval: float = 1.0,
    request_timeout: float = 5.0,
    verify_tls: bool | str = True,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> HealthResult:
    """Passes once ``GET url`` answers ``status`` (redirects are not followed: a 302 is an answer)."""
    http = session or requests.Session()

    def attempt(budget: float) -> tuple[bool, str]:
        try:
            response = http.get(url, timeout=budget, allow_redirects=False, verify=verify_tls)
        except requests.RequestException as exc:
            return False, f"GET {url}: {type(exc).__name__}"
        with response:
            return response.status_code == status, f"GET {url}: {response.status_code} (want {status})"

    try:
        return poll(attempt, timeout=timeout, interval=interval, attempt_timeout=request_timeout, sleep=sleep)
    finally:
        if session is None:
            http.close()


def check_guest_ip(
    read_ips: Callable[[], list[str]],
    expected: str,
    *,
    timeout: float = 600.0,
    interval: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> HealthResult:
    """Passes once ``read_ips()`` (what the hypervisor/cloud says the guest has) includes ``expected``."""

    def attempt(_budget: float) -> tuple[bool, str]:
        ips = read_ips()
        seen = ", ".join(ips) or "none"
        return expected in ips, f"guest reports {seen} (want {expected})"

    return poll(attempt, timeout=timeout, interval=interval, sleep=sleep)
