"""Which data-path primitives release the GIL, at the buffer sizes the data path uses.

    python -m benchmarks.gil --json [--seconds 0.5]

For each primitive (xxh3, the C batch hashes of ``seawall.blockstore.fasthash``, BLAKE3, zstd-1,
AES-256-GCM, a bytes compare) and buffer size:
- ``releases_gil``: whether a Python thread ever ran while up to ~50 ms of calls did (``runs_beside``:
  the switch interval at 5 s, a call that holds the GIL never lets it in; a loaded machine can hide a
  release, never fake one);
- ``parallel``: one thread calls it in a loop while a second runs pure Python, for a fixed wall
  time; their CPU seconds over that time. Taking turns on the GIL keeps it at most 1.0; running
  side by side on two cores lifts it towards 2.0 (GIL hand-offs after short calls and other work on
  the machine pull it down). It is what the data path's threads get out of a release;
- ``mb_s_cpu``: the primitive's throughput per CPU-second of its thread, alone.
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


SWITCH_INTERVAL = 5.0  # while runs_beside probes: no forced switch, however slow the machine


def runs_beside(call: Callable[[], object]) -> bool:
    """Whether another thread ran Python while ``call()`` worked.

    A C call that holds the GIL cannot be interrupted, and the interpreter forces a switch only
    once a waiting thread has waited the switch interval, here ``SWITCH_INTERVAL``: the other
    thread, woken just before, gets no turn until ``call`` returns. A call that releases the GIL
    lets it run at once, if a core is free. A ``call`` that outlasts half the interval (a machine
    so loaded that a forced switch could come) counts as not let in: load can hide a release,
    never fake one. The other thread takes one turn and then waits, so a releasing ``call`` is not
    slowed down.
    """
    ran = threading.Event()
    go = threading.Event()
    stop = threading.Event()

    def other() -> None:
        go.wait()
        ran.set()
        stop.wait()

    old = sys.getswitchinterval()
    t = threading.Thread(target=other)
    t.start()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        go.set()
        before = ran.is_set()
        t0 = time.monotonic()
        call()
        during = ran.is_set() and not before
        took = time.monotonic() - t0
    finally:
        stop.set()
        sys.setswitchinterval(old)
        t.join()
    return during and took < SWITCH_INTERVAL / 2


def probe(fn: Callable[[], object], seconds: float, size: int) -> dict[str, object]:
    t, n = time.thread_time(), 0
    while time.thread_time() - t < seconds / 4:
        fn()
        n += 1
    took = time.thread_time() - t
    alone = n * size / took / 1e6
    # Up to ~50 ms of calls in a row, far inside runs_beside's switch interval; a few tries on a
    # busy machine.
    k = max(1, min(10_000, int(min(0.05, seconds / 4) / (took / n))))
    ran = any(runs_beside(lambda: [fn() for _ in range(k)]) for _ in range(3))

    stop = threading.Event()
    cpu: dict[str, float] = {}

    def prim() -> None:
        t0 = time.thread_time()
        while not stop.is_set():
            fn()
        cpu["prim"] = time.thread_time() - t0

    def py() -> None:
        t0 = time.thread_time()
        while not stop.is_set():
            for _ in range(20):
                pass
        cpu["py"] = time.thread_time() - t0

    threads = [threading.Thread(target=prim), threading.Thread(target=py)]
    w0 = time.perf_counter()
    for th in threads:
        th.start()
    time.sleep(seconds)
    stop.set()
    for th in threads:
        th.join()
    wall = time.perf_counter() - w0
    parallel = (cpu.get("prim", 0.0) + cpu.get("py", 0.0)) / wall if wall > 0 else 0.0
    return {
        "mb_s_cpu": round(alone, 1),
        "parallel": round(parallel, 3),
        "releases_gil": ran,
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
