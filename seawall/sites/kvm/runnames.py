"""Names of what a KVM recovery run makes in the target pool: volumes and the serial console file.

Every name carries the run (``<name>--<run>--<disk>.qcow2``, ``<name>--<run>--console.log``), so a
retry finds what an earlier attempt made and cleanup finds exactly it. Pure string functions, apart
from the libvirt verbs in ``target.py`` so they can be tested and reused without a connection.
"""

from __future__ import annotations

import re

SAFE = re.compile(r"[^A-Za-z0-9._-]")


def volume_prefix(name: str, run: str) -> str:
    return f"{SAFE.sub('_', name)}--{SAFE.sub('_', run)}--"


def volume_name(name: str, run: str, disk: str) -> str:
    return f"{volume_prefix(name, run)}{SAFE.sub('_', disk)}.qcow2"


def console_name(name: str, run: str) -> str:
    return f"{volume_prefix(name, run)}console.log"


def made_by_run(volume: str, run: str) -> bool:
    return f"--{SAFE.sub('_', run)}--" in volume
