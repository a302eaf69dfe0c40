"""What each vSphere site of the lab contains (``SiteSpec``), its disk file names and the VMs' addresses.

Pure data and naming, no vSphere API: ``vsphere_build.py`` builds a site from its spec,
``vsphere.py`` reads it back and checks it; tests and ``bind.py`` use the addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seawall.lab import config as c


@dataclass(frozen=True)
class SiteSpec:
    """What one vSphere site of the lab contains."""

    site: str
    port: int
    datacenter: str
    datastore: str
    datastore_dir: Path
    credentials_file: Path
    networks: tuple[str, ...]
    isolated_networks: tuple[str, ...]
    vms: tuple[str, ...]
    disk_size: int
    second_disk_vm: str | None
    hosts_per_cluster: int

    @property
    def cluster(self) -> str:
        return f"cluster-{self.site}"

    @property
    def switch(self) -> str:
        return f"dvs-{self.site}"

    @property
    def host_names(self) -> list[str]:
        return [f"esx-{self.site}-{i:02d}.lab" for i in range(1, self.hosts_per_cluster + 1)]

    def all_networks(self) -> tuple[str, ...]:
        return self.networks + self.isolated_networks

    def network_for(self, vm: str, index: int) -> str:
        # The contract names say their tier; other VMs are spread over the tiers in turn.
        tier = vm.split("-", 1)[0]
        for net in self.networks:
            if net.endswith(f"-{tier}"):
                return net
        return self.networks[index % len(self.networks)]

    def disk_count(self, vm: str) -> int:
        return 2 if vm == self.second_disk_vm else 1


def site_specs(state: Path, cfg: c.LabConfig) -> dict[str, SiteSpec]:
    common = {"disk_size": cfg.disk_size, "hosts_per_cluster": cfg.hosts_per_cluster}
    return {
        "primary": SiteSpec(
            site="primary",
            port=cfg.vcsim_primary_port,
            datacenter="dc-primary",
            datastore="ds-primary",
            datastore_dir=state / "vcsim" / "primary" / "ds",
            credentials_file=state / "credentials" / "primary.json",
            networks=("prod-web", "prod-app", "prod-db"),
            isolated_networks=(),
            vms=tuple(cfg.vms),
            second_disk_vm=cfg.second_disk_vm,
            **common,
        ),
        "dr": SiteSpec(
            site="dr",
            port=cfg.vcsim_dr_port,
            datacenter="dc-dr",
            datastore="ds-dr",
            datastore_dir=state / "vcsim" / "dr" / "ds",
            credentials_file=state / "credentials" / "dr.json",
            networks=("dr-web", "dr-app", "dr-db"),
            isolated_networks=("drill",),
            vms=(),
            second_disk_vm=None,
            **common,
        ),
    }


def disk_names(vm: str, index: int) -> tuple[str, str]:
    # vSphere's naming: the first disk is <vm>.vmdk, the next <vm>_1.vmdk; each has a -flat extent.
    base = vm if index == 0 else f"{vm}_{index}"
    return f"{vm}/{base}.vmdk", f"{vm}/{base}-flat.vmdk"


# The primary site's production subnets, as examples/inventory.yaml declares them.
PRODUCTION_SUBNETS = {"prod-web": "10.1.1", "prod-app": "10.1.2", "prod-db": "10.1.3"}
_HOST_BASE = {"web": 20, "app": 10, "db": 9}


def production_ip(site: str, vm: str, network: str, index: int) -> str | None:
    """web-01 -> 10.1.1.21, app-02 -> 10.1.2.12, db-01 -> 10.1.3.10; other VMs 10.1.x.(100 + i)."""
    prefix = PRODUCTION_SUBNETS.get(network)
    if site != "primary" or prefix is None:
        return None
    tier, _, number = vm.partition("-")
    host = _HOST_BASE[tier] + int(number) if tier in _HOST_BASE and number.isdigit() else 100 + index
    return f"{prefix}.{host}"
