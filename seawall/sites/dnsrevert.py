"""Putting back what a run changed in DNS: drill cleanup, abort, rollback and failback.

The record of each change is the sidecar the provider wrote atomically with it
(``seawall.sites.dns``): the value before the run ("absent" when the record did not exist), the
values the run set, and the run. Reverting reads it back, so it needs nothing from the activity that
made the change (which may have died before reporting it), and it is idempotent:

- no sidecar: nothing to put back (never changed, or already restored by an earlier attempt);
- the record holds what the run set: the previous value goes back (or the record goes, when it did
  not exist) and the sidecar with it, in one atomic change;
- the record holds something else: an operator changed it after the run. It is theirs: left alone,
  reported as a conflict (with the value from before the run, so they can decide), and the sidecar
  is dropped, so a later run does not mistake the stale value for the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seawall.sites.dns import DnsConflictError, DnsProvider, DnsRecordSet, RecordType

__all__ = ["Reverted", "revert_record"]

Outcome = Literal["restored", "unchanged", "conflict", "other-run"]


@dataclass(frozen=True)
class Reverted:
    zone: str
    name: str
    type: RecordType
    outcome: Outcome
    restored: DnsRecordSet | None  # what the record holds now when restored
    replaced: DnsRecordSet | None  # what Seawall had set
    detail: str


def shown(record: DnsRecordSet | None) -> str:
    return ",".join(record.values) if record is not None and record.values else "absent"


def revert_record(
    provider: DnsProvider, zone: str, name: str, type: RecordType, *, run: str | None
) -> Reverted:
    """Put back the value from before the change recorded for this record; ``run`` given, only that
    run's change (a drill's cleanup never undoes a real failover's record)."""
    rec = provider.recorded(zone, name, type)
    if rec is None:
        return Reverted(zone, name, type, "unchanged", None, None, f"{name} {type}: nothing to restore")
    if run is not None and rec.run is not None and rec.run != run:
        return Reverted(
            zone, name, type, "other-run", None, None, f"{name} {type}: changed by run {rec.run}, left alone"
        )
    try:
        provider.restore(rec)
    except DnsConflictError as exc:
        provider.forget(zone, name, type)
        return Reverted(
            zone,
            name,
            type,
            "conflict",
            None,
            rec.new,
            f"{exc}; before the run it held {shown(rec.previous)}",
        )
    return Reverted(
        zone,
        name,
        type,
        "restored",
        rec.previous,
        rec.new,
        f"{name} {type}: {shown(rec.new)} -> {shown(rec.previous)} (restored)",
    )
