"""Which data-path primitives release the GIL, at the buffer sizes the data path uses.

    python -m benchmarks.gil --json [--seconds 0.5]

For each primitive (xxh3, the C batch hashes of ``seawall.blockstore.fasthash``, BLAKE3, zstd-1,
AES-256-GCM, a bytes compare) and buffer size, one thread calls it in a loop and records when each
call starts and ends, while a second thread runs pure Python and stamps the clock every few
microseconds. ``overlap`` is the share of the Python thread's stamps that fall inside a call,
divided by the share of the time the calls cover: near 1 when the call releases the GIL (the Python
thread runs right through it), near 0 when it holds it (the Python thread only runs between calls).
A shared, busy machine delays both threads alike, so the ratio stays readable where wall-clock
speedups do not. ``releases_gil`` is ``overlap > 0.5``; ``mb_s_cpu`` is the primitive's throughput
per CPU-second of its thread, alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable

import blake3
import xxhash
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from seawall.blockstore import fasthash

SIZES = (64 * 1024, 4 * 1024 * 1024)


def _sample(n: int) -> bytes:
    # Half text-like (compressible), half random: zstd does real work, not a trivial run.
    text = b"".join(
        b"line %d of the benchmark: some words repeat, some do not %x\n" % (i, i * 7919)
        for i in range(n // 64)
    )
    return (text[: n // 2] + os.urandom(n))[:n]


def primitives(size: int) -> dict[str, Callable[[], object]]:
    data = _sample(size)
    key = os.urandom(32)
    aead = AESGCM(key)
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, data, b"ad")
    packed = zstandard.ZstdCompressor(level=1).compress(data)
    cctx = zstandard.ZstdCompressor(level=1)
    dctx = zstandard.ZstdDecompressor()
    other = bytes(bytearray(data))
    blocks = [memoryview(data)[o : o + 64 * 1024] for o in range(0, len(data), 64 * 1024)]
    return {
        "xxh3_128": lambda: xxhash.xxh3_128_digest(data),
        # The data path's batch calls (C extension): a read batch's block hashes, a batch's pieces.
        "fasthash_blocks": lambda: fasthash.block_hashes(data, 64 * 1024, 0),
        "fasthash_pieces": lambda: fasthash.piece_fingerprints(blocks, 4096, 0),
        "blake3_keyed": lambda: blake3.blake3(data, key=key).digest(),
        "zstd1_compress": lambda: cctx.compress(data),
        "zstd_decompress": lambda: dctx.decompress(packed),
        "aesgcm_encrypt": lambda: aead.encrypt(nonce, data, b"ad"),
        "aesgcm_decrypt": lambda: aead.decrypt(nonce, sealed, b"ad"),
        "bytes_compare": lambda: data == other,
    }


def probe(fn: Callable[[], object], seconds: float, size: int) -> dict[str, object]:
    t, n = time.thread_time(), 0
    while time.thread_time() - t < seconds / 4:
        fn()
        n += 1
    alone = n * size / (time.thread_time() - t) / 1e6

    stop = threading.Event()
    calls: list[tuple[float, float]] = []
    stamps: list[float] = []
    clock = time.perf_counter

    def prim() -> None:
        while not stop.is_set():
            t0 = clock()
            fn()
            calls.append((t0, clock()))

    def py() -> None:
        while not stop.is_set():
            for _ in range(20):
                pass
            stamps.append(clock())

    threads = [threading.Thread(target=prim), threading.Thread(target=py)]
    for th in threads:
        th.start()
    time.sleep(seconds)
    stop.set()
    for th in threads:
        th.join()
    if not calls or len(stamps) < 2:
        return {"mb_s_cpu": round(alone, 1), "overlap": None, "releases_gil": None}
    lo, hi = max(calls[0][0], stamps[0]), min(calls[-1][1], stamps[-1])
    covered = sum(min(b, hi) - max(a, lo) for a, b in calls if b > lo and a < hi)
    inside, k = 0, 0
    window = [s for s in stamps if lo <= s <= hi]
    for s in window:  # both lists are in time order: one merge pass
        while k < len(calls) and calls[k][1] < s:
            k += 1
        inside += k < len(calls) and calls[k][0] <= s
    share_time = covered / (hi - lo) if hi > lo else 0.0
    share_stamps = inside / len(window) if window else 0.0
    overlap = share_stamps / share_time if share_time else None
    return {
        "mb_s_cpu": round(alone, 1),
        "calls_cover": round(share_time, 3),
        "overlap": None if overlap is None else round(overlap, 3),
        "releases_gil": None if overlap is None else overlap > 0.5,
    }


def run(seconds: float) -> dict[str, object]:
    out: dict[str, object] = {"loadavg_1m": round(os.getloadavg()[0], 2)}
    for size in SIZES:
        for name, fn in primitives(size).items():
            out[f"{name}@{size // 1024}KiB"] = probe(fn, seconds, size)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gil", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object (default: indented)")
    ap.add_argument("--seconds", type=float, default=0.5, help="measuring window per primitive and size")
    args = ap.parse_args(argv)
    res = run(args.seconds)
    print(json.dumps(res) if args.json else json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
