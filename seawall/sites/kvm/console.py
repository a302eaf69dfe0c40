"""What a Seawall-ready guest says on its serial console once it has booted, and reading it.

The guest prints one machine-readable line (the lab guest's ``init.sh`` does; any guest can, from a
boot script)::

    SEAWALL-GUEST host=kdb-01 ip=10.41.100.11/24 last_record=70 status=ready

``ip`` is the address the guest itself configured from its identity seed, ``last_record`` the end of
the contiguous records its application found on its data disk, ``status`` ``ready`` or why not
(``bad-identity``, ``corrupt``, ``no-disk``). A recovered VM is healthy only when this line says
``ready`` with the planned address: the guest's own word, not the hypervisor's.
"""

from __future__ import annotations

from dataclasses import dataclass

CONSOLE_TAG = "SEAWALL-GUEST"


@dataclass(frozen=True)
class ConsoleReport:
    """The guest's one machine-readable line, e.g.
    ``SEAWALL-GUEST host=kdb-01 ip=10.40.1.11/24 last_record=70 status=ready``."""

    host: str
    ip: str
    last_record: int
    status: str
    line: str

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def address(self) -> str:
        """The address without its prefix length."""
        return self.ip.partition("/")[0]


def parse_console_line(line: str) -> ConsoleReport | None:
    line = line.strip()
    if not line.startswith(CONSOLE_TAG + " "):
        return None
    fields = dict(part.partition("=")[::2] for part in line.split()[1:])
    try:
        return ConsoleReport(
            host=fields["host"],
            ip=fields["ip"],
            last_record=int(fields["last_record"]),
            status=fields["status"],
            line=line,
        )
    except (KeyError, ValueError):
        return None


def last_console_report(text: str) -> ConsoleReport | None:
    """The newest report in a console log (a log may span several boots)."""
    found = None
    for line in text.splitlines():
        report = parse_console_line(line)
        if report is not None:
            found = report
    return found
