"""A source VM's custom attributes become the machine's tags, named by their field definitions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from seawall.sites.vsphere.describe import _tags

MANAGER = object()


def field(key: int, name: str) -> SimpleNamespace:
    return SimpleNamespace(key=key, name=name)


def value(key: int, text: str | None) -> SimpleNamespace:
    return SimpleNamespace(key=key, value=text)


class Conn:
    """What ``_tags`` reads: the VM's two properties, and the manager's definitions when asked."""

    def __init__(self, available: list[Any], values: list[Any], defined: list[Any]) -> None:
        self.content = SimpleNamespace(customFieldsManager=MANAGER)
        self._vm = {"availableField": available, "customValue": values}
        self._defined = defined
        self.reads: list[Any] = []

    def properties(self, obj: Any, paths: list[str]) -> dict[str, Any]:
        self.reads.append(obj)
        if obj is MANAGER:
            return {"field": self._defined}
        return {p: self._vm[p] for p in paths}


def test_names_come_from_the_vms_available_fields() -> None:
    conn = Conn([field(1, "owner"), field(2, "tier")], [value(1, "team-db"), value(2, None)], [])
    assert _tags(conn, "vm") == {"owner": "team-db"}  # type: ignore[arg-type]
    assert conn.reads == ["vm"]  # nothing else read when the VM names every value


def test_a_field_the_vm_does_not_list_is_named_by_the_manager() -> None:
    # vcsim lists on a VM only the fields defined before it existed; vCenter lists them all.
    conn = Conn(
        [field(1, "owner")], [value(1, "team-db"), value(7, "erp-42")], [field(1, "x"), field(7, "cost")]
    )
    assert _tags(conn, "vm") == {"owner": "team-db", "cost": "erp-42"}  # type: ignore[arg-type]
    assert conn.reads == ["vm", MANAGER]


def test_a_value_of_no_known_field_is_left_out() -> None:
    conn = Conn([], [value(9, "orphan")], [])
    assert _tags(conn, "vm") == {}  # type: ignore[arg-type]
