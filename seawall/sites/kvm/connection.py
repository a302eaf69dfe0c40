"""A libvirt connection to a KVM site, and the lookups every KVM verb shares (source and target).

Public API (used by ``sites.kvm.adapter`` and the target side):

- ``connect(site, credentials)``: a context manager yielding an open ``libvirt.virConnect``; closed on
  the way out. ``credentials`` is the resolved ``{user, password}`` pair or ``None`` (local socket).
- ``find_domain(conn, site, name)``, ``find_pool(conn, site)``, ``find_network(conn, site, name)``:
  the object, or a ``SiteError`` naming what is missing (``VMGone`` for a domain).
- ``describe(exc)``: libvirt's own message of an error, one line, without its Python wrapper.
- ``KVM_ERRORS``: the exception classes a libvirt call raises (``libvirt.libvirtError``).
- ``describe_host(conn)``: what answered, for ``probe``.

libvirt-python's handle is per thread of use here: every verb opens its own connection (an activity
may run on any thread of the worker, and a connection left open would outlive a killed one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import libvirt

from seawall.model import KvmSite
from seawall.sites.base import SiteError

KVM_ERRORS: tuple[type[BaseException], ...] = (libvirt.libvirtError,)

# libvirt prints every error on stderr as well as raising it: raised is enough.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def describe(exc: BaseException) -> str:
    if isinstance(exc, libvirt.libvirtError):
        return str(exc.get_error_message() or exc).strip()
    return str(exc).strip()


def _auth_callback(user: str, password: str) -> Any:
    def answer(creds: list[list[Any]], _data: object) -> int:
        for cred in creds:
            if cred[0] == libvirt.VIR_CRED_AUTHNAME:
                cred[4] = user
            elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                cred[4] = password
            else:
                return -1
        return 0

    return answer


def open_connection(site: KvmSite, credentials: Mapping[str, Any] | None) -> Any:
    """An open connection to ``site`` (the caller closes it); ``SiteError`` when nothing answers."""
    try:
        if credentials and credentials.get("password") is not None:
            auth = [
                [libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE],
                _auth_callback(str(credentials.get("user", "")), str(credentials["password"])),
                None,
            ]
            conn = libvirt.openAuth(site.uri, auth, 0)
        else:
            conn = libvirt.open(site.uri)
    except libvirt.libvirtError as exc:
        # Retryable: a daemon restarting answers again in seconds.
        raise SiteError(
            f"site {site.name!r}: libvirt at {site.uri} does not answer: {describe(exc)}",
            "SiteUnreachable",
            retryable=True,
        ) from None
    if conn is None:  # pragma: no cover - old bindings returned None instead of raising
        raise SiteError(f"site {site.name!r}: libvirt at {site.uri} refused the connection", retryable=True)
    return conn


@contextlib.contextmanager
def connect(site: KvmSite, credentials: Mapping[str, Any] | None) -> Iterator[Any]:
    conn = open_connection(site, credentials)
    try:
        yield conn
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def describe_host(conn: Any) -> str:
    def version(n: int) -> str:
        return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"

    hv = conn.getType()
    return (
        f"libvirt {version(conn.getLibVersion())}, {hv} {version(conn.getVersion())} on {conn.getHostname()}"
    )


def find_domain(conn: Any, site: KvmSite, name: str) -> Any:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise SiteError(
                f"domain {name!r} not found at site {site.name!r}: was it deleted or renamed? "
                "unprotect it or fix the inventory",
                "VMGone",
            ) from None
        raise SiteError(f"site {site.name!r}: looking up {name!r}: {describe(exc)}", retryable=True) from None


def find_pool(conn: Any, site: KvmSite) -> Any:
    try:
        return conn.storagePoolLookupByName(site.pool)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            known = ", ".join(sorted(conn.listStoragePools() + conn.listDefinedStoragePools())) or "none"
            raise SiteError(
                f"site {site.name!r}: storage pool {site.pool!r} not found (pools there: {known})",
                "PlanInvalid",
            ) from None
        raise SiteError(f"site {site.name!r}: pool {site.pool!r}: {describe(exc)}", retryable=True) from None


def find_network(conn: Any, site: KvmSite, name: str) -> Any:
    """A libvirt network by its inventory name (its ``backing`` name at the site when given)."""
    backing = site.network(name).backing_name if any(n.name == name for n in site.networks) else name
    try:
        return conn.networkLookupByName(backing)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            raise SiteError(
                f"site {site.name!r}: libvirt network {backing!r} not found", "PlanInvalid"
            ) from None
        raise SiteError(f"site {site.name!r}: network {backing!r}: {describe(exc)}", retryable=True) from None


Problems = list[tuple[tuple[str | int, ...], str]]


def site_problems(site: KvmSite, credentials: Mapping[str, Any] | None) -> Problems:
    """What the inventory names that the reachable site does not have: ``(field path, message)``.

    Raises ``SiteError`` when the site cannot be reached (the caller decides whether that matters).
    """
    problems: Problems = []
    with connect(site, credentials) as conn:
        pools = sorted(conn.listStoragePools() + conn.listDefinedStoragePools())
        if site.pool not in pools:
            problems.append(
                (
                    ("pool",),
                    f"storage pool '{site.pool}' not found at {site.uri} (pools there: "
                    f"{', '.join(pools) or 'none'})",
                )
            )
        networks = sorted(conn.listNetworks() + conn.listDefinedNetworks())
        for index, net in enumerate(site.networks):
            if net.backing_name not in networks:
                field = "backing" if net.backing else "name"
                problems.append(
                    (
                        ("networks", index, field),
                        f"libvirt network '{net.backing_name}' not found at "
                        f"{site.uri} (networks there: {', '.join(networks) or 'none'})",
                    )
                )
    return problems
