"""One line per invalid field of a workflow input or update argument, for people.

``mode: 'tset' is not one of test, planned, unplanned`` instead of pydantic's
``String should match pattern '^(test|planned|unplanned)$'`` (and never a stack trace). Sandbox-safe:
pydantic and stdlib only; the workflows and the doors use it alike.
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from seawall.contract.names import NAME_PATTERN

INVALID_INPUT: Final = "InvalidInput"
"""ApplicationError type of a workflow whose input does not validate: it fails the run, not its task."""

M = TypeVar("M", bound=BaseModel)

_CHOICES = re.compile(r"^\^\(([\w|-]+)\)\$$")


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "input"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_error(err: Any) -> str:
    """One pydantic error (a dict of ``ValidationError.errors()``) as ``field: what is wrong``."""
    where = _field(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"{where}: is required"
    if kind == "extra_forbidden":
        return f"{where}: is not a known field"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        choices = _CHOICES.match(pattern)
        if choices:
            return f"{where}: {_short(value)} is not one of {', '.join(choices.group(1).split('|'))}"
        if pattern == NAME_PATTERN:
            return f"{where}: {_short(value)} is not a valid name (lowercase letters, digits and '-')"
        return f"{where}: {_short(value)} does not match {pattern}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{where}: expected a JSON object, got {_short(value)}"
    return f"{where}: {err.get('msg', 'is invalid')} (got {_short(value)})"


def describe(exc: ValidationError, limit: int = 5) -> str:
    errors = exc.errors()
    lines = [describe_error(e) for e in errors[:limit]]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(lines) + more


def validate(cls: type[M], raw: Any) -> M:
    """``raw`` as ``cls`` (a model passes through); raises ValueError with ``describe``'s line."""
    if isinstance(raw, cls):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(mode="json")
    if raw is None:
        raise ValueError(f"{cls.__name__}: an input object is required")
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None
