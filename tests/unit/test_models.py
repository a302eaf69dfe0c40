"""Domain models: round trips through Temporal's pydantic converter, and what validators accept."""

from __future__ import annotations

import ast
from datetime import timedelta
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from seawall import model as models
from seawall.model import (
    AnyHealthCheck,
    AnyHook,
    AnyReplicaStore,
    AnySite,
    AwsSite,
    AzureStore,
    CommandHook,
    DirectorySite,
    DirectoryStore,
    DnsRecord,
    DnsZone,
    FailurePolicy,
    Gate,
    Group,
    GuestIpCheck,
    HttpCheck,
    HttpHook,
    Inventory,
    IpRule,
    KvmSite,
    Network,
    NicMapping,
    ObjectLockSpec,
    PlanVM,
    ProtectedVM,
    RecoveryMode,
    RecoveryPlan,
    ReplicationPolicy,
    Rfc2136Zone,
    S3Store,
    Site,
    StaticIP,
    SubnetTranslation,
    TargetSize,
    TcpCheck,
    VSphereSite,
    format_duration,
    parse_duration,
    parse_secret_ref,
)

REPO = Path(__file__).resolve().parents[2]
converter = pydantic_data_converter.payload_converter


def _vsphere() -> VSphereSite:
    return VSphereSite(
        name="primary",
        host="127.0.0.1",
        port=8989,
        protocol="http",
        datacenter="dc-primary",
        datastore="ds-primary",
        credentials="file:/lab/credentials/primary.json",
        networks=[
            Network(name="prod-web", cidr=IPv4Network("10.1.1.0/24"), dns_servers=[IPv4Address("10.1.3.53")]),
            Network(name="drill", cidr=IPv4Network("192.168.100.0/24"), isolated=True, backing="Drill PG"),
        ],
    )


def _plan() -> RecoveryPlan:
    return RecoveryPlan(
        name="erp-dr",
        description="ERP to DR",
        source_site="primary",
        target_site="dr",
        failure_policy=FailurePolicy.SKIP_VM,
        test_ttl=timedelta(hours=8),
        pre_hooks=[HttpHook(name="notify", url="http://127.0.0.1:9/x", credentials="env:HOOK_TOKEN")],
        gates=[Gate(name="go", before="web", message="approve", timeout=timedelta(hours=1))],
        groups=[
            Group(
                name="db",
                post_hooks=[CommandHook(name="check", command=["/bin/true"], site="dr")],
                vms=[
                    PlanVM(
                        name="db-01",
                        size=TargetSize(cpus=4, memory_mib=16384),
                        nics=[
                            NicMapping(
                                source_network="prod-db",
                                target_network="dr-db",
                                test_network="drill",
                                ip=StaticIP(ip=IPv4Address("10.2.3.10"), prefix=24),
                                test_ip=SubnetTranslation(
                                    from_cidr=IPv4Network("10.1.3.0/24"),
                                    to_cidr=IPv4Network("192.168.100.0/24"),
                                ),
                            )
                        ],
                        dns=[DnsRecord(zone="corp.example.com", name="db.corp.example.com")],
                        health_checks=[TcpCheck(port=5432), GuestIpCheck(), HttpCheck(path="/ok", port=8080)],
                        hostname="db-01.corp.example.com",
                        windows=models.WindowsCustomization(
                            domain="corp.example.com", join_credentials="env:SEAWALL_JOIN"
                        ),
                    )
                ],
            ),
            Group(
                name="web",
                boot_delay=timedelta(seconds=30),
                vms=[PlanVM(name="web-01", depends_on=["db-01"], boot_delay=timedelta(seconds=5))],
            ),
        ],
    )


