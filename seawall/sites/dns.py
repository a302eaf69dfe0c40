"""DNS record changes for failover, with the previous value kept so failback and cleanup can put it back.

``DnsProvider`` is the interface the recovery activities use; ``Route53Dns`` (``seawall.sites.route53``)
implements it over boto3, ``Rfc2136Dns`` (``seawall.sites.rfc2136``) over RFC 2136 dynamic updates.
``provider_for`` maps a zone's ``provider`` to the code that serves it (``PROVIDERS``), given the
adapter of the site whose credentials reach the zone.
The protocol is shaped after what both Route53 and RFC 2136 dynamic update can do:

- ``get``: Route53 ``list_resource_record_sets`` from the name (and filter: the API lists onwards
  from there). RFC 2136: a plain query to the zone's primary (SOA MNAME) over TCP, no cache.
- ``upsert``: Route53 one atomic ``change_resource_record_sets`` batch: UPSERT the record and
  CREATE its ``_seawall-prev-<type>.<name>`` TXT sidecar. RFC 2136: one UPDATE message (atomic,
  RFC 2136 section 3.7) that deletes the RRset, adds the new one and adds the sidecar, signed with TSIG.
- ``restore``: Route53 one batch: UPSERT (or DELETE) the record and DELETE the sidecar. RFC 2136:
  one UPDATE with the prerequisite "RRset exists (value dependent)" = what Seawall set, replacing
  the RRset and deleting the sidecar; a failed prerequisite (YXRRSET/NXRRSET) is DnsConflictError.

Why a sidecar record: an activity that changed a record and crashed before reporting it is retried;
the retry would read *its own* value as "previous" and the original address would be lost. The
sidecar is written in the same atomic change as the record, at the provider, so a retry (or a
different worker) finds the value from before Seawall's first change. Restore removes it. A name
that is already a CNAME cannot carry other types, which is why the sidecar has its own name.

The sidecar is the durable record of a run's change: the value before it ("absent" when the record
did not exist), the values Seawall set and the run that set them (no secret: names and addresses).
Cleanup and failback restore from it (``recorded``), so they need nothing a crashed activity failed
to report. A record an operator changed after the run holds neither value: it is left alone, the
conflict is reported, and the sidecar is dropped (``forget``) so that no later run treats the stale
"previous" as the original.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from seawall.model import DnsZone, Rfc2136Zone
    from seawall.sites.base import SiteAdapter

__all__ = [
    "PROVIDERS",
    "DnsChange",
    "DnsConflictError",
    "DnsError",
    "DnsProvider",
    "DnsRecordSet",
    "provider_for",
    "recorded_change",
    "sidecar_name",
]

RecordType = Literal["A", "CNAME"]
SIDECAR_PREFIX = "_seawall-prev-"


class DnsError(Exception):
    """A DNS provider call failed or the zone is not usable."""


class DnsConflictError(DnsError):
    """The record no longer holds what Seawall set: someone changed it since; not overwritten."""


@dataclass(frozen=True)
class DnsRecordSet:
    """One record set: ``name`` is lowercase without the trailing dot; values are sorted."""

    name: str
    type: RecordType
    ttl: int
    values: tuple[str, ...]

    def same_data(self, other: DnsRecordSet | None) -> bool:
        return other is not None and (self.name, self.type, self.values) == (
            other.name,
            other.type,
            other.values,
        )


@dataclass(frozen=True)
class DnsChange:
    """What an upsert did: enough to undo it. ``previous`` None means the record did not exist."""

    zone: str
    name: str
    type: RecordType
    previous: DnsRecordSet | None
    new: DnsRecordSet
    run: str | None = None


class DnsProvider(Protocol):
    def get(self, zone: str, name: str, type: RecordType) -> DnsRecordSet | None:
        """The record set as the provider holds it now, or None."""
        ...

    def upsert(
        self,
        zone: str,
        name: str,
        type: RecordType,
        values: Sequence[str],
        ttl: int,
        *,
        run: str | None = None,
    ) -> DnsChange:
        """Create or replace the record set; the change names the value from before Seawall's first
        change of it (idempotent: a retry returns the same change). ``run`` is kept in the sidecar."""
        ...

    def recorded(self, zone: str, name: str, type: RecordType) -> DnsChange | None:
        """The change Seawall recorded at the provider for this record (its sidecar), or None."""
        ...

    def forget(self, zone: str, name: str, type: RecordType) -> bool:
        """Drop the sidecar only (the record is someone else's now); whether there was one."""
        ...

    def restore(self, change: DnsChange, *, force: bool = False) -> DnsRecordSet | None:
        """Put back ``change.previous`` (delete the record when it had none); returns what is there now.

        Restoring twice is a no-op. If the record holds neither ``change.new`` nor ``previous``,
        raise DnsConflictError unless ``force``: someone else changed it and it is theirs now.
        """
        ...


def _norm(name: str) -> str:
    return name.strip().lower().removesuffix(".")


def sidecar_name(name: str, type: str) -> str:
    return f"{SIDECAR_PREFIX}{type.lower()}.{_norm(name)}"


def _encode_sidecar(
    previous: DnsRecordSet | None, new: DnsRecordSet | None = None, run: str | None = None
) -> str:
    head = "absent" if previous is None else f"ttl={previous.ttl} values={','.join(previous.values)}"
    tail = (f" set={','.join(new.values)}" if new is not None else "") + (f" run={run}" if run else "")
    return f'"seawall-prev v1 {head}{tail}"'


def _sidecar_fields(text: str, name: str, type: RecordType) -> dict[str, str]:
    body = text.strip().strip('"')
    parts = body.split(" ")
    if parts[:2] != ["seawall-prev", "v1"]:
        raise DnsError(f"sidecar record of {name} {type} is not Seawall's: {text[:80]!r}")
    fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    if "absent" in parts[2:]:
        fields["absent"] = "1"
    return fields


def _decode_sidecar(text: str, name: str, type: RecordType) -> DnsRecordSet | None:
    fields = _sidecar_fields(text, name, type)
    if "absent" in fields:
        return None
    try:
        return DnsRecordSet(name, type, int(fields["ttl"]), tuple(sorted(fields["values"].split(","))))
    except (KeyError, ValueError) as exc:
        raise DnsError(f"sidecar record of {name} {type} is malformed: {text[:80]!r}") from exc


def recorded_change(zone: str, name: str, type: RecordType, text: str) -> DnsChange:
    """The change a sidecar's text records. A sidecar written before ``set=`` existed names no new
    value: restoring it then only succeeds where the record already holds the previous value."""
    previous = _decode_sidecar(text, _norm(name), type)
    fields = _sidecar_fields(text, _norm(name), type)
    values = tuple(sorted(v for v in fields.get("set", "").split(",") if v))
    new = DnsRecordSet(_norm(name), type, 0, values)
    return DnsChange(_norm(zone), _norm(name), type, previous, new, fields.get("run"))


def same_record(a: DnsRecordSet | None, b: DnsRecordSet | None) -> bool:
    """Equal data (name, type, values; the TTL aside), or both absent."""
    return a == b or (a is not None and a.same_data(b))


def previous_value(rec: DnsChange, current: DnsRecordSet | None) -> DnsRecordSet | None:
    """The value to come back to for a record whose sidecar records ``rec``.

    The sidecar's "previous", unless the record now holds neither that nor what Seawall set: then
    someone changed it since (and the sidecar outlived a conflict), and what it holds now is theirs.
    """
    if rec.new.values and not rec.new.same_data(current) and not same_record(rec.previous, current):
        return current
    return rec.previous


SiteOf = Callable[[str], "SiteAdapter"]
"""The adapter of a site by name: a zone whose provider is reached through a site's credentials
(Route53) asks for it; one that carries its own (RFC 2136's TSIG key) does not."""


def _route53(zone: DnsZone | Rfc2136Zone, site_of: SiteOf) -> DnsProvider:
    from seawall.model import DnsZone
    from seawall.sites.aws.adapter import AwsAdapter
    from seawall.sites.route53 import Route53Dns

    assert isinstance(zone, DnsZone)
    site = site_of(zone.site)
    if not isinstance(site, AwsAdapter):
        raise DnsError(f"DNS zone {zone.name}: Route53 is reached through an aws site, not {site.site.kind}")
    return Route53Dns(site.client("route53"))


def _rfc2136(zone: DnsZone | Rfc2136Zone, site_of: SiteOf) -> DnsProvider:
    from seawall.model import Rfc2136Zone
    from seawall.security.secrets import SecretError
    from seawall.sites.base import SiteError
    from seawall.sites.rfc2136 import Rfc2136Dns

    assert isinstance(zone, Rfc2136Zone)
    try:
        return Rfc2136Dns.from_zone(zone)
    except SecretError as exc:
        # A missing or malformed key does not fix itself between retries.
        raise SiteError(f"DNS zone {zone.name!r}: {exc}", "CredentialsError") from None


PROVIDERS: dict[str, Callable[[DnsZone | Rfc2136Zone, SiteOf], DnsProvider]] = {
    "route53": _route53,
    "rfc2136": _rfc2136,
}
"""DNS provider kind (a zone's ``provider``) -> a factory given the zone and a way to its site's adapter."""


def provider_for(zone: DnsZone | Rfc2136Zone, site_of: SiteOf) -> DnsProvider:
    """The provider serving ``zone`` (with its site's credentials where it has a site)."""
    try:
        factory = PROVIDERS[zone.provider]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise DnsError(f"DNS zone {zone.name}: no provider {zone.provider!r} (known: {known})") from None
    return factory(zone, site_of)
