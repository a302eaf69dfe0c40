"""How Seawall knows a recovered VM is ready, not merely powered on: a TCP port, an HTTP answer, or
the guest reporting its expected new address.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from seawall.model.scalars import Duration, HttpUrlStr, Port, Variant, duration_range

_CHECK_TIMEOUT = (timedelta(seconds=1), timedelta(hours=2))


class HealthCheck(Variant):
    """How Seawall knows a recovered VM is ready (not merely powered on). Use ``AnyHealthCheck``."""

    kind: Literal["tcp", "http", "guest-ip"]
    timeout: Annotated[Duration, duration_range(*_CHECK_TIMEOUT)] = timedelta(minutes=10)


class TcpCheck(HealthCheck):
    kind: Literal["tcp"] = "tcp"
    port: Port


class HttpCheck(HealthCheck):
    """GET ``url``, or ``scheme://<new ip>:port/path`` when no url is given; expect ``status``."""

    kind: Literal["http"] = "http"
    url: HttpUrlStr | None = None
    scheme: Literal["http", "https"] = "http"
    port: Port | None = None
    path: Annotated[str, Field(pattern=r"^/")] = "/"
    status: Annotated[int, Field(strict=True, ge=100, le=599)] = 200

    @model_validator(mode="after")
    def _url_or_parts(self) -> HttpCheck:
        # Compared with the defaults, not model_fields_set: a payload round trip sets every field.
        if self.url is not None and (self.scheme != "http" or self.port is not None or self.path != "/"):
            raise PydanticCustomError(
                "seawall_http_check", "give url, or scheme/port/path at the VM's new address, not both"
            )
        return self


class GuestIpCheck(HealthCheck):
    """Wait until the guest reports its expected new address (VMware Tools / the cloud's view)."""

    kind: Literal["guest-ip"] = "guest-ip"


AnyHealthCheck = Annotated[TcpCheck | HttpCheck | GuestIpCheck, Field(discriminator="kind")]
