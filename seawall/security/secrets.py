"""Resolve secret references at the worker, and keep the values out of everything people read.

Inventories and plans hold references, never secrets (``seawall.model.SecretRef``):

- ``env:NAME`` -- the value of environment variable NAME;
- ``file:PATH`` -- the contents of a file; a relative PATH is relative to ``base_dir`` (the
  inventory file's directory; ``seawall.plans`` loaders already make paths absolute);
- ``none`` -- no credentials (the client's own defaults, or an endpoint that needs none).

A value is either raw (a password, a token, a key) or a JSON object (``{"user": ..., "password":
...}``). Errors name the reference and what is wrong with it, never the value. Resolve only where
the secret is used (in an activity, at the worker whose site it belongs to), never in a workflow:
a value resolved there would be written into the workflow history.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seawall.model import parse_secret_ref
from seawall.security.redaction import REDACTOR

__all__ = [
    "ResolvedSecret",
    "SecretError",
    "redact",
    "register_configured",
    "register_configured_files",
    "resolve",
    "resolve_credentials",
    "resolve_text",
]


class SecretError(Exception):
    """A reference is malformed, or what it points at is missing, unreadable or of the wrong shape."""

    def __init__(self, ref: str, problem: str) -> None:
        super().__init__(f"secret reference {_describe(ref)}: {problem}")
        self.ref = ref


def _describe(ref: str) -> str:
    try:
        parse_secret_ref(ref)
    except ValueError:
        return "(not shown: it is not a reference and may be the secret itself)"
    return repr(ref)


@dataclass(frozen=True)
class ResolvedSecret:
    """The value behind a reference; its repr never shows the value."""

    ref: str
    raw: bytes = field(repr=False)

    def text(self) -> str:
        """The value as text, without the trailing newline editors add to files."""
        try:
            return self.raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise SecretError(self.ref, "the value is not UTF-8 text") from None

    def json(self) -> dict[str, Any]:
        """The value as a JSON object."""
        try:
            value = json.loads(self.raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            # Only the position: the message of a JSON error can quote the document.
            where = (
                f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            )
            raise SecretError(self.ref, f"the value is not valid JSON{where}") from None
        if not isinstance(value, dict):
            raise SecretError(self.ref, f"expected a JSON object, found a JSON {type(value).__name__}")
        return value

    def is_json_object(self) -> bool:
        try:
            return isinstance(json.loads(self.raw), dict)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False

    def secret_values(self) -> list[str]:
        """What the process-wide redactor masks in every line: the value, or for JSON the strings under
        secret-looking keys (a password, a key, a token), not a user or account name that ordinary
        text also contains."""
        if not self.is_json_object():
            return [v for v in [self.raw.decode("utf-8", "replace").rstrip("\r\n")] if v]
        return [v for k, v in _secret_fields(self.json()) if v]

    def values(self) -> list[str]:
        """Every string a detail about this secret's use must not show: the whole value and, for JSON,
        each string in it (its user name too)."""
        found = [self.raw.decode("utf-8", "replace").rstrip("\r\n")]
        if self.is_json_object():
            found += list(_strings(self.json()))
        return [value for value in found if value]


_SECRET_KEY = re.compile(r"(?i)pass|secret|token|key|credential|private|signature|sas")


def _secret_fields(value: Any, key: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        if _SECRET_KEY.search(key):
            yield key, value
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from _secret_fields(item, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from _secret_fields(item, key)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def resolve(
    ref: str, base_dir: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> ResolvedSecret | None:
    """The value behind ``ref``, or None for ``none``; SecretError when it cannot be had."""
    try:
        scheme, target = parse_secret_ref(ref)
    except ValueError as exc:
        raise SecretError(ref, str(exc)) from None
    if scheme == "none":
        return None
    if scheme == "env":
        env = os.environ if environ is None else environ
        value = env.get(target)
        if value is None:
            raise SecretError(ref, f"environment variable {target} is not set")
        if not value:
            raise SecretError(ref, f"environment variable {target} is empty")
        return ResolvedSecret(ref, value.encode("utf-8"))
    path = Path(target)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SecretError(ref, f"file {path} does not exist") from None
    except IsADirectoryError:
        raise SecretError(ref, f"{path} is a directory, not a file") from None
    except PermissionError:
        raise SecretError(ref, f"file {path} is not readable by this process") from None
    except OSError as exc:
        raise SecretError(ref, f"file {path} cannot be read ({exc.strerror})") from None
    if not data.strip():
        raise SecretError(ref, f"file {path} is empty")
    return ResolvedSecret(ref, data)


def resolve_text(
    ref: str, base_dir: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """A raw secret (password, token) as text; None for ``none``."""
    secret = resolve(ref, base_dir, environ)
    return None if secret is None else secret.text()


def resolve_credentials(
    ref: str,
    base_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    required: Iterable[str] = (),
) -> dict[str, Any]:
    """A JSON-object secret (``{"user": ..., "password": ...}``); ``{}`` for ``none``.

    ``required`` keys must be present and non-empty; the error names the missing keys only.
    """
    secret = resolve(ref, base_dir, environ)
    if secret is None:
        missing = list(required)
        if missing:
            raise SecretError(
                ref, f"credentials are required here ({', '.join(missing)}), but the reference is none"
            )
        return {}
    value = secret.json()
    missing = [key for key in required if value.get(key) in (None, "")]
    if missing:
        raise SecretError(
            ref, f"missing key(s) {', '.join(missing)} (present: {', '.join(sorted(value)) or 'none'})"
        )
    return value


def redact(text: str, secrets: Iterable[str | ResolvedSecret | None] = ()) -> str:
    """``text`` with every configured secret, each of ``secrets`` and URL credentials masked as ``***``.

    Strings shorter than 4 characters are left alone: masking them would mangle ordinary words.
    """
    return REDACTOR.redact(text, secrets)


_REF = re.compile(r"^(env|file):\S")


def _refs(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        if _REF.match(value):
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _refs(item)


def register_configured(
    config: Any, base_dir: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> int:
    """Resolve every secret reference in ``config`` (a model, or its dump) and teach the process's
    redactor its values; returns how many were known. References this process cannot resolve
    (another site's credentials) are skipped: what a process cannot read, it cannot leak."""
    dumped = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    known = 0
    for ref in dict.fromkeys(_refs(dumped)):
        try:
            secret = resolve(ref, base_dir, environ)
        except SecretError:
            continue
        if secret is not None:
            REDACTOR.add(secret)
            known += 1
    return known


def register_configured_files(paths: Iterable[Path]) -> None:
    """``register_configured`` over the inventory and plan files as written (not validated: a file
    the checks refuse still names secrets that must not be shown); each file's references resolve
    against its own folder. A file that cannot be read or parsed is skipped: the checks report it."""
    import yaml

    for path in paths:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        register_configured(data, base_dir=Path(path).parent)
