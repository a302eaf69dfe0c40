"""HTTP byte ranges for reading vSphere disk files: ``Content-Range`` parsing and coalescing range reads.

Pure arithmetic, no I/O: ``source.py`` (reading a snapshot's disk) and ``disks.py`` (writing and
checking disk files) both use it, and it is tested without a server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MiB", "ReadPlan", "coalesce_ranges", "parse_content_range"]

MiB = 1024 * 1024

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes 10-19/1024`` -> (10, 19, 1024); ``bytes */1024`` -> (None, None, 1024); junk -> Nones."""
    if not value:
        return None, None, None
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None, None, None
    first = int(m.group(1)) if m.group(1) is not None else None
    last = int(m.group(2)) if m.group(2) is not None else None
    total = int(m.group(3)) if m.group(3) not in (None, "*") else None
    return first, last, total


@dataclass(frozen=True)
class ReadPlan:
    """One HTTP range request covering ``parts`` (each an (offset, length) the caller asked for)."""

    offset: int
    length: int
    parts: tuple[tuple[int, int], ...]


def coalesce_ranges(
    ranges: Iterable[tuple[int, int]], *, max_gap: int = 0, max_request: int = 16 * MiB
) -> list[ReadPlan]:
    """Sort ranges and merge those that touch, overlap, or lie within ``max_gap`` bytes of each other,
    without growing a request past ``max_request`` (a single larger range stays one request)."""
    items = sorted((o, n) for o, n in ranges if n > 0)
    plans: list[ReadPlan] = []
    cur_start = cur_end = -1
    parts: list[tuple[int, int]] = []
    for offset, length in items:
        end = offset + length
        if parts and offset <= cur_end + max_gap and max(cur_end, end) - cur_start <= max_request:
            cur_end = max(cur_end, end)
            parts.append((offset, length))
            continue
        if parts:
            plans.append(ReadPlan(cur_start, cur_end - cur_start, tuple(parts)))
        cur_start, cur_end, parts = offset, end, [(offset, length)]
    if parts:
        plans.append(ReadPlan(cur_start, cur_end - cur_start, tuple(parts)))
    return plans
