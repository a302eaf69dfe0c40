"""Failback onto the original KVM domain: it keeps its own identity, not the recovery site's.

A failback writes the point (whose identity seed holds the address the guest had at the recovery
site) over the original's system disk; these helpers read the home identity first, remember it in the
domain's own metadata, write it back into the restored disk and forget it once the original runs. Kept
apart from ``target.py`` (the recovery verbs) because only the failback path in ``adapter.py`` uses it.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from seawall.sites.base import SiteError
from seawall.sites.kvm.identity import Identity, IdentityError, SeedError, write_identity

_HOME_NS = "https://seawall.dev/xmlns/kvm-home-identity/1"


def keep_home_identity(dom: Any, system_disk: str) -> Identity | None:
    """The identity in the original domain's system disk, read BEFORE failback overwrites the disk with
    the point (whose seed holds the address the guest had at the recovery site).

    Remembered in the domain's own metadata the first time, so a failback retried after the disk was
    already overwritten still puts the home identity back. None: the guest has no identity seed.
    """
    with contextlib.suppress(libvirt.libvirtError):
        saved = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, _HOME_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        with contextlib.suppress(IdentityError, KeyError, ValueError, ET.ParseError):
            attrs = ET.fromstring(saved).attrib
            return Identity(attrs["hostname"], attrs["address"], int(attrs["prefix"]), attrs["gateway"])
    try:
        from seawall.sites.kvm.identity import read_identity

        identity = read_identity(Path(system_disk))
    except (SeedError, IdentityError, OSError):
        return None
    element = ET.Element(
        "identity",
        {
            "hostname": identity.hostname,
            "address": identity.address,
            "prefix": str(identity.prefix),
            "gateway": identity.gateway,
        },
    )
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        ET.tostring(element, encoding="unicode"),
        "seawallhome",
        _HOME_NS,
        libvirt.VIR_DOMAIN_AFFECT_CONFIG,
    )
    return identity


def restore_home_identity(dom: Any, system_disk: str, identity: Identity | None) -> None:
    """Write the home identity back into the restored system disk (the domain is still shut off)."""
    if identity is None:
        return
    try:
        write_identity(Path(system_disk), identity)
    except SeedError as exc:
        raise SiteError(
            f"failback: the home identity could not be written back: {exc}", retryable=True
        ) from None


def forget_home_identity(dom: Any) -> None:
    """After the original started again with its identity: a later failback reads it afresh."""
    with contextlib.suppress(libvirt.libvirtError):
        dom.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, _HOME_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG
        )
