"""What a site's worker knows: its site from the inventory and the credentials it may resolve.

Credentials are resolved here, at the worker, from references in the inventory (``env:``/``file:``);
they never travel through Temporal. Everything an activity reports passes through ``redact``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from temporalio.exceptions import ApplicationError

from seawall.model import AwsSite, DirectorySite, Inventory, VSphereSite
from seawall.security.secrets import ResolvedSecret, SecretError, redact, resolve, resolve_credentials
from seawall.sites.vsphere.client import VSphereConnection


class SiteContext:
    def __init__(self, inventory: Inventory, site_name: str) -> None:
        try:
            self.site = inventory.site(site_name)
        except (KeyError, LookupError) as exc:
            known = ", ".join(s.name for s in inventory.sites) or "none"
            raise ValueError(f"site {site_name!r} is not in the inventory (known sites: {known})") from exc
        self.inventory = inventory
        self._secrets: list[ResolvedSecret] = []

    def _credentials(self, required: tuple[str, ...]) -> dict[str, Any]:
        try:
            creds = resolve_credentials(self.site.credentials, required=required)
            secret = resolve(self.site.credentials)
        except SecretError as exc:
            # A missing or malformed credential does not fix itself between retries.
            raise ApplicationError(
                f"site {self.site.name!r}: {exc}", type="CredentialsError", non_retryable=True
            ) from None
        if secret is not None:
            self._secrets.append(secret)
        return creds

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    @contextlib.contextmanager
    def vsphere(self) -> Iterator[VSphereConnection]:
        site = self.site
        if not isinstance(site, VSphereSite):
            raise ApplicationError(f"site {site.name!r} is {site.kind}, not vsphere", non_retryable=True)
        creds = self._credentials(("user", "password"))
        conn = VSphereConnection(
            site.host,
            str(creds["user"]),
            str(creds["password"]),
            port=site.port,
            protocol=site.protocol,
            verify_tls=not site.insecure_tls,
        )
        try:
            yield conn
        finally:
            conn.disconnect()

    @cached_property
    def _aws_session(self) -> Any:
        import boto3

        site = self.site
        if not isinstance(site, AwsSite):
            raise ApplicationError(f"site {site.name!r} is {site.kind}, not aws", non_retryable=True)
        creds = self._credentials(())
        return boto3.session.Session(
            aws_access_key_id=creds.get("aws_access_key_id"),
            aws_secret_access_key=creds.get("aws_secret_access_key"),
            aws_session_token=creds.get("aws_session_token"),
            region_name=site.region,
        )

    def aws_client(self, service: str) -> Any:
        site = self.site
        assert isinstance(site, AwsSite)
        return self._aws_session.client(service, endpoint_url=site.endpoint_url)

    def directory_root(self) -> Path:
        site = self.site
        if not isinstance(site, DirectorySite):
            raise ApplicationError(f"site {site.name!r} is {site.kind}, not directory", non_retryable=True)
        return Path(site.path)
