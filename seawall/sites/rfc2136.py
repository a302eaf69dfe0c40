"""``DnsProvider`` over RFC 2136 dynamic update, signed with TSIG (RFC 8945): BIND, Knot, PowerDNS.

The same contract as ``Route53Dns`` (see ``seawall.sites.dns``), and the same
``_seawall-prev-<type>.<name>`` TXT sidecar that keeps the value from before Seawall's first change,
so a retried activity never mistakes its own value for the original:

- ``get``: a signed query over TCP to the configured server (the zone's primary), never a resolver:
  a cache could hand back the value from before a change. The answer must be authoritative.
- ``upsert``: one UPDATE message, applied atomically by the server (RFC 2136 section 3.7): replace
  the RRset, and on the first change add the sidecar. Its prerequisites say the state is the one just
  read (the sidecar absent and the record as read, or the sidecar present), so two workers racing
  cannot both record a "previous" value; a failed prerequisite means a concurrent change, and the
  whole step is read and tried again.
- ``restore``: one UPDATE with the prerequisite "the record holds what was just read" that puts the
  previous RRset back (or deletes the record when there was none) and deletes the sidecar. A record
  that holds neither Seawall's value nor the previous one is someone else's: DnsConflictError.

A name that holds a CNAME cannot hold anything else. Route53 refuses such a change; an RFC 2136
server silently ignores it (section 3.4.2.2), so the prerequisites forbid it and an unchanged record
after a failed prerequisite is reported as that clash, and every change is read back.

The TSIG key is given by reference (``env:``/``file:``, ``seawall.security.secrets``): its base64 secret, or
a BIND key file as ``tsig-keygen`` writes it. Errors name the key, the server and the zone, never
the secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update

from seawall.model import Rfc2136Zone
from seawall.security.secrets import SecretError, resolve
from seawall.sites.dns import (
    DnsChange,
    DnsConflictError,
    DnsError,
    DnsRecordSet,
    RecordType,
    _decode_sidecar,
    _encode_sidecar,
    _norm,
    previous_value,
    recorded_change,
    sidecar_name,
)

__all__ = ["DnsAuthError", "Rfc2136Dns", "parse_tsig_key"]

SIDECAR_TTL = 60
# A prerequisite failed: the zone is not in the state the update was built on.
_PREREQUISITE_FAILED = {dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET}
_ATTEMPTS = 3

_KEY_CLAUSE = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.DOTALL)
_ALGORITHM = re.compile(r"algorithm\s+\"?([\w.-]+)\"?\s*;")
_SECRET = re.compile(r'secret\s+"([^"]+)"\s*;')

Query = Callable[..., dns.message.Message]


class DnsAuthError(DnsError):
    """The server refused the TSIG key (unknown key, bad signature, clock skew) or the update itself."""


def _key_name(name: str) -> str:
    return _norm(name) + "."


def parse_tsig_key(text: str, key_name: str, algorithm: str, *, ref: str = "(given)") -> dns.tsig.Key:
    """The TSIG key from a secret's text: a bare base64 secret, or BIND ``key`` clauses (tsig-keygen).

    In a key file the clause named ``key_name`` is used and its algorithm must be ``algorithm``: a
    key signed with another algorithm would be refused by the server with a less telling BADKEY.
    """
    clauses = _KEY_CLAUSE.findall(text)
    if clauses:
        found = {_key_name(name): body for name, body in clauses}
        body = found.get(_key_name(key_name))
        if body is None:
            raise SecretError(
                ref, f"no key named {_key_name(key_name)} in it (it has: {', '.join(sorted(found))})"
            )
        alg = _ALGORITHM.search(body)
        if alg is not None and _norm(alg.group(1)) != _norm(algorithm):
            raise SecretError(
                ref, f"key {_key_name(key_name)} is {alg.group(1)}, but the zone says {algorithm}"
            )
        secret_match = _SECRET.search(body)
        if secret_match is None:
            raise SecretError(ref, f"key {_key_name(key_name)} has no secret")
        secret = secret_match.group(1)
    else:
        secret = text.strip()
    try:
        if not base64.b64decode(secret, validate=True):
            raise ValueError("empty")
    except (binascii.Error, ValueError):
        # Not echoed: it may be the secret with a typo in it.
        raise SecretError(ref, "not a base64 TSIG secret nor a BIND key clause") from None
    return dns.tsig.Key(_key_name(key_name), secret, _norm(algorithm) + ".")


class Rfc2136Dns:
    """``DnsProvider`` for the zones of one authoritative server that accepts ``key``."""

    def __init__(
        self,
        server: str,
        key: dns.tsig.Key,
        *,
        port: int = 53,
        timeout: float = 10.0,
        query: Query = dns.query.tcp,
    ) -> None:
        self.server = server
        self.port = port
        self.key = key
        self.timeout = timeout
        self._query = query

    @classmethod
    def from_zone(cls, zone: Rfc2136Zone, *, timeout: float = 10.0) -> Rfc2136Dns:
        """Resolve the zone's key reference (at the worker: never in a workflow) and connect nothing yet."""
        secret = resolve(zone.credentials)
        if secret is None:  # the model refuses "none"; a hand-built zone could still carry it
            raise SecretError(zone.credentials, "dynamic updates need a TSIG key")
        key = parse_tsig_key(secret.text(), zone.tsig_key_name, zone.tsig_algorithm, ref=zone.credentials)
        return cls(zone.server, key, port=zone.port, timeout=timeout)

    @property
    def _where(self) -> str:
        return f"DNS server {self.server}:{self.port}"

    # --- transport --------------------------------------------------------------------------------

    def _send(self, message: dns.message.Message, what: str) -> dns.message.Message:
        message.use_tsig(self.key)
        try:
            response = self._query(message, self.server, port=self.port, timeout=self.timeout)
        except dns.tsig.PeerError as exc:
            # The server answered with a TSIG error: BADKEY (it does not know the key), BADSIG (the
            # secret differs) or BADTIME (the clocks differ by more than the fudge).
            raise DnsAuthError(
                f"{self._where} refused TSIG key {self.key.name} ({_tsig_error(exc)}) for {what}"
            ) from None
        except dns.exception.Timeout:
            raise DnsError(f"{self._where} did not answer within {self.timeout:.0f}s ({what})") from None
        except (OSError, EOFError) as exc:
            raise DnsError(f"{self._where} unreachable ({what}): {exc}") from None
        except dns.exception.DNSException as exc:
            raise DnsError(f"{self._where}: bad answer to {what}: {exc}") from None
        if response.rcode() == dns.rcode.NOTAUTH:
            # Unsigned NOTAUTH: the server is not authoritative for the zone, or refused the key.
            raise DnsAuthError(f"{self._where} answered NOTAUTH to {what} with TSIG key {self.key.name}")
        if response.rcode() == dns.rcode.REFUSED:
            why = (
                f"is key {self.key.name} allowed to update the zone?"
                if message.opcode() == dns.opcode.UPDATE
                else "is it authoritative for the zone?"
            )
            raise DnsAuthError(f"{self._where} refused {what} ({why})")
        return response

    def _read(self, zone: str, name: str, rdtype: str) -> tuple[int, tuple[str, ...]] | None:
        self._inside(zone, name)
        fqdn = dns.name.from_text(name)
        response = self._send(dns.message.make_query(fqdn, rdtype), f"query {name} {rdtype}")
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DnsError(f"{self._where} answered {dns.rcode.to_text(rcode)} to query {name} {rdtype}")
        if not response.flags & dns.flags.AA:
            raise DnsError(f"{self._where} is not authoritative for {name}: configure the zone's primary")
        rrset = response.get_rrset(response.answer, fqdn, dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
        if rrset is None:
            return None
        return rrset.ttl, tuple(sorted(rdata.to_text() for rdata in rrset))

    @staticmethod
    def _inside(zone: str, name: str) -> None:
        if not (_norm(name) == _norm(zone) or _norm(name).endswith("." + _norm(zone))):
            raise DnsError(f"{_norm(name)} is outside zone {_norm(zone)}")

    # --- DnsProvider ------------------------------------------------------------------------------

    def get(self, zone: str, name: str, type: RecordType) -> DnsRecordSet | None:
        found = self._read(zone, _norm(name), type)
        if found is None:
            return None
        ttl, values = found
        if type == "CNAME":
            values = tuple(sorted(_norm(v) + "." for v in values))
        return DnsRecordSet(_norm(name), type, ttl, values)

    def _sidecar(self, zone: str, name: str, type: RecordType) -> tuple[bool, DnsRecordSet | None]:
        found = self._read(zone, sidecar_name(name, type), "TXT")
        if found is None:
            return False, None
        return True, _decode_sidecar(found[1][0], _norm(name), type)

    def _update(self, zone: str) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(_norm(zone) + ".")

    @staticmethod
    def _require(update: dns.update.UpdateMessage, name: str, type: str, record: DnsRecordSet | None) -> None:
        """Prerequisite: the RRset is exactly ``record`` (values, not TTL), or absent for None."""
        if record is None:
            update.absent(name + ".", type)
        else:
            update.present(name + ".", type, *record.values)

    def recorded(self, zone: str, name: str, type: RecordType) -> DnsChange | None:
        found = self._read(zone, sidecar_name(name, type), "TXT")
        if found is None:
            return None
        return recorded_change(zone, name, type, found[1][0])

    def forget(self, zone: str, name: str, type: RecordType) -> bool:
        side = sidecar_name(name, type) + "."
        if self._read(zone, side, "TXT") is None:
            return False
        update = self._update(zone)
        update.delete(side, "TXT")
        rcode = self._send(update, f"forget {_norm(name)} {type}").rcode()
        if rcode != dns.rcode.NOERROR:
            raise DnsError(
                f"{self._where} answered {dns.rcode.to_text(rcode)} to forget {_norm(name)} {type}"
            )
        return True

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
        if not values:
            raise ValueError("a record needs at least one value")
        fqdn = _norm(name)
        if type == "CNAME":
            values = [_norm(v) + "." for v in values]
        new = DnsRecordSet(fqdn, type, ttl, tuple(sorted(values)))
        side = sidecar_name(fqdn, type)
        seen: object = None
        for _ in range(_ATTEMPTS):
            found = self._read(zone, side, "TXT")
            has_sidecar = found is not None
            current = self.get(zone, fqdn, type)
            previous = current
            if found is not None:
                previous = previous_value(recorded_change(zone, fqdn, type, found[1][0]), current)
            if has_sidecar and current == new:
                return DnsChange(
                    _norm(zone), fqdn, type, previous, new, run
                )  # a retry of a change that landed
            update = self._update(zone)
            if found is not None:
                # Exactly the sidecar just read: it is replaced (same "previous", this run's value).
                update.present(side + ".", "TXT", *found[1])
                self._require(update, fqdn, type, current)
            else:
                update.absent(side + ".", "TXT")
                self._require(update, fqdn, type, current)
            # The name must be free for a CNAME, and must not be a CNAME for anything else.
            if type == "CNAME" and current is None:
                update.absent(fqdn + ".")
            elif type != "CNAME":
                update.absent(fqdn + ".", "CNAME")
            update.replace(fqdn + ".", ttl, type, *new.values)
            update.replace(side + ".", SIDECAR_TTL, "TXT", _encode_sidecar(previous, new, run))
            response = self._send(update, f"update {fqdn} {type}")
            rcode = response.rcode()
            if rcode in _PREREQUISITE_FAILED:
                state = (has_sidecar, previous, current)
                if state == seen:
                    raise DnsError(self._clash(fqdn, type))
                seen = state  # changed under us: read again; unchanged twice: a standing clash
                continue
            if rcode != dns.rcode.NOERROR:
                raise DnsError(f"{self._where} answered {dns.rcode.to_text(rcode)} to update {fqdn} {type}")
            after = self.get(zone, fqdn, type)
            if after != new:
                raise DnsError(f"{self._where} accepted update {fqdn} {type} but holds {_shown(after)}")
            return DnsChange(_norm(zone), fqdn, type, previous, new, run)
        raise DnsConflictError(f"{fqdn} {type} kept changing under Seawall's update; not changed")

    @staticmethod
    def _clash(fqdn: str, type: RecordType) -> str:
        if type == "CNAME":
            return f"{fqdn} already holds other records: a CNAME cannot be added beside them"
        return f"{fqdn} is a CNAME: it cannot hold an {type} record too"

    def restore(self, change: DnsChange, *, force: bool = False) -> DnsRecordSet | None:
        previous = change.previous
        fqdn = change.name
        side = sidecar_name(fqdn, change.type)
        for _ in range(_ATTEMPTS):
            current = self.get(change.zone, fqdn, change.type)
            has_sidecar, _ = self._sidecar(change.zone, fqdn, change.type)
            at_previous = current == previous or (previous is not None and previous.same_data(current))
            if at_previous and not has_sidecar:
                return current
            if not at_previous and not change.new.same_data(current) and not force:
                raise DnsConflictError(
                    f"{fqdn} {change.type} now holds {_shown(current)}, not what Seawall set "
                    f"({','.join(change.new.values)}); left alone"
                )
            update = self._update(change.zone)
            self._require(update, fqdn, change.type, current)
            if has_sidecar:
                update.present(side + ".", "TXT")
            if not at_previous:
                update.delete(fqdn + ".", change.type)
                if previous is not None:
                    update.add(fqdn + ".", previous.ttl, change.type, *previous.values)
            if has_sidecar:
                update.delete(side + ".", "TXT")
            rcode = self._send(update, f"restore {fqdn} {change.type}").rcode()
            if rcode in _PREREQUISITE_FAILED:
                continue  # changed between the read and the update: judge it again
            if rcode != dns.rcode.NOERROR:
                raise DnsError(
                    f"{self._where} answered {dns.rcode.to_text(rcode)} to restore {fqdn} {change.type}"
                )
            return previous
        raise DnsConflictError(f"{fqdn} {change.type} kept changing while Seawall restored it; left alone")


def _shown(record: DnsRecordSet | None) -> str:
    return ",".join(record.values) if record is not None else "nothing"


def _tsig_error(exc: Any) -> str:
    names = {
        "PeerBadKey": "BADKEY: the server does not know this key name/algorithm",
        "PeerBadSignature": "BADSIG: the secret differs from the server's",
        "PeerBadTime": "BADTIME: the clocks differ",
        "PeerBadTruncation": "BADTRUNC",
    }
    return names.get(type(exc).__name__, type(exc).__name__)
