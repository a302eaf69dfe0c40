"""The state one ship carries between its scan, its packs and its checkpoints."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from seawall.blockstore.manifest import SessionJournal
from seawall.blockstore.table import ChunkRef, Entry, Hasher

# What the encoder threads return per job: chunk id, sealed chunk, piece fingerprints (or None).
Encoded = tuple[bytes, bytes, bytes | None]


@dataclass
class Pending:
    """A batch of blocks planned (rows to write, chunks being encoded) but not yet in the table."""

    start: int
    end: int
    plans: list[tuple[Any, ...]]
    future: Future[list[Encoded]] | None
    buf: bytearray | None = None


@dataclass
class ShipState:
    journal: SessionJournal
    pack_id: bytes = b""
    pack_chunks: list[bytes] = field(default_factory=list)
    pack_len: int = 0
    writes: list[Future[int]] = field(default_factory=list)  # packs since the last checkpoint
    in_flight: list[Future[int]] = field(default_factory=list)  # packs not yet seen stored
    pack_rows: list[tuple[bytes, int, int]] = field(default_factory=list)
    part_entries: list[Entry] = field(default_factory=list)
    part_start: int = 0
    since_ckpt_blocks: int = 0
    since_ckpt_bytes: int = 0
    referenced: set[bytes] = field(default_factory=set)
    written: set[bytes] = field(default_factory=set)
    # Hot counters live here, not in the frozen journal model, and are copied in at checkpoints.
    position: int = 0
    bytes_read: int = 0
    bytes_changed: int = 0
    bytes_shipped: int = 0
    chunks_new: int = 0
    hasher: Hasher = field(default_factory=lambda: Hasher(0))
    writer: ThreadPoolExecutor | None = None
    # The checkpoint being made durable (packing.py), on its own single thread: (journal, bytes of
    # the table parts this ship wrote since it started or resumed).
    checkpointer: ThreadPoolExecutor | None = None
    ckpt: Future[tuple[SessionJournal, int]] | None = None
    part_bytes: int = 0
    local: dict[bytes, ChunkRef] = field(default_factory=dict)
    use_index: bool = True
    deduped: set[bytes] = field(default_factory=set)  # other ships' packs found via the index
    # Damaged chunks of the store (damage.py): never reused; sealed again here, they repair in place.
    damaged: frozenset[bytes] = frozenset()
    repairs: dict[bytes, bytes] = field(default_factory=dict)
    unconfirmed: list[tuple[bytes, list[bytes]]] = field(default_factory=list)

    @classmethod
    def start(cls, journal: SessionJournal, hasher: Hasher) -> ShipState:
        return cls(
            journal=journal,
            hasher=hasher,
            part_start=journal.position,
            referenced={bytes.fromhex(p) for p in journal.packs_referenced},
            written={bytes.fromhex(p) for p in journal.packs_written},
            # A resumed ship re-checks everything its earlier parts referenced beyond its own packs.
            deduped={bytes.fromhex(p) for p in journal.packs_referenced}
            - {bytes.fromhex(p) for p in journal.packs_written},
            position=journal.position,
            bytes_read=journal.bytes_read,
            bytes_changed=journal.bytes_changed,
            bytes_shipped=journal.bytes_shipped,
            chunks_new=journal.chunks_new,
        )
