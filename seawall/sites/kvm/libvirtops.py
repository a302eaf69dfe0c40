"""Small libvirt steps of the KVM target verbs: define, networks, the run tag, removal of what a run made.

Each turns a libvirt failure into a ``SiteError`` (or tolerates "already gone", so cleanup is safe to
retry). Kept apart from ``target.py`` so the verbs there read as the steps they take; the KVM recovery
tests use ``remove_domain`` to tidy up after a failed test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt

from seawall.sites.base import SiteError
from seawall.sites.kvm import domxml

if TYPE_CHECKING:
    from seawall.model import KvmSite

UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


def libvirt_message(exc: libvirt.libvirtError) -> str:
    return str(exc.get_error_message() or exc).strip()


def define(conn: Any, xml: str, name: str) -> Any:
    try:
        return conn.defineXML(xml)
    except libvirt.libvirtError as exc:
        raise SiteError(
            f"{name}: libvirt refused the domain: {libvirt_message(exc)}", "PlanInvalid"
        ) from None


def require_network(conn: Any, site: KvmSite, network: str) -> None:
    try:
        net = conn.networkLookupByName(network)
    except libvirt.libvirtError:
        raise SiteError(f"site {site.name!r}: libvirt network {network!r} not found", "PlanInvalid") from None
    if not net.isActive():
        net.create()


def tagged_run(dom: Any) -> str | None:
    try:
        tag = domxml.read_tag(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    except (libvirt.libvirtError, domxml.DomainXmlError):
        return None
    return tag.run if tag is not None else None


def remove_domain(dom: Any) -> None:
    """Destroy and undefine with checkpoint/snapshot metadata and NVRAM; a domain already gone is fine."""
    with _gone_ok():
        if dom.isActive():
            try:
                dom.destroy()
            except libvirt.libvirtError:
                if dom.isActive():
                    raise
    with _gone_ok():
        dom.undefineFlags(UNDEFINE_FLAGS)


def delete_volume(vol: Any, pool_dir: Path) -> None:
    with _gone_ok():
        vol.delete(0)


@contextlib.contextmanager
def _gone_ok() -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_VOL):
            raise
