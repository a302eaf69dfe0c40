"""Bandwidth limits: how many bytes per second replication may ship, by time of day and kind of ship.

A limit is written on a site (the site's TOTAL over all its worker processes), a replica store (the
store's total) or a protected VM (that VM's ships). Every limit that applies to a ship is enforced.
Either a bare number of bytes per second (the original form, still valid)::

    bandwidth_limit: 20000000

or the rich form::

    bandwidth_limit:
      bytes_per_s: 20000000          # default; omitted: unlimited outside the windows
      seed_bytes_per_s: 5000000      # a seed (first full copy) ships at most this
      timezone: Europe/Berlin        # of the windows; default UTC
      schedule:                      # the first window that matches the local time applies
        - {from: "08:00", to: "18:00", bytes_per_s: 5000000, days: [mon, tue, wed, thu, fri]}
        - {from: "22:00", to: "06:00", bytes_per_s: 100000000}   # across midnight

A window's ``days`` name the day it starts on (a window across midnight still applies after
midnight). Sandbox-safe like the rest of ``seawall.model``: the clock is always passed in.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, tzinfo
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from seawall.model.scalars import FileModel

__all__ = ["BandwidthLimit", "BandwidthPolicy", "BandwidthWindow", "Day", "Rate"]

# At least 64 KiB/s: below that one pack (~8 MiB) takes minutes and a checkpoint heartbeat times out.
Rate = Annotated[int, Field(strict=True, ge=64 * 1024, le=10**12)]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock_time(value: Any) -> Any:
    """``"08:00"`` (or ``"8:00"``, ``"24:00"`` as the end of the day); YAML's sexagesimal 8:00 = 480
    is refused with a hint to quote it."""
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise PydanticCustomError(
            "seawall_clock",
            'write the time of day in quotes, like "08:00" (got the number {value})',
            {"value": value},
        )
    if not isinstance(value, str):
        raise PydanticCustomError("seawall_clock", 'expected a time of day like "08:00"')
    text = value.strip()
    if text == "24:00":
        return time.max
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise PydanticCustomError(
            "seawall_clock",
            "'{value}' is not a time of day: use HH:MM from 00:00 to 24:00",
            {"value": text[:40]},
        ) from None


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class BandwidthWindow(FileModel):
    """Between ``from`` and ``to`` (local time) on ``days``, the limit is ``bytes_per_s``."""

    start: ClockTime = Field(alias="from")
    end: ClockTime = Field(alias="to")
    bytes_per_s: Rate
    days: Annotated[list[Day], Field(min_length=1)] = list(DAYS)

    @model_validator(mode="after")
    def _not_empty(self) -> BandwidthWindow:
        if self.start == self.end:
            raise PydanticCustomError(
                "seawall_window",
                "window from {start} to {end} is empty: 'from' and 'to' must differ",
                {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M")},
            )
        return self

    def matches(self, local: datetime) -> bool:
        now = local.time()
        day = DAYS[local.weekday()]
        if self.start < self.end:
            return day in self.days and self.start <= now < self.end
        # Across midnight: the evening part belongs to today, the morning part to yesterday's window.
        if now >= self.start:
            return day in self.days
        return now < self.end and DAYS[(local.weekday() - 1) % 7] in self.days


class BandwidthPolicy(FileModel):
    bytes_per_s: Rate | None = Field(default=None, description="the limit outside every window")
    seed_bytes_per_s: Rate | None = Field(default=None, description="a lower limit for seeds")
    schedule: list[BandwidthWindow] = []
    timezone: str = Field(default="UTC", description="IANA zone the windows are in")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value == "UTC":
            return value  # no tz database read: UTC policies stay sandbox-safe
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "seawall_timezone",
                "unknown time zone '{value}': use an IANA name like Europe/Berlin or UTC",
                {"value": value[:60]},
            ) from None
        return value

    @model_validator(mode="after")
    def _limits_something(self) -> BandwidthPolicy:
        if self.bytes_per_s is None and self.seed_bytes_per_s is None and not self.schedule:
            raise PydanticCustomError(
                "seawall_bandwidth",
                "set bytes_per_s, seed_bytes_per_s or a schedule (or leave the limit out)",
            )
        if (
            self.seed_bytes_per_s is not None
            and self.bytes_per_s is not None
            and self.seed_bytes_per_s > self.bytes_per_s
        ):
            raise PydanticCustomError(
                "seawall_bandwidth",
                "seed_bytes_per_s {seed} is above bytes_per_s {rate}: a seed limit can only be lower",
                {"seed": self.seed_bytes_per_s, "rate": self.bytes_per_s},
            )
        return self

    def _zone(self) -> tzinfo:
        if self.timezone == "UTC":
            return UTC
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    def window_at(self, when: datetime) -> BandwidthWindow | None:
        local = when.astimezone(self._zone())
        return next((w for w in self.schedule if w.matches(local)), None)

    def rate_at(self, when: datetime, *, seed: bool = False) -> int | None:
        """Bytes per second at ``when`` (an aware datetime) for a seed or an incremental; None: no limit."""
        window = self.window_at(when)
        rate = window.bytes_per_s if window is not None else self.bytes_per_s
        if seed and self.seed_bytes_per_s is not None:
            rate = self.seed_bytes_per_s if rate is None else min(rate, self.seed_bytes_per_s)
        return rate

    def lowest(self, *, seed: bool = False) -> int | None:
        """The tightest rate any time of the week may bring (what a capacity forecast must survive).
        None when some time of the week is unlimited and nothing else is set."""
        rates = [w.bytes_per_s for w in self.schedule]
        if self.bytes_per_s is not None:
            rates.append(self.bytes_per_s)
        if seed and self.seed_bytes_per_s is not None:
            rates.append(self.seed_bytes_per_s)
        return min(rates) if rates else None

    def describe(self) -> str:
        parts = [f"{self.bytes_per_s} B/s" if self.bytes_per_s else "unlimited"]
        parts += [
            f"{w.bytes_per_s} B/s {w.start:%H:%M}-{w.end:%H:%M} {','.join(w.days)} {self.timezone}"
            for w in self.schedule
        ]
        if self.seed_bytes_per_s is not None:
            parts.append(f"seeds {self.seed_bytes_per_s} B/s")
        return "; ".join(parts)


def _bare_rate(value: Any) -> Any:
    # The original form, a bare int, is the rich form's default rate (its range checks apply there).
    if isinstance(value, int) and not isinstance(value, bool):
        return {"bytes_per_s": value}
    return value


BandwidthLimit = Annotated[BandwidthPolicy, BeforeValidator(_bare_rate)]


def fixed(rate: int) -> BandwidthPolicy:
    """A limit that always applies, from a bare rate (tests, the benchmark)."""
    return BandwidthPolicy(bytes_per_s=rate)
