"""`LabInfo`: every endpoint of a running lab, written by `seawall lab up` to ``<state>/lab.json``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from pydantic import BaseModel, Field, ValidationError

from seawall.lab import config as c


class LabNotUpError(RuntimeError):
    """The lab has not been started (no lab.json) or is not healthy."""


class TemporalInfo(BaseModel):
    address: str  # host:port of the gRPC frontend
    host: str
    port: int
    ui_url: str
    namespace: str = "default"
    search_attributes: list[str] = Field(default_factory=list)
    db_file: Path


class LabDisk(BaseModel):
    """One virtual disk of a lab VM and the file that holds its bytes."""

    label: str  # "Hard disk 1", ...
    unit: int  # SCSI unit number on controller 0
    datastore_path: str  # "[ds-primary] web-01/web-01.vmdk", as vSphere names the backing
    flat_name: str  # "web-01/web-01-flat.vmdk", relative to the datastore root
    file: Path  # the -flat.vmdk on this machine
    capacity_bytes: int


class LabVM(BaseModel):
    name: str
    network: str
    host: str  # ESX host name inside the simulated cluster
    disks: list[LabDisk]


class VSphereSiteInfo(BaseModel):
    """A vcsim site; ``user``/``password`` are vcsim's lab-only pair, also in ``credentials_file``."""

    site: str  # "primary" | "dr"
    host: str
    port: int
    protocol: str = "http"
    user: str
    password: str
    credentials_file: Path
    datacenter: str
    cluster: str
    hosts: list[str]
    datastore: str
    datastore_dir: Path
    switch: str  # the distributed switch that carries the port groups
    networks: list[str]  # every port group the lab made, isolated ones included
    isolated_networks: list[str] = Field(default_factory=list)  # e.g. "drill": no route to production
    vms: list[LabVM] = Field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}/sdk"

    @property
    def vm_names(self) -> list[str]:
        return [vm.name for vm in self.vms]

    def vm(self, name: str) -> LabVM:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(
            f"no VM {name!r} at lab site {self.site!r} (has: {', '.join(self.vm_names) or 'none'})"
        )

    def datastore_url(self, relative_path: str) -> str:
        """HTTP URL of a datastore file, as vCenter (and vcsim) serve it under /folder/."""
        query = urlencode({"dcPath": self.datacenter, "dsName": self.datastore})
        return f"{self.protocol}://{self.host}:{self.port}/folder/{quote(relative_path)}?{query}"


class S3Info(BaseModel):
    endpoint_url: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str


class AwsInfo(BaseModel):
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str
    vpc_id: str
    vpc_cidr: str
    subnets: dict[str, str]  # Name tag -> subnet id: "aws-web", "aws-app", "aws-db"
    subnet_cidrs: dict[str, str]
    hosted_zone_id: str  # bare id, e.g. "Z1D633PJN98FT9" (no "/hostedzone/" prefix)
    hosted_zone_name: str
    credentials_file: Path  # {"aws_access_key_id": ..., "aws_secret_access_key": ...}


class AzureInfo(BaseModel):
    connection_string: str
    account_name: str
    account_key: str
    blob_endpoint: str
    container: str
    credentials_file: Path  # {"account_name": ..., "account_key": ...}


class DnsInfo(BaseModel):
    """The lab's authoritative DNS server (BIND 9) for ``zone``, on ``server``:``port`` (UDP and TCP).

    Dynamic updates (RFC 2136) are accepted only when signed with the TSIG key ``tsig_key_name``,
    whose secret is in ``tsig_key_file`` (a BIND ``key`` clause, as tsig-keygen writes it; mode 0600):
    an inventory references it as ``file:<tsig_key_file>``, so the secret itself is not in lab.json.
    """

    server: str
    port: int
    zone: str  # "corp.example.com": as inventories write zone names (no trailing dot)
    tsig_key_name: str  # "seawall-lab."
    tsig_algorithm: str  # "hmac-sha256"
    tsig_key_file: Path
    zone_file: Path  # the zone as the lab seeded it; BIND keeps later updates in its journal (.jnl)
    records: dict[str, str] = Field(default_factory=dict)  # the seeded A/CNAME records: name -> value


class KvmNetworkInfo(BaseModel):
    """A libvirt network of a KVM site: a bridge with no host address (no <ip>, no dnsmasq)."""

    name: str  # libvirt name, e.g. "kvm-a-prod"
    bridge: str  # the host bridge; unique per lab (derived from the state dir)
    purpose: str  # "production" | "drill"
    isolated: bool  # a drill network: nothing routes between it and production
    subnet: str  # the guests' address plan on it (the host has no address there)
    gateway: str