def _instances() -> list[BaseModel]:
    inventory = Inventory(
        sites=[
            _vsphere(),
            AwsSite(name="aws", region="us-east-1", endpoint_url="http://127.0.0.1:5000"),
            DirectorySite(name="images", path="/srv/images"),
            KvmSite(name="kvm-a", uri="qemu:///system", pool="default", backup_dir="/srv/kvm-backup"),
        ],
        replica_stores=[
            DirectoryStore(name="local", path="/srv/replica"),
            S3Store(name="s3", bucket="seawall-replica", prefix="erp/", endpoint_url="http://127.0.0.1:5000"),
            S3Store(
                name="s3-locked",
                bucket="seawall-locked",
                object_lock=ObjectLockSpec(mode="compliance", period=timedelta(days=8)),
            ),
            AzureStore(
                name="az", container="seawall-replica", account_url="http://127.0.0.1:10000/devstoreaccount1"
            ),
        ],
        policies=[
            ReplicationPolicy(
                name="rpo-30s", interval=timedelta(seconds=30), retention_count=5, key_ref="env:K"
            )
        ],
        protected_vms=[
            ProtectedVM(
                name="db-01",
                source_site="primary",
                policy="rpo-30s",
                replica_store="local",
                target_sites=["dr"],
            )
        ],
        dns_zones=[
            DnsZone(name="corp.example.com", site="aws", hosted_zone_id="Z123ABC"),
            Rfc2136Zone(
                name="dc.example.com",
                server="10.1.3.53",
                port=5353,
                tsig_key_name="seawall-dr",
                credentials="file:/etc/seawall/tsig.key",
            ),
        ],
        plans=[_plan()],
        placements=[models.Placement(source="primary", target="dr", folder="dr/erp", datastore="ds1")],
        consistency_groups=[
            models.ConsistencyGroup(
                name="erp",
                policy="gold",
                vms=["db-01", "app-01"],
                freeze=models.SnapshotHook(command=["/usr/local/bin/freeze"], timeout=timedelta(seconds=20)),
                thaw=models.SnapshotHook(command=["/usr/local/bin/thaw"]),
            )
        ],
    )
    plan = _plan()
    items: list[BaseModel | None] = [
        inventory,
        *inventory.sites,
        *inventory.replica_stores,
        *[s.object_lock for s in inventory.replica_stores if isinstance(s, S3Store)],
        *inventory.policies,
        *inventory.protected_vms,
        *inventory.dns_zones,
        *inventory.consistency_groups,
        inventory.consistency_groups[0].freeze,
        plan,
        *plan.groups,
        *plan.gates,
        *plan.pre_hooks,
        *plan.groups[0].post_hooks,
        *[vm for _, vm in plan.vms()],
        *plan.groups[0].vms[0].nics,
        plan.groups[0].vms[0].nics[0].ip,
        plan.groups[0].vms[0].nics[0].test_ip,
        *plan.groups[0].vms[0].dns,
        *plan.groups[0].vms[0].health_checks,
        plan.groups[0].vms[0].size,
        _vsphere().networks[0],
        *inventory.placements,
        plan.groups[0].vms[0].windows,
    ]
    return [item for item in items if item is not None]


@pytest.mark.parametrize("instance", _instances(), ids=lambda m: type(m).__name__)
def test_round_trip_through_temporal_converter(instance: BaseModel) -> None:
    payloads = converter.to_payloads([instance])
    (back,) = converter.from_payloads(payloads, [type(instance)])
    assert back == instance
    assert type(back) is type(instance)


def test_every_public_model_is_round_tripped() -> None:
    covered = {type(instance) for instance in _instances()}
    public = {
        obj
        for name in models.__all__
        if isinstance(obj := getattr(models, name), type) and issubclass(obj, BaseModel)
    }
    abstract = {Site, models.ReplicaStore, models.Hook, models.HealthCheck}
    assert public - abstract - covered == set()


@pytest.mark.parametrize(
    ("alias", "instance"),
    [
        (AnySite, AwsSite(name="aws", region="eu-west-1")),
        (AnySite, DirectorySite(name="images", path="/srv")),
        (AnyReplicaStore, S3Store(name="s3", bucket="bucket-1")),
        (AnyHook, CommandHook(name="x", command=["true"])),
        (AnyHealthCheck, HttpCheck(url="https://erp.corp.example.com/health")),
        (IpRule, SubnetTranslation(from_cidr=IPv4Network("10.0.0.0/24"), to_cidr=IPv4Network("10.9.0.0/24"))),
    ],
)
def test_union_aliases_rebuild_the_right_kind(alias: Any, instance: BaseModel) -> None:
    payloads = converter.to_payloads([instance])
    (back,) = converter.from_payloads(payloads, [alias])
    assert back == instance and type(back) is type(instance)


def test_enums_and_mode_round_trip() -> None:
    payloads = converter.to_payloads([RecoveryMode.TEST, FailurePolicy.ROLLBACK_TEST])
    assert converter.from_payloads(payloads, [RecoveryMode, FailurePolicy]) == [
        RecoveryMode.TEST,
        FailurePolicy.ROLLBACK_TEST,
    ]
    assert [mode.value for mode in RecoveryMode] == ["test", "planned", "unplanned"]


