"""What a site's worker knows: its site from the inventory, and the adapter that serves it.

The adapter (``seawall.sites.registry``) resolves the site's credentials here, at the worker, from
references in the inventory (``env:``/``file:``); they never travel through Temporal. Everything an
activity reports passes through ``redact``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from temporalio.exceptions import ApplicationError

from seawall.model import Inventory
from seawall.sites.base import SiteAdapter, SiteError
from seawall.sites.registry import adapter_for


def fatal(message: str, kind: str) -> ApplicationError:
    """A failure retrying cannot fix (a bad plan, a missing VM, a refused verb)."""
    return ApplicationError(message, type=kind, non_retryable=True)


@contextlib.contextmanager
def site_errors() -> Iterator[None]:
    """Turn a site adapter's refusal or failure into the activity failure of the same type."""
    try:
        yield
    except SiteError as exc:
        raise ApplicationError(str(exc), type=exc.type, non_retryable=not exc.retryable) from None


class SiteContext:
    def __init__(self, inventory: Inventory, site_name: str) -> None:
        try:
            self.site = inventory.site(site_name)
        except (KeyError, LookupError) as exc:
            known = ", ".join(s.name for s in inventory.sites) or "none"
            raise ValueError(f"site {site_name!r} is not in the inventory (known sites: {known})") from exc
        self.inventory = inventory
        self.adapter: SiteAdapter = adapter_for(self.site)

    def adapter_of(self, site_name: str) -> SiteAdapter:
        """This site's adapter, or a new one for another site of the inventory (a DNS zone's)."""
        if site_name == self.site.name:
            return self.adapter
        return adapter_for(self.inventory.site(site_name))

    def redact(self, text: str) -> str:
        return self.adapter.redact(text)
