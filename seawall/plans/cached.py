"""An inventory loader for workers: the file is parsed again only when it changed on disk.

Workers resolve a VM's protection from the inventory at every replication cycle (a local activity),
so that an edited policy applies from the next cycle on. Parsing and validating the file costs time
in proportion to the fleet (the YAML parser is pure Python and keeps line numbers for the errors):
about 0.25 s for 500 protected VMs on these machines, all of it holding the GIL. Parsed once per cycle,
that is O(N) work per cycle and O(N^2) per interval: at 300 VMs every 30 s it alone wanted more than
a core, and starved the worker's workflow tasks into timeouts.

The file's identity (inode, size, modification and change times, in ns) decides whether the last
parse still holds, so an edit — in place or by an atomic rename — is seen at the next call, as before.
A file that does not load raises its located errors at every call, as ``load_inventory`` does, and
nothing of it is kept.

The ``Inventory`` returned is shared by every caller until the file changes: callers read it and never
change it (the activities that use this only look names up).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from seawall.model import Inventory
from seawall.plans.loading import load_inventory

__all__ = ["CachedInventory"]

_Stamp = tuple[int, int, int, int, int]


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # load_inventory says what is wrong with it, at its line
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class CachedInventory:
    """``load_inventory(path)``, parsed again only when the file's identity changes. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = None
        self._inventory: Inventory | None = None

    def __call__(self) -> Inventory:
        # Stamped before reading: a change during the read leaves a stamp that differs from the next
        # call's, so the worst case is one extra parse, never an old inventory kept for a new file.
        stamp = _stamp(self._path)
        with self._lock:
            if stamp is not None and stamp == self._stamp and self._inventory is not None:
                return self._inventory
        inventory = load_inventory(self._path)
        with self._lock:
            self._stamp, self._inventory = stamp, inventory
        return inventory
