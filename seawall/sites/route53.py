"""Route53 as a ``DnsProvider`` (``seawall.sites.dns``): each upsert and restore is one atomic
``change_resource_record_sets`` batch carrying the record and its ``_seawall-prev-`` TXT sidecar,
waited on until INSYNC. ``rfc2136.py`` is the same contract over RFC 2136 dynamic updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

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

__all__ = ["Route53Dns"]


class Route53Dns:
    """``DnsProvider`` over a boto3 Route53 client. Zones are found by name unless ids are given."""

    def __init__(
        self,
        client: Any,
        *,
        zone_ids: dict[str, str] | None = None,
        wait_timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self._zone_ids = {_norm(k): v for k, v in (zone_ids or {}).items()}
        self.wait_timeout = wait_timeout
        self._sleep = sleep

    def zone_id(self, zone: str) -> str:
        key = _norm(zone)
        if key in self._zone_ids:
            return self._zone_ids[key]
        answer = self.client.list_hosted_zones_by_name(DNSName=key + ".", MaxItems="10")
        found = [z["Id"] for z in answer.get("HostedZones", []) if _norm(z["Name"]) == key]
        if not found:
            raise DnsError(f"no Route53 hosted zone named {key}.")
        if len(found) > 1:
            raise DnsError(
                f"{len(found)} Route53 hosted zones are named {key}. ({', '.join(found)}); "
                "give hosted_zone_id"
            )
        self._zone_ids[key] = found[0]
        return str(found[0])

    def _read(self, zone_id: str, name: str, type: str) -> dict[str, Any] | None:
        fqdn = _norm(name) + "."
        answer = self.client.list_resource_record_sets(
            HostedZoneId=zone_id, StartRecordName=fqdn, StartRecordType=type, MaxItems="1"
        )
        # The API lists from the start name onwards: the first set may be the next name, not ours.
        for rrset in answer.get("ResourceRecordSets", []):
            if _norm(rrset["Name"]) == _norm(name) and rrset["Type"] == type:
                return dict(rrset)
        return None

    def get(self, zone: str, name: str, type: RecordType) -> DnsRecordSet | None:
        rrset = self._read(self.zone_id(zone), name, type)
        if rrset is None:
            return None
        if "AliasTarget" in rrset:
            raise DnsError(f"{_norm(name)} {type} is a Route53 alias; Seawall changes plain records only")
        values = tuple(sorted(r["Value"] for r in rrset.get("ResourceRecords", [])))
        return DnsRecordSet(_norm(name), type, int(rrset.get("TTL", 0)), values)

    def _sidecar(
        self, zone_id: str, name: str, type: RecordType
    ) -> tuple[dict[str, Any] | None, DnsRecordSet | None]:
        """The sidecar record set as stored (a DELETE must repeat it exactly) and the value it keeps."""
        rrset = self._read(zone_id, sidecar_name(name, type), "TXT")
        if rrset is None:
            return None, None
        return rrset, _decode_sidecar(rrset["ResourceRecords"][0]["Value"], _norm(name), type)

    def _change(self, zone_id: str, changes: list[dict[str, Any]], comment: str) -> None:
        answer = self.client.change_resource_record_sets(
            HostedZoneId=zone_id, ChangeBatch={"Comment": comment, "Changes": changes}
        )
        change_id = answer.get("ChangeInfo", {}).get("Id")
        status = answer.get("ChangeInfo", {}).get("Status")
        deadline = time.monotonic() + self.wait_timeout
        delay = 0.5
        while change_id and status != "INSYNC":
            if time.monotonic() > deadline:
                raise DnsError(f"Route53 change {change_id} not INSYNC after {self.wait_timeout:.0f}s")
            self._sleep(delay)
            delay = min(delay * 2, 10.0)
            status = self.client.get_change(Id=change_id)["ChangeInfo"]["Status"]

    @staticmethod
    def _rrset(record: DnsRecordSet) -> dict[str, Any]:
        return {
            "Name": record.name + ".",
            "Type": record.type,
            "TTL": record.ttl,
            "ResourceRecords": [{"Value": v} for v in record.values],
        }

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
        zone_id = self.zone_id(zone)
        fqdn = _norm(name)
        if type == "CNAME":
            values = [_norm(v) + "." for v in values]
        new = DnsRecordSet(fqdn, type, ttl, tuple(sorted(values)))
        stored = self._read(zone_id, sidecar_name(fqdn, type), "TXT")
        current = self.get(zone, fqdn, type)
        if stored is not None and current == new:
            return DnsChange(
                _norm(zone), fqdn, type, self._previous(zone, fqdn, type, stored, current), new, run
            )
        previous = current if stored is None else self._previous(zone, fqdn, type, stored, current)
        changes = [{"Action": "UPSERT", "ResourceRecordSet": self._rrset(new)}]
        sidecar = {
            "Name": sidecar_name(fqdn, type) + ".",
            "Type": "TXT",
            "TTL": 60,
            "ResourceRecords": [{"Value": _encode_sidecar(previous, new, run)}],
        }
        if stored is None:
            changes.append({"Action": "CREATE", "ResourceRecordSet": sidecar})
        else:
            # Same "previous" (the first change's), but the value this change sets and its run.
            changes.append({"Action": "DELETE", "ResourceRecordSet": stored})
            changes.append({"Action": "CREATE", "ResourceRecordSet": sidecar})
        self._change(zone_id, changes, f"seawall: {fqdn} {type} -> {','.join(new.values)}")
        return DnsChange(_norm(zone), fqdn, type, previous, new, run)

    @staticmethod
    def _previous(
        zone: str, name: str, type: RecordType, stored: dict[str, Any], current: DnsRecordSet | None
    ) -> DnsRecordSet | None:
        return previous_value(
            recorded_change(zone, name, type, stored["ResourceRecords"][0]["Value"]), current
        )

    def recorded(self, zone: str, name: str, type: RecordType) -> DnsChange | None:
        rrset = self._read(self.zone_id(zone), sidecar_name(name, type), "TXT")
        if rrset is None:
            return None
        return recorded_change(zone, name, type, rrset["ResourceRecords"][0]["Value"])

    def forget(self, zone: str, name: str, type: RecordType) -> bool:
        zone_id = self.zone_id(zone)
        stored, _ = self._sidecar(zone_id, name, type)
        if stored is None:
            return False
        self._change(
            zone_id, [{"Action": "DELETE", "ResourceRecordSet": stored}], f"seawall: forget {_norm(name)}"
        )
        return True

    def restore(self, change: DnsChange, *, force: bool = False) -> DnsRecordSet | None:
        zone_id = self.zone_id(change.zone)
        current = self.get(change.zone, change.name, change.type)
        stored, _ = self._sidecar(zone_id, change.name, change.type)
        has_sidecar = stored is not None
        previous = change.previous
        at_previous = current == previous or (previous is not None and previous.same_data(current))
        if at_previous and not has_sidecar:
            return current
        if not at_previous and not change.new.same_data(current) and not force:
            shown = ",".join(current.values) if current is not None else "nothing"
            raise DnsConflictError(
                f"{change.name} {change.type} now holds {shown}, not what Seawall set "
                f"({','.join(change.new.values)}); left alone"
            )
        changes: list[dict[str, Any]] = []
        if not at_previous:
            if previous is None:
                if current is not None:
                    changes.append({"Action": "DELETE", "ResourceRecordSet": self._rrset(current)})
            else:
                changes.append({"Action": "UPSERT", "ResourceRecordSet": self._rrset(previous)})
        if stored is not None:
            changes.append({"Action": "DELETE", "ResourceRecordSet": stored})
        if changes:
            self._change(zone_id, changes, f"seawall: restore {change.name} {change.type}")
        return previous
