"""The building blocks of every model: file-model bases, names, DNS names, durations, secret
references, URLs and ports.

Sandbox-safe like the rest of ``seawall.model``: pydantic and the standard library only (and the one
name pattern, which ``seawall.contract.names`` owns because names end up in Temporal ids).

Durations are written ``30s``, ``5m``, ``1h30m``, ``2d``, as a number of seconds, or in ISO 8601
(``PT30S``, which is also how they serialize).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from seawall.contract.names import NAME_PATTERN


class FileModel(BaseModel):
    """Base of every file-facing model: unknown keys are errors, not silently ignored settings."""

    model_config = ConfigDict(extra="forbid")


class Variant(FileModel):
    """Base of a family of kinds; only its concrete kinds (one ``kind`` literal) can be built."""

    @model_validator(mode="before")
    @classmethod
    def _concrete_only(cls, data: Any) -> Any:
        if len(get_args(cls.model_fields["kind"].annotation)) != 1:
            # A programming error, not bad input: raised as TypeError so pydantic does not wrap it.
            raise TypeError(f"{cls.__name__} is the base of several kinds; build one of its subclasses")
        return data


# --- constrained scalar types -------------------------------------------------------------------

_NAME_RE = re.compile(NAME_PATTERN)


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise PydanticCustomError(
            "seawall_name",
            "'{value}' is not a valid name: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
            {"value": value[:80]},
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_check_name),
    WithJsonSchema({"type": "string", "pattern": NAME_PATTERN}),
]
"""An identifier: a DNS label (lowercase letters, digits, '-'), so it is safe in task queues and URLs."""

_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def check_dns_name(value: str) -> str:
    name = value.lower().removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise PydanticCustomError(
            "seawall_dns_name",
            "'{value}' is not a valid DNS name: dot-separated labels of 1-63 letters, digits, '-' or '_', "
            "no label starting or ending with '-', at most 253 characters",
            {"value": value[:80]},
        )
    return name


DnsName = Annotated[
    str,
    AfterValidator(check_dns_name),
    WithJsonSchema({"type": "string", "maxLength": 254}),
]
"""A DNS name, normalised to lowercase without a trailing dot."""

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> Any:
    """Turn ``90s``, ``5m``, ``1h30m``, ``2d`` into a timedelta; leave anything else to pydantic."""
    if isinstance(value, str):
        text = value.strip()
        match = _DURATION_RE.fullmatch(text)
        if text and match:
            days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return value


def format_duration(value: timedelta) -> str:
    """The short form people write in files: ``30s``, ``5m``, ``1h30m``, ``1d``."""
    total = abs(int(value.total_seconds()))
    if total == 0:
        return "0s"
    parts = []
    # "24h" reads better than "1d"; days only start past one day.
    units = (
        (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
        if total > 86400
        else (("h", 3600), ("m", 60), ("s", 1))
    )
    for unit, size in units:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return ("-" if value < timedelta(0) else "") + "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$|^P"},
                {"type": "number", "minimum": 0},
            ],
            "description": "a duration: 30s, 5m, 1h30m, 2d, seconds as a number, or ISO 8601",
        }
    ),
]


def duration_range(low: timedelta, high: timedelta) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise PydanticCustomError(
                "seawall_duration_range",
                "{value} is out of range: must be between {low} and {high}",
                {"value": format_duration(value), "low": format_duration(low), "high": format_duration(high)},
            )
        return value

    return AfterValidator(check)


_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_ID_SUFFIX_RE = re.compile(r"#[A-Za-z0-9._-]+$")


def parse_secret_ref(value: str) -> tuple[Literal["env", "file", "none"], str]:
    """Split a secret reference into its scheme and target; ValueError when it is not one.

    A trailing ``#ID`` (``file:keys/prod.key#k2``) names a key id for encryption keys
    (``seawall.blockstore.keys``); it is not part of the target. The error never repeats the
    value: a string that is not a reference is most likely the secret itself.
    """
    if value == "none":
        return "none", ""
    scheme, sep, rest = value.partition(":")
    target = _KEY_ID_SUFFIX_RE.sub("", rest)
    if sep and scheme == "env" and _ENV_NAME_RE.fullmatch(target):
        return "env", target
    if sep and scheme == "file" and target and target.strip() == target and "\n" not in target:
        return "file", target
    raise ValueError(
        "is not a secret reference: write env:VARIABLE, file:PATH or none, never the secret itself "
        "(the value is not shown)"
    )


def _check_secret_ref(value: str) -> str:
    try:
        parse_secret_ref(value)
    except ValueError as exc:
        raise PydanticCustomError("seawall_secret_ref", str(exc)) from None
    return value


SecretRef = Annotated[
    str,
    AfterValidator(_check_secret_ref),
    WithJsonSchema(
        {"type": "string", "pattern": r"^(env:[A-Za-z_][A-Za-z0-9_]*(#[A-Za-z0-9._-]+)?|file:\S.*|none)$"}
    ),
]
"""Where a secret lives: ``env:NAME``, ``file:PATH`` (relative to the inventory file) or ``none``."""


_KMS_KEY_RE = re.compile(
    r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+|alias/[A-Za-z0-9/_-]+|[0-9a-f-]{36})$"
)


def _check_key_ref(value: str) -> str:
    if value.startswith("kms:"):
        if not _KMS_KEY_RE.fullmatch(value.removeprefix("kms:")):
            raise PydanticCustomError(
                "seawall_key_ref",
                "kms: needs a KMS key id, alias/NAME or key/alias ARN (e.g. kms:alias/seawall-replicas)",
            )
        return value
    return _check_secret_ref(value)


KeyRef = Annotated[
    str,
    AfterValidator(_check_key_ref),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(env:[A-Za-z_][A-Za-z0-9_]*(#[A-Za-z0-9._-]+)?|file:\S.*|kms:\S+|none)$",
        }
    ),
]
"""An encryption key: a secret reference (the key bytes), or ``kms:KEY`` (envelope encryption: the
store's data keys are wrapped by that AWS KMS key; credentials, region and endpoint from the
standard AWS environment)."""


def _check_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    if not sep or scheme not in ("http", "https") or not host:
        raise PydanticCustomError(
            "seawall_url", "'{value}' is not an http:// or https:// URL", {"value": value[:120]}
        )
    if "@" in host:
        # user:password@host is an inline secret: credentials belong in a reference.
        raise PydanticCustomError(
            "seawall_url_userinfo",
            "URL must not carry credentials (user:password@); use the credentials reference",
        )
    return value


HttpUrlStr = Annotated[str, AfterValidator(_check_url)]

Port = Annotated[int, Field(strict=True, ge=1, le=65535)]


def non_empty(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("seawall_empty", "{what} must not be empty", {"what": what})
        return value

    return AfterValidator(check)
