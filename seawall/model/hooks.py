"""Hooks a plan runs before and after itself or a group: a command (no shell, no inherited
environment) or an HTTP call, at the target site's worker unless the hook names another site.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, StrictBool

from seawall.model.scalars import Duration, HttpUrlStr, Name, SecretRef, Variant, duration_range

_HOOK_TIMEOUT = (timedelta(seconds=1), timedelta(hours=4))


class Hook(Variant):
    """A step run before/after a plan or group. Use ``AnyHook``."""

    name: Name
    kind: Literal["command", "http"]
    timeout: Annotated[Duration, duration_range(*_HOOK_TIMEOUT)] = timedelta(minutes=5)
    site: Name | None = Field(default=None, description="whose worker runs it; default the target site")
    continue_on_failure: StrictBool = False


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class CommandHook(Hook):
    """Run without a shell, with only PATH, LANG and the variables named here: never the worker's
    own environment, which holds site credentials and keys."""

    kind: Literal["command"] = "command"
    command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = Field(
        description="argv; run without a shell"
    )
    env: dict[EnvName, str] = Field(default={}, description="variables the command gets (plain values)")
    secret_env: dict[EnvName, SecretRef] = Field(
        default={},
        description="variables resolved from secret references at the worker (masked in the output)",
    )


class HttpHook(Hook):
    kind: Literal["http"] = "http"
    url: HttpUrlStr
    method: Literal["GET", "POST", "PUT"] = "POST"
    credentials: SecretRef = Field(default="none", description="a bearer token reference")


AnyHook = Annotated[CommandHook | HttpHook, Field(discriminator="kind")]
