"""Site kind -> the one adapter class that serves sites of that kind.

Entries name the class by import path and are imported on first use (as restic's backend location
registry and cloud-custodian's provider registry do): a worker serving a directory site never
imports pyvmomi or boto3. Adding a hypervisor is one folder (``seawall/sites/<kind>/adapter.py``, a
``BaseAdapter`` subclass) and one line here.
"""

from __future__ import annotations

import importlib

from seawall.model import AnySite
from seawall.sites.base import BaseAdapter, SiteAdapter, SiteError

ADAPTERS: dict[str, str] = {
    "vsphere": "seawall.sites.vsphere.adapter:VSphereAdapter",
    "aws": "seawall.sites.aws.adapter:AwsAdapter",
    "directory": "seawall.sites.directory.adapter:DirectoryAdapter",
    "kvm": "seawall.sites.kvm.adapter:KvmAdapter",
}

# Kinds whose sites ``seawall plan check`` asks, when they answer, whether what the inventory names
# exists there (a local libvirt socket answers in milliseconds; a vCenter login would not).
CHECKED_LIVE = frozenset({"kvm"})


class UnknownSiteKind(LookupError):
    """No adapter is registered for a site kind."""

    def __init__(self, kind: str) -> None:
        known = ", ".join(sorted(ADAPTERS))
        super().__init__(f"no site adapter for kind {kind!r} (known kinds: {known})")
        self.kind = kind


def adapter_class(kind: str) -> type[BaseAdapter]:
    """The adapter class registered for ``kind``; ``UnknownSiteKind`` when there is none."""
    try:
        module_name, _, class_name = ADAPTERS[kind].partition(":")
    except KeyError:
        raise UnknownSiteKind(kind) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, BaseAdapter) and cls.kind == kind):
        raise TypeError(f"{ADAPTERS[kind]} is not a site adapter for kind {kind!r}")
    return cls


def adapter_for(site: AnySite) -> SiteAdapter:
    """A new adapter for ``site``; it resolves the site's credentials when a verb first needs them."""
    return adapter_class(site.kind)(site)


def site_problems(site: AnySite) -> list[tuple[tuple[str | int, ...], str]]:
    """What ``site`` lacks of what the inventory names (``(field path, message)``), asked of the site
    itself when its kind is checked live and it answers; nothing when it cannot be reached."""
    if site.kind not in CHECKED_LIVE:
        return []
    try:
        return adapter_for(site).site_problems()
    except SiteError:
        return []  # unreachable (or no credentials here): the worker's probe reports that