def test_model_modules_are_import_light() -> None:
    """workflows/ and activities pass models through Temporal's sandbox: every module of the package
    imports pydantic and the standard library only, besides its siblings and the one name pattern."""
    allowed = {
        "__future__",
        "abc",
        "re",
        "collections",
        "dataclasses",
        "datetime",
        "functools",  # cached_property: the inventory's index of VMs by name
        "enum",
        "ipaddress",
        "typing",
        "zoneinfo",  # bandwidth windows by local time (read only when a zone other than UTC is named)
        "pydantic",
        "pydantic_core",
    }
    modules = sorted((REPO / "seawall/model").glob("*.py"))
    assert {path.name for path in modules} >= {"__init__.py", "scalars.py", "inventory.py", "plan.py"}
    for path in modules:
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        ours = {name for name in imported if name.split(".")[0] == "seawall"}
        assert {name.split(".")[0] for name in imported - ours} <= allowed, path.name
        assert all(name.startswith("seawall.model.") or name == "seawall.contract.names" for name in ours), (
            path.name
        )


# --- validators -----------------------------------------------------------------------------------


def _error(model: Any, data: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(model).validate_python(data)
    (detail,) = caught.value.errors()
    return tuple(detail["loc"]), detail["msg"]


@pytest.mark.parametrize("name", ["a", "web-01", "x" * 63, "0abc"])
def test_names_accepted(name: str) -> None:
    assert Gate(name=name, before="db", message="m").name == name


@pytest.mark.parametrize("name", ["", "Web", "web_01", "-web", "web-", "x" * 64, "a.b"])
def test_names_rejected(name: str) -> None:
    loc, msg = _error(Gate, {"name": name, "before": "db", "message": "m"})
    assert loc == ("name",) and "not a valid name" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        (90, timedelta(seconds=90)),
        ("PT15M", timedelta(minutes=15)),
    ],
)
def test_durations(text: Any, expected: timedelta) -> None:
    assert TypeAdapter(models.Duration).validate_python(text) == expected


def test_duration_helpers() -> None:
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("soon") == "soon"
    assert parse_duration("") == ""
    assert format_duration(timedelta(hours=24)) == "24h"
    assert format_duration(timedelta(days=2, minutes=3)) == "2d3m"
    assert format_duration(timedelta(seconds=-5)) == "-5s"


@pytest.mark.parametrize(("interval", "ok"), [("29s", False), ("30s", True), ("24h", True), ("24h1s", False)])
def test_policy_interval_bounds(interval: str, ok: bool) -> None:
    data = {"name": "p", "interval": interval, "retention_hours": 1, "key_ref": "file:k"}
    if ok:
        ReplicationPolicy.model_validate(data)
    else:
        loc, msg = _error(ReplicationPolicy, data)
        assert loc == ("interval",) and "out of range" in msg


def test_policy_rpo_grace_default_and_threshold() -> None:
    fast = ReplicationPolicy(name="p", interval=timedelta(seconds=30), retention_count=1, key_ref="env:K")
    assert fast.rpo_grace == timedelta(seconds=30) and fast.rpo_threshold == timedelta(minutes=1)
    slow = ReplicationPolicy(name="p", interval=timedelta(hours=1), retention_count=1, key_ref="env:K")
    assert slow.rpo_grace == timedelta(minutes=30)
    fixed = ReplicationPolicy(
        name="p", interval=timedelta(minutes=15), retention_count=1, key_ref="env:K", rpo_grace=timedelta(0)
    )
    assert fixed.rpo_threshold == timedelta(minutes=15)


def test_policy_needs_retention_and_a_key() -> None:
    assert "retention" in _error(ReplicationPolicy, {"name": "p", "interval": "1m", "key_ref": "env:K"})[1]
    loc, msg = _error(
        ReplicationPolicy, {"name": "p", "interval": "1m", "retention_count": 1, "key_ref": "none"}
    )
    assert loc == ("key_ref",) and "always encrypted" in msg


@pytest.mark.parametrize(
    "ref", ["none", "env:SEAWALL_KEY", "env:_X1", "file:keys/prod.key", "file:/abs/p.json", "env:K#k2"]
)
def test_secret_refs_accepted(ref: str) -> None:
    assert DirectoryStore(name="d", path="/x", credentials=ref).credentials == ref


