"""Keep secrets out of every text people read: details, exceptions, reports, logs.

One ``Redactor`` per process (``REDACTOR``) knows every configured secret from start-up: the worker
and the API register everything their configuration references before they serve anything (see
``register_configured``), so a secret is masked even in the first line that could show it, not only
after the process has used it. Values are kept in a set (registering the same secret on every
vSphere call costs nothing and grows nothing) and matched by one compiled pattern, rebuilt only when
the set changes, so the cost of ``redact`` depends on the text and the number of distinct secrets,
not on uptime.

URLs are redacted by shape as well: the userinfo (``https://user:pass@host``) and the value of every
query parameter (``?token=...``) of any URL in the text become ``***``; a token in a hook's URL is
a secret whether or not anyone configured it as one.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seawall.security.secrets import ResolvedSecret

REDACTED = "***"

# Shorter strings occur in ordinary text too often to be masked safely (and are no secrets anyway).
MIN_REDACT_LENGTH = 4

# What every line of the process is searched for: shorter values (a lab's "pass") are ordinary words
# in ordinary text; they are masked by shape instead (password=..., user:...@) and, where the secret
# was used, by the caller's own redaction.
MIN_GLOBAL_LENGTH = 8

# A process has a few dozen configured secrets; the cap only guards against a caller that feeds it
# ever-new values (it then forgets the oldest, which are the least likely to still be in use).
MAX_SECRETS = 4096

_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>[^\s'\"<>]+)")
_QUERY_VALUE = re.compile(r"(?P<key>[?&;][^=&;#\s]*=)[^&;#\s]*")


def _redact_url(match: re.Match[str]) -> str:
    scheme, rest = match.group("scheme"), match.group("rest")
    authority_end = len(rest)
    for sep in "/?#":
        at = rest.find(sep)
        if at != -1:
            authority_end = min(authority_end, at)
    authority, tail = rest[:authority_end], rest[authority_end:]
    if "@" in authority:
        authority = REDACTED + "@" + authority.rsplit("@", 1)[1]
    query_at = tail.find("?")
    if query_at != -1:
        fragment_at = tail.find("#", query_at)
        end = len(tail) if fragment_at == -1 else fragment_at
        tail = tail[:query_at] + _QUERY_VALUE.sub(rf"\g<key>{REDACTED}", tail[query_at:end]) + tail[end:]
    return scheme + authority + tail


# A secret in a key=value or "key": "value" shape, and a bearer token, whoever configured it.
_SHAPED = re.compile(
    r"""(?ix)
    (?P<lead>(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|account[_-]?key)
       ["']?\s*[:=]\s*["']?)
    (?P<value>[^\s"',;&}]{3,})
    | (?P<bearer>\bbearer\s+)(?P<token>[A-Za-z0-9._~+/=-]{8,})
    """
)


def _shaped(match: re.Match[str]) -> str:
    if match.group("bearer"):
        return match.group("bearer") + REDACTED
    return match.group("lead") + REDACTED


def redact_urls(text: str) -> str:
    """``text`` with the userinfo and query values of every URL in it, and every value in a
    ``password=...``-like shape or after ``Bearer``, replaced by ``***``."""
    if "://" in text:
        text = _URL.sub(_redact_url, text)
    return _SHAPED.sub(_shaped, text)


class Redactor:
    """A bounded, de-duplicated set of secret values and one pattern that masks them all."""

    def __init__(self, max_secrets: int = MAX_SECRETS) -> None:
        self._max = max_secrets
        self._values: dict[str, None] = {}  # insertion-ordered set: the oldest is forgotten first
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def add(self, *secrets: str | ResolvedSecret | None) -> None:
        """Remember values to mask; a value already known costs a set lookup and nothing more."""
        fresh: list[str] = []
        for secret in secrets:
            if secret is None:
                continue
            values = [secret] if isinstance(secret, str) else secret.secret_values()
            fresh += [v for v in values if len(v) >= MIN_GLOBAL_LENGTH and v not in self._values]
        if not fresh:
            return
        with self._lock:
            for value in fresh:
                self._values[value] = None
            while len(self._values) > self._max:
                del self._values[next(iter(self._values))]
            self._pattern = None

    def _compiled(self) -> re.Pattern[str] | None:
        pattern = self._pattern
        if pattern is None and self._values:
            with self._lock:
                # Longest first: a secret that contains another is masked whole.
                ordered = sorted(self._values, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
        return pattern

    def redact(self, text: str, extra: Iterable[str | ResolvedSecret | None] = ()) -> str:
        """``text`` with every known secret (and every ``extra`` one) and URL credential masked."""
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        extras = _values(extra)
        for value in sorted(extras, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return redact_urls(text)


def _values(secrets: Iterable[str | ResolvedSecret | None]) -> set[str]:
    found: set[str] = set()
    for secret in secrets:
        if secret is None:
            continue
        found.update([secret] if isinstance(secret, str) else secret.values())
    return {v for v in found if len(v) >= MIN_REDACT_LENGTH}


# The process's one redactor: workers, the API and the codec server register their configured
# secrets here at start-up; every detail, exception text and log line passes through it.
REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """Masks known secrets and URL credentials in every log record, and escapes control characters
    so a value with a newline in it cannot forge a second log line."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's to report, not ours to drop
            return True
        clean = escape_control(self._redactor.redact(message))
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def escape_control(text: str) -> str:
    """Control characters as visible escapes (``\\n``, ``\\x1b``): one record stays one line."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def install_log_redaction(redactor: Redactor = REDACTOR) -> None:
    """Put the redacting filter on every handler of every logger configured so far (the root's and,
    e.g., uvicorn's own): call it after logging is set up."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter(redactor))
