"""The data path's numbers, each with the measurement or limit that chose it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

# A disk's table is at most MAX_CHAIN layers: one full and up to 7 deltas (see repository.py).
MAX_CHAIN = 8
PACK_TARGET = 8 * 1024 * 1024
# A checkpoint (pack flush + table part + journal + progress callback) every 1 GiB scanned or
# 64 MiB shipped: a restarted worker re-reads at most ~1 GiB (~0.15 s from cache, ~2 s from a
# 500 MB/s datastore) and a 1 TiB seed writes ~10,000 small parts, not millions.
CHECKPOINT_BLOCKS = 16384
CHECKPOINT_BYTES = 64 * 1024 * 1024
MAX_PACKS_IN_FLIGHT = 4  # 32 MiB of sealed data waiting for the store at most
FETCH_THREADS = 4
# CBT extents closer than this are read as one run: reading a 256 KiB gap costs less than another
# request (an HTTP range read to a datastore, or ~20 us of per-read overhead locally), and the
# gap's blocks are then simply found unchanged by their hashes.
CBT_GAP_BLOCKS = 4
READ_BATCH_BLOCKS = 64  # 4 MiB reads: large enough for HTTP range reads, small for the pipeline
# A restore into a file or device starts the kernel's writeback of every 32 MiB it has written
# (readback.start_writeback), so the disk writes while the pool decodes instead of all of it at
# the final fsync; small enough that the disk is never far behind, large enough for big requests.
WRITEBACK_BYTES = 32 * 1024 * 1024
CLOCK_SKEW = timedelta(minutes=5)


def default_threads() -> int:
    """Encoder threads: one more than cores.

    zstd runs without the GIL, but every chunk also needs it briefly (BLAKE3, AES-GCM, piece
    fingerprints); a spare thread keeps both cores compressing while another waits for the GIL.
    Measured seed of 1 GiB on 2 cores: 2.35 s with 2 threads, 1.9 s with 3, 2.0 s with 4
    (single-threaded zstd-1 alone: 1.67 s).
    """
    return (os.cpu_count() or 1) + 1


@dataclass(frozen=True)
class Tuning:
    """One repository's settings, shared read-only by its rooms."""

    threads: int
    pack_target: int = PACK_TARGET
    max_chain: int = MAX_CHAIN
    checkpoint_blocks: int = CHECKPOINT_BLOCKS
    checkpoint_bytes: int = CHECKPOINT_BYTES
    lease_ttl: timedelta = timedelta(hours=6)
    gc_grace: timedelta = timedelta(hours=1)
    pack_cache_bytes: int = 256 * 1024 * 1024