@pytest.mark.parametrize(
    "ref",
    [
        "hunter2",
        "P@ssw0rd!",
        "AKIAIOSFODNN7EXAMPLE",
        "env:",
        "env:1BAD",
        "env:A-B",
        "file:",
        "file: x",
        "NONE",
        "",
    ],
)
def test_secret_refs_rejected_without_echo(ref: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DirectoryStore(name="d", path="/x", credentials=ref)
    (detail,) = caught.value.errors()
    assert detail["loc"] == ("credentials",)
    assert "not a secret reference" in detail["msg"]
    if len(ref) > len("file:"):  # shorter ones are words of the message itself
        assert ref not in detail["msg"]


def test_parse_secret_ref() -> None:
    assert parse_secret_ref("env:A#k1") == ("env", "A")
    assert parse_secret_ref("file:x.key#k-2") == ("file", "x.key")
    assert parse_secret_ref("none") == ("none", "")
    with pytest.raises(ValueError):
        parse_secret_ref("secret")


def test_urls_with_credentials_rejected() -> None:
    loc, msg = _error(
        AnySite, {"name": "aws", "kind": "aws", "region": "us-east-1", "endpoint_url": "http://a:b@h"}
    )
    assert loc == ("aws", "endpoint_url") and "must not carry credentials" in msg
    assert "not an http" in _error(HttpHook, {"name": "h", "url": "ftp://x/y"})[1]


def test_unknown_keys_forbidden() -> None:
    loc, msg = _error(Network, {"name": "n", "cidr": "10.0.0.0/24", "vlan": 4})
    assert loc == ("vlan",) and "Extra inputs" in msg


def test_network_gateway_and_cidr() -> None:
    assert Network(name="n", cidr=IPv4Network("10.0.0.0/24")).effective_gateway == IPv4Address("10.0.0.1")
    assert "outside" in _error(Network, {"name": "n", "cidr": "10.0.0.0/24", "gateway": "10.0.1.1"})[1]
    assert _error(Network, {"name": "n", "cidr": "10.0.0.5/24"})[0] == ("cidr",)
    assert _error(Network, {"name": "n", "cidr": "10.0.0.0/24", "isolated": "yes"})[0] == ("isolated",)


def test_strict_ints() -> None:
    assert _error(TcpCheck, {"port": "80"})[0] == ("port",)
    assert _error(TcpCheck, {"port": 0})[0] == ("port",)
    assert _error(TargetSize, {"memory_mib": 1001})[0] == ("memory_mib",)


def test_subnet_translation() -> None:
    rule = SubnetTranslation(from_cidr=IPv4Network("10.1.1.0/24"), to_cidr=IPv4Network("10.2.1.0/24"))
    assert rule.translate(IPv4Address("10.1.1.25")) == IPv4Address("10.2.1.25")
    with pytest.raises(ValueError):
        rule.translate(IPv4Address("10.9.9.9"))
    assert (
        "equal prefix" in _error(SubnetTranslation, {"from_cidr": "10.1.1.0/24", "to_cidr": "10.2.0.0/23"})[1]
    )


def test_ip_rule_discriminator() -> None:
    assert isinstance(TypeAdapter(IpRule).validate_python({"kind": "static", "ip": "10.0.0.5"}), StaticIP)
    loc, _ = _error(IpRule, {"kind": "dhcp"})
    assert loc == ()


def test_dns_records() -> None:
    record = DnsRecord(zone="Corp.Example.com.", name="ERP.corp.example.com")
    assert (record.zone, record.name, record.ttl) == ("corp.example.com", "erp.corp.example.com", 60)
    assert "outside zone" in _error(DnsRecord, {"zone": "corp.example.com", "name": "erp.example.org"})[1]
    assert (
        "not a valid DNS name"
        in _error(DnsRecord, {"zone": "corp.example.com", "name": "a..corp.example.com"})[1]
    )
    assert "CNAME" in _error(DnsRecord, {"zone": "c.com", "name": "x.c.com", "type": "CNAME"})[1]
    assert "IPv4" in _error(DnsRecord, {"zone": "c.com", "name": "x.c.com", "value": "web.c.com"})[1]
    cname = DnsRecord(zone="c.com", name="x.c.com", type="CNAME", value="Web.C.com")
    assert cname.value == "web.c.com"


def test_azure_store_needs_one_way_in() -> None:
    assert "exactly one" in _error(AzureStore, {"name": "a", "container": "seawall-replica"})[1]
    store = AzureStore(name="a", container="seawall-replica", connection_string="env:AZURE_CONN")
    assert store.location.endswith("seawall-replica")


def test_protected_vm() -> None:
    base = {"name": "db-01", "source_site": "primary", "policy": "p", "replica_store": "s"}
    assert _error(ProtectedVM, {**base, "target_sites": []})[0] == ("target_sites",)
    assert "twice" in _error(ProtectedVM, {**base, "target_sites": ["dr", "dr"]})[1]
    assert _error(ProtectedVM, {**base, "target_sites": ["dr"], "moref": "42"})[0] == ("moref",)


def test_hooks_and_gates_bounds() -> None:
    assert "out of range" in _error(CommandHook, {"name": "h", "command": ["x"], "timeout": "5h"})[1]
    assert _error(CommandHook, {"name": "h", "command": []})[0] == ("command",)
    assert _error(Gate, {"name": "g", "before": "db", "message": "  "})[0] == ("message",)


def test_base_kinds_cannot_be_built() -> None:
    with pytest.raises(TypeError):
        Site(name="x", kind="vsphere")


def test_site_helpers() -> None:
    site = _vsphere()
    assert site.endpoint == "http://127.0.0.1:8989/sdk"
    assert site.network("drill").backing_name == "Drill PG"
    assert site.network("prod-web").backing_name == "prod-web"
    with pytest.raises(KeyError):
        site.network("nope")
    assert AwsSite(name="aws", region="us-east-1").endpoint == "aws us-east-1"
    assert "us-east-1" in AwsSite(name="aws", region="us-east-1", endpoint_url="http://h:5000").endpoint
    assert _error(AnySite, {"name": "a", "kind": "aws", "region": "mars"})[0] == ("aws", "region")


def test_plan_helpers() -> None:
    plan = _plan()
    assert [vm.name for _, vm in plan.vms()] == ["db-01", "web-01"]
    assert plan.vm("web-01").depends_on == ["db-01"]
    with pytest.raises(KeyError):
        plan.vm("nope")
    inventory = Inventory(plans=[plan])
    assert inventory.plan("erp-dr") is plan
    with pytest.raises(KeyError):
        inventory.site("nope")


def test_http_check_url_or_parts() -> None:
    assert HttpCheck(url="http://erp.corp.example.com/health").url is not None
    assert HttpCheck(port=8080, path="/healthz").path == "/healthz"
    assert "not both" in _error(HttpCheck, {"url": "http://h/x", "port": 80})[1]
    assert _error(HttpCheck, {"path": "healthz"})[0] == ("path",)


def test_dns_zone_provider_defaults_to_route53_and_rfc2136_needs_its_key() -> None:
    inventory = Inventory.model_validate(
        {
            "dns_zones": [
                {"name": "corp.example.com", "site": "aws"},
                {
                    "name": "DC.example.com.",
                    "provider": "rfc2136",
                    "server": "127.0.0.1",
                    "tsig_key_name": "seawall-lab.",
                    "credentials": "env:TSIG",
                },
            ]
        }
    )
    route53, rfc2136 = inventory.dns_zones
    assert isinstance(route53, DnsZone) and route53.provider == "route53"
    assert isinstance(rfc2136, Rfc2136Zone)
    assert (rfc2136.name, rfc2136.port, rfc2136.tsig_key_name) == ("dc.example.com", 53, "seawall-lab")
    assert inventory.dns_zone("dc.example.com") is rfc2136
    with pytest.raises(ValidationError, match="unknown DNS provider"):
        Inventory.model_validate({"dns_zones": [{"name": "a.example.com", "provider": "bind"}]})
    with pytest.raises(ValidationError, match="secret reference"):
        Rfc2136Zone(name="a.example.com", server="h", tsig_key_name="k", credentials="c2VjcmV0")


def test_groups_of_names_each_group_a_vm_belongs_to_once() -> None:
    policy = models.ReplicationPolicy(
        name="p30", interval=timedelta(seconds=30), key_ref="env:K", retention_count=2
    )
    inventory = models.Inventory(
        policies=[policy],
        consistency_groups=[
            models.ConsistencyGroup(name="erp", policy="p30", vms=["db-01", "app-01"]),
            models.ConsistencyGroup(name="crm", policy="p30", vms=["crm-01"]),
        ],
    )
    assert inventory.groups_of(["app-01", "db-01", "web-01"]) == ["erp"]
    assert inventory.groups_of(["crm-01", "db-01"]) == ["crm", "erp"]
    assert inventory.groups_of(["web-01"]) == []
