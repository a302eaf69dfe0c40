"""Retention (which points to keep) and garbage collection (which objects nothing references).

Garbage collection and concurrent writers (the rule, implemented in ``Retention.gc``):

1. Every ship first writes its lease (``sessions/<id>.json``, renewed at each checkpoint), then
   reads ``gc/condemned.json`` and never dedups against a condemned pack.
2. GC lists packs and tables, then sessions, then manifests (in that order, so an object
   committed during the run is seen as referenced), and computes the unreferenced set.
3. An unreferenced object is first *condemned* (recorded with the time GC saw it so); it is deleted
   only by a later GC run, if it is still unreferenced, the grace period (``gc_grace``) has
   passed, and every live session started after the condemn time plus CLOCK_SKEW. Sessions that
   started earlier could have loaded an index that still offered the object, or wrote it
   themselves; they finish (commit or die) first. A session is dead once its lease is older than
   ``lease_ttl``; a resumed ship re-checks that everything its journal names still exists.
4. A pack stays while any kept point references any chunk in it (no repacking): space held by
   partly dead packs is the price of never rewriting data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from seawall.blockstore.chunkindex import ChunkIndex, read_condemned
from seawall.blockstore.errors import CorruptObjectError, PointNotFoundError, WrongKeyError
from seawall.blockstore.layout import CONDEMNED_KEY, pack_key, table_key
from seawall.blockstore.manifest import (
    CondemnedList,
    GcResult,
    RetentionPolicy,
    RetentionResult,
    SessionJournal,
)
from seawall.blockstore.points import Points
from seawall.blockstore.signed import SignedObjects
from seawall.blockstore.stores.backend import ObjectLockedError, ObjectNotFound, ObjectStore
from seawall.blockstore.tablecache import TableCache
from seawall.blockstore.tuning import CLOCK_SKEW, Tuning

Lease = tuple[datetime, datetime]  # (started_at, renewed_at) of a live session


class Retention:
    """Apply retention policies and collect garbage in one repository's store."""

    def __init__(
        self,
        store: ObjectStore,
        signed: SignedObjects,
        tables: TableCache,
        index: ChunkIndex,
        points: Points,
        tuning: Tuning,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._signed = signed
        self._tables = tables
        self._index = index
        self._points = points
        self._tuning = tuning
        self._clock = clock

    def apply_retention(self, vm: str, policy: RetentionPolicy, now: datetime | None) -> RetentionResult:
        now = now or self._clock()
        points = self._points.list_points(vm)[::-1]  # newest first
        keep: set[str] = set()
        if policy.keep_last is None and policy.keep_hours is None:
            keep = {p.point_id for p in points}
        if policy.keep_last is not None:
            keep.update(p.point_id for p in points[: policy.keep_last])
        if policy.keep_hours is not None:
            horizon = now - timedelta(hours=policy.keep_hours)
            keep.update(p.point_id for p in points if p.created_at >= horizon)
        newest_verified = next((p for p in points if p.verified), None)
        if newest_verified is not None:
            keep.add(newest_verified.point_id)
        deleted = []
        locked = []
        for p in points:
            if p.point_id in keep:
                continue
            if p.locked_until is not None and p.locked_until > now:
                locked.append(p.point_id)
                continue
            try:
                self._points.delete(vm, p.point_id)
            except ObjectLockedError:
                # The store's clock or a longer lock someone set says no: the store is the truth.
                locked.append(p.point_id)
                continue
            deleted.append(p.point_id)
        return RetentionResult(
            vm=vm,
            kept=[p.point_id for p in points[::-1] if p.point_id in keep or p.point_id in locked],
            deleted=deleted[::-1],
            locked=locked[::-1],
        )

    def _lease_times(self, okey: str) -> Lease | None:
        try:
            body = json.loads(self._store.get(okey).partition(b"\n")[2])
            return datetime.fromisoformat(body["started_at"]), datetime.fromisoformat(body["renewed_at"])
        except (ObjectNotFound, ValueError, KeyError, TypeError):
            return None

    def _sessions(
        self, old: dict[str, datetime], now: datetime
    ) -> tuple[list[Lease], dict[str, datetime], int]:
        """Live leases, unreadable sessions (with when first seen), and how many expired (deleted)."""
        lease_ttl = self._tuning.lease_ttl
        live: list[Lease] = []
        unreadable: dict[str, datetime] = {}
        expired = 0
        for k in list(self._store.list("sessions/")):
            try:
                j = self._signed.get(k, SessionJournal)
                started, renewed = j.started_at, j.renewed_at
            except ObjectNotFound:
                continue
            except (CorruptObjectError, WrongKeyError):
                # Another key's writer, or a damaged lease. Its times can only make GC keep more,
                # so they are used unverified; with none readable it protects everything until it
                # has been seen for a whole lease_ttl, then it is removed like an expired lease.
                times = self._lease_times(k)
                if times is None:
                    first_seen = old.get(k, now)
                    if now - first_seen < lease_ttl:
                        unreadable[k] = first_seen
                        live.append((datetime.min.replace(tzinfo=now.tzinfo), now))
                        continue
                    started, renewed = first_seen, first_seen
                else:
                    started, renewed = times
            if renewed + lease_ttl > now:
                live.append((started, renewed))
            else:
                self._store.delete(k)
                expired += 1
        return live, unreadable, expired

    def _referenced(self) -> tuple[set[str], set[str]]:
        """Table and pack keys the manifests in the store reference now."""
        ref_tables: set[str] = set()
        ref_packs: set[str] = set()
        self._points.forget_cached()
        for k in list(self._store.list("points/")):
            vm, _, name = k[len("points/") :].partition("/")
            if not name.endswith(".json"):
                continue
            try:
                m = self._points.read_manifest(vm, name[:-5])
            except PointNotFoundError:
                # Retention of another VM deleted it after the listing: a gone point protects nothing.
                continue
            for dm in m.disks:
                for lid in dm.layers:
                    ref_tables.add(table_key(bytes.fromhex(lid)))
                where = f"point {m.point_id} of {vm}"
                for _, prefs in self._tables.load_layers(dm.layers, where):
                    for pr in prefs:
                        tkey = table_key(pr.oid)
                        if tkey in ref_tables:
                            continue
                        ref_tables.add(tkey)
                        ref_packs.update(pack_key(p) for p in self._tables.load_part(pr.oid, where).packs)
        return ref_tables, ref_packs

    def gc(self, now: datetime | None) -> GcResult:
        now = now or self._clock()
        # 1. objects, 2. sessions, 3. manifests: anything committed during the run is seen.
        packs = {k for k in self._store.list("packs/")}
        tables = {k for k in self._store.list("tables/")}
        indexes = {k for k in self._store.list("index/")}
        old = read_condemned(self._signed).since
        live, unreadable, expired = self._sessions(old, now)
        ref_tables, ref_packs = self._referenced()
        unreferenced = (packs - ref_packs) | (tables - ref_tables)
        # An index whose pack is gone is unreferenced too (a crash between the two deletes).
        for ik in indexes:
            pk = "packs/" + ik[len("index/") :]
            if pk not in packs and pk not in ref_packs:
                unreferenced.add(ik)
        keep_since: dict[str, datetime] = {}
        to_delete: list[str] = []
        for k in unreferenced:
            since = old.get(k)
            if (
                since is not None
                and now - since >= self._tuning.gc_grace
                and all(started > since + CLOCK_SKEW for started, _ in live)
            ):
                to_delete.append(k)
            else:
                keep_since[k] = since if since is not None else now
        # Record the newly condemned before deleting anything, so a ship starting from here on
        # already avoids them.
        stamp = max(now, self._clock())
        keep_since = {k: (v if k in old else stamp) for k, v in keep_since.items()}
        keep_since.update(unreadable)
        self._signed.put_overwrite(CONDEMNED_KEY, CondemnedList(since=keep_since))
        packs_deleted, tables_deleted, locked = self._delete(sorted(to_delete))
        if locked:
            # Still locked (an expired point shared an object with a newer locked one, or the
            # store's clock is behind): stays condemned, retried at a later run.
            keep_since.update({k: old[k] for k in locked})
            self._signed.put_overwrite(CONDEMNED_KEY, CondemnedList(since=keep_since))
        self._index.forget_deleted(set(to_delete) - set(locked))
        self._tables.clear()
        return GcResult(
            packs_deleted=packs_deleted,
            tables_deleted=tables_deleted,
            condemned=len(keep_since) - len(unreadable),
            sessions_expired=expired,
            live_sessions=len(live),
            locked=len(locked),
        )

    def _delete(self, keys: list[str]) -> tuple[int, int, list[str]]:
        """Delete condemned objects; returns (packs, tables) deleted and the keys a lock kept."""
        packs_deleted = tables_deleted = 0
        locked: list[str] = []
        for k in keys:
            try:
                if k.startswith("packs/"):
                    # Index first: a crash in between leaves a pack no writer will dedup against.
                    self._store.delete("index/" + k[len("packs/") :])
                    self._store.delete(k)
                    packs_deleted += 1
                elif k.startswith("tables/"):
                    self._store.delete(k)
                    tables_deleted += 1
                else:
                    self._store.delete(k)
            except ObjectLockedError:
                locked.append(k)
        return packs_deleted, tables_deleted, locked
