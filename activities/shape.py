"""The recovered VM's shape: what the plan names, else what the source was, else a default said aloud.

``TargetSize`` promises "what is not given is copied from the source": the source is the
configuration captured with the point (``seawall.model.sourceconfig``). A point without one (taken
before configurations were captured) falls back to the defaults below, and the report says so.
"""

from __future__ import annotations

from seawall.model import PlanVM
from seawall.model.sourceconfig import SourceConfig
from seawall.sites.base import VMShape

DEFAULT_CPUS = 2
DEFAULT_MEMORY_MIB = 4096

NO_CONFIG = (
    "the point has no captured source configuration (taken before Seawall recorded one): "
    "the VM is created from the plan and the target site's defaults"
)


def vm_shape(pv: PlanVM, vm: str, source: SourceConfig | None, *, drill: bool = False) -> VMShape:
    """The shape ``create_vm`` builds: the plan overrides only what it names."""
    size = pv.size
    machine = source.machine if source is not None else None
    notes: list[str] = []
    if source is None:
        notes.append(NO_CONFIG)
    elif machine is None:
        notes.append(f"the {source.kind} source configuration has no machine description: defaults used")

    def pick(planned: int | None, captured: int | None, default: int, what: str) -> int:
        if planned:
            return planned
        if captured:
            return captured
        if source is not None and machine is not None:
            notes.append(f"the source configuration does not give {what}: {default} used")
        elif source is None:
            notes.append(f"{what}: {default} (default)")
        return default

    cpus = pick(size.cpus if size else None, machine.cpus if machine else None, DEFAULT_CPUS, "CPUs")
    memory = pick(
        size.memory_mib if size else None,
        machine.memory_mib if machine else None,
        DEFAULT_MEMORY_MIB,
        "memory (MiB)",
    )
    cores = machine.cores_per_socket if machine else None
    if cores is not None and cpus % cores != 0:
        # The plan resized the CPUs to a count the source's sockets do not divide: one core per socket.
        notes.append(f"{cpus} CPUs do not divide into the source's {cores} cores per socket: 1 used")
        cores = 1
    return VMShape(
        cpus=cpus,
        memory_mib=memory,
        instance_type=size.instance_type if size and size.instance_type else None,
        hostname=pv.hostname or vm,
        source=source,
        cores_per_socket=cores,
        notes=tuple(notes),
        drill=drill,
        windows=pv.windows,
    )