class KvmGuestInfo(BaseModel):
    """A running lab guest (see seawall.lab.kvm_records for what it writes and prints)."""

    name: str  # libvirt domain name
    hostname: str
    address: str
    prefix: int
    gateway: str
    network: str  # libvirt network of its NIC on the site (eth1)
    health_port: int  # 127.0.0.1:<port> -> the guest's port 80 (eth0, QEMU user-mode)
    console_log: Path  # the guest's serial console; its "SEAWALL-GUEST ..." line
    system_volume: str  # volume names in the site's pool
    data_volume: str
    system_disk: Path  # qcow2 files behind those volumes
    data_disk: Path

    @property
    def health_url(self) -> str:
        return f"http://{c.HOST}:{self.health_port}/cgi-bin/health"


class KvmSiteInfo(BaseModel):
    """A KVM site: its own libvirtd (own mount namespace, own socket), so its inventory is its alone."""

    site: str  # "kvm-a" | "kvm-b"
    uri: str  # qemu:///system?socket=<state>/kvm/<site>/run/libvirt-sock
    socket: Path
    accel: str  # "kvm" or "tcg": what guests run with on this machine
    domain_type: str  # the <domain type=...> that gives it: "kvm" or "qemu"
    pool: str
    pool_dir: Path
    networks: list[KvmNetworkInfo]
    production_network: str
    drill_network: str
    console_dir: Path  # where guests' serial consoles are written
    qemu_log_dir: Path  # libvirt's per-domain QEMU logs (/var/log/libvirt/qemu inside the namespace)
    base_image: Path  # the lab guest's raw system disk without an identity (copy it, then write_identity)
    health_ports: list[int]  # [first, last]: 127.0.0.1 ports this site's new guests may forward
    guests: list[KvmGuestInfo] = Field(default_factory=list)

    def guest(self, name: str) -> KvmGuestInfo:
        for guest in self.guests:
            if guest.name == name:
                return guest
        raise KeyError(f"no guest {name!r} at {self.site} (has: {', '.join(g.name for g in self.guests)})")

    def network(self, name: str) -> KvmNetworkInfo:
        for net in self.networks:
            if net.name == name:
                return net
        raise KeyError(f"no network {name!r} at {self.site}")


class LabInfo(BaseModel):
    state_dir: Path
    temporal: TemporalInfo
    vsphere: dict[str, VSphereSiteInfo]  # "primary", "dr"
    s3: S3Info
    aws: AwsInfo
    azure: AzureInfo
    dns: DnsInfo
    disk_size: int
    replica_key_file: Path  # 32-byte replica encryption key as hex; made once, kept across `lab up`
    kvm: dict[str, KvmSiteInfo] = Field(default_factory=dict)  # "kvm-a", "kvm-b"

    @property
    def primary(self) -> VSphereSiteInfo:
        return self.vsphere["primary"]

    @property
    def dr(self) -> VSphereSiteInfo:
        return self.vsphere["dr"]

    def site(self, name: str) -> VSphereSiteInfo:
        try:
            return self.vsphere[name]
        except KeyError:
            raise KeyError(f"no lab site {name!r} (sites: {', '.join(self.vsphere)})") from None

    def env(self) -> dict[str, str]:
        """Environment for clients (boto3, Seawall workers) pointed at the lab."""
        return {
            "AWS_ACCESS_KEY_ID": self.aws.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws.secret_access_key,
            "AWS_DEFAULT_REGION": self.aws.region,
            "AWS_ENDPOINT_URL": self.aws.endpoint_url,
            "AZURE_STORAGE_CONNECTION_STRING": self.azure.connection_string,
            "SEAWALL_TEMPORAL_ADDRESS": self.temporal.address,
            "SEAWALL_TEMPORAL_NAMESPACE": self.temporal.namespace,
            c.ENV_STATE_DIR: str(self.state_dir),
        }


def lab_json_path(state: Path) -> Path:
    return state / "lab.json"


def load_lab(state_dir: Path | str | None = None) -> LabInfo:
    """The LabInfo that `seawall lab up` wrote; LabNotUpError when there is none."""
    state = c.state_dir(state_dir)
    path = lab_json_path(state)
    if not path.is_file():
        raise LabNotUpError(f"no lab at {state} (missing {path.name}): run `seawall lab up` (or `make test`)")
    try:
        return LabInfo.model_validate_json(path.read_text())
    except ValidationError as exc:
        # Written by an older Seawall (a part added since, e.g. dns): `up` rewrites it.
        raise LabNotUpError(
            f"{path} does not describe this version's lab ({exc.error_count()} problem(s), first: "
            f"{'.'.join(map(str, exc.errors()[0]['loc']))}): run `seawall lab up`"
        ) from None
