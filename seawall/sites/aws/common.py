"""What every AWS call of a recovery shares: the run's tags, deterministic tokens, one error type."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

__all__ = [
    "TAG_KEY",
    "TAG_PLAN",
    "TAG_RUN",
    "TAG_VM",
    "AwsError",
    "ResourceTags",
    "SuppressNotFound",
    "call",
    "client_token",
    "error_code",
    "tag_value",
]

TAG_PLAN = "seawall:plan"
TAG_RUN = "seawall:run"
TAG_VM = "seawall:vm"
TAG_KEY = "seawall:key"


class AwsError(Exception):
    """An AWS call failed or AWS holds something other than what Seawall expects."""


@dataclass(frozen=True)
class ResourceTags:
    """The tags every resource of one recovered VM carries."""

    plan: str
    run: str
    vm: str
    extra: dict[str, str] = field(default_factory=dict)

    def tags(self, key: str | None = None, name: str | None = None) -> list[dict[str, str]]:
        pairs = {TAG_PLAN: self.plan, TAG_RUN: self.run, TAG_VM: self.vm, **self.extra}
        if key is not None:
            pairs[TAG_KEY] = key
        if name is not None:
            pairs["Name"] = name
        return [{"Key": k, "Value": v} for k, v in sorted(pairs.items())]


def client_token(key: str) -> str:
    """A deterministic ClientToken for ``key`` (AWS allows at most 64 characters for EC2)."""
    return "seawall-" + hashlib.sha256(key.encode()).hexdigest()[:48]


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ClientError as exc:
        raise AwsError(f"{what} failed: {error_code(exc)}: {exc}") from exc
    except BotoCoreError as exc:
        # Connection failures, and endpoints that answer an error page instead of an AWS error
        # (moto does for a private IP that is taken): still our error type, with the reason.
        raise AwsError(f"{what} failed: {type(exc).__name__}: {str(exc)[:300]}") from exc


def tag_value(resource: dict[str, Any], key: str) -> str | None:
    for tag in resource.get("Tags", []):
        if tag.get("Key") == key:
            return str(tag.get("Value", ""))
    return None


class SuppressNotFound:
    """Ignore an AWS "...NotFound" error: what was to be removed is already gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return isinstance(exc, ClientError) and "NotFound" in error_code(exc)
