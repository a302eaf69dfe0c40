"""The data path keeps glibc's heap for its buffers: set once per process, the environment wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Run in a fresh interpreter each: the settings are per process and the test runner's own
# allocations would blur the heap figures.
PROBE = r"""
import ctypes, json, sys
from seawall.blockstore import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "repository":
    from seawall.blockstore.keys import KeyMaterial
    from seawall.blockstore.repository import Repository
    from tests.datapath_scenario import MemoryStore
    Repository(MemoryStore(), KeyMaterial("k", bytes(32)))
    state = allocator._state
else:
    state = allocator.tune() if sys.argv[1] == "tune" else None
mapped_before = libc.mallinfo2().hblkhd
buf = bytes(8 * 1024 * 1024)  # a pack's size
mapped_during = libc.mallinfo2().hblkhd
del buf
print(json.dumps({"state": state, "pack_mmapped": mapped_during - mapped_before >= 8 * 1024 * 1024,
                  "free_heap": libc.mallinfo2().fordblks}))
"""


def probe(mode: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env={**clean, **env}
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_default_glibc_maps_a_pack_and_gives_it_back() -> None:
    r = probe("none")
    assert r["state"] is None
    assert r["pack_mmapped"] is True
    assert int(r["free_heap"]) < 8 * 1024 * 1024  # type: ignore[call-overload]


@pytest.mark.parametrize("mode", ["tune", "repository"])
def test_tuned_process_keeps_the_heap(mode: str) -> None:
    r = probe(mode)
    assert r["state"] == "tuned"
    assert r["pack_mmapped"] is False
    assert int(r["free_heap"]) >= 8 * 1024 * 1024  # type: ignore[call-overload]  # kept for the next pack


def test_an_operators_environment_wins() -> None:
    r = probe("tune", MALLOC_TRIM_THRESHOLD_="131072")
    assert r["state"] == "environment"
    assert r["pack_mmapped"] is True  # glibc's own default for the mmap threshold, untouched
