"""Cron expressions as Temporal Schedules take them, checked where the plan is read.

Temporal validates a schedule's cron string only when the schedule is created, long after the plan
was accepted; checking here turns a typo into a located plan-check error (``file:line: field:
message``) instead of a failed ``seawall plan schedule``. The accepted language is the classic five
fields (minute hour day-of-month month day-of-week) with ``*``, lists, ranges, ``/step``, month and
weekday names, plus the ``@hourly``-style macros: what Temporal's cron parser and every crontab share.
"""

from __future__ import annotations

import re

MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# name, low, high, names (index + low is the value)
_FIELDS: tuple[tuple[str, int, int, list[str]], ...] = (
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_ITEM = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")


def _value(text: str, field: str, low: int, high: int, names: list[str]) -> int:
    if text in names:
        return names.index(text) + (1 if names is _MONTHS else 0)
    if not text.isdigit():
        raise ValueError(
            f"{field}: {text!r} is not a number" + (f" or a name ({names[0]}...)" if names else "")
        )
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{field}: {number} is out of range {low}-{high}")
    return number


def check_cron(expression: str) -> str:
    """The expression, normalised (lower case, single spaces); ValueError saying what is wrong."""
    text = " ".join(expression.lower().split())
    if text in MACROS:
        return text
    if text.startswith("@"):
        raise ValueError(f"unknown macro {text!r} (use one of {', '.join(sorted(MACROS))})")
    parts = text.split(" ")
    if len(parts) != len(_FIELDS):
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {len(parts)}"
        )
    for part, (field, low, high, names) in zip(parts, _FIELDS, strict=True):
        for item in part.split(","):
            match = _ITEM.fullmatch(item)
            if not match:
                raise ValueError(f"{field}: {item!r} is not *, N, N-M or one of them with /STEP")
            span, step = match.groups()
            if step is not None and int(step) == 0:
                raise ValueError(f"{field}: a step of 0 never fires")
            if span == "*":
                continue
            first, _, last = span.partition("-")
            a = _value(first, field, low, high, names)
            if last:
                b = _value(last, field, low, high, names)
                if b < a:
                    raise ValueError(f"{field}: range {span!r} runs backwards")
    return text
