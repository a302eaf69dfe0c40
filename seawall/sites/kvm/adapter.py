"""A KVM site: libvirt domains as the source of replicated VMs (and, in ``sites.kvm.target``, the target).

Every verb opens its own libvirt connection (``sites.kvm.connection``) with the site's credentials and
closes it on the way out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

from seawall.model import KvmSite
from seawall.sites.base import BaseAdapter, SiteError
from seawall.sites.kvm import connection
from seawall.sites.kvm.target import KvmTargetMixin


class KvmAdapter(KvmTargetMixin, BaseAdapter):
    kind: ClassVar[str] = "kvm"
    site: KvmSite

    def _credentials(self) -> dict[str, Any] | None:
        if self.site.credentials == "none":
            return None
        return self.credentials(("password",))

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A libvirt connection with the site's own credentials, closed when the block ends."""
        with connection.connect(self.site, self._credentials()) as conn:
            yield conn

    def probe(self) -> str:
        with self.connect() as conn:
            try:
                host = connection.describe_host(conn)
                connection.find_pool(conn, self.site)
            except connection.KVM_ERRORS as exc:
                raise SiteError(self.redact(f"site {self.site.name!r}: {connection.describe(exc)}")) from None
            return f"{host}, pool {self.site.pool}"

    def site_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What the inventory names (pool, networks) that the reachable site lacks."""
        return connection.site_problems(self.site, self._credentials())
