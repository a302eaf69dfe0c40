"""IP plan: which network and address each NIC gets at the target, in failover and in test mode."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from seawall.model import AwsSite, Network, NicMapping, PlanVM, RecoveryMode, VSphereSite
from seawall.model.ipplan import IpPlanError, NicPlan, plan_nic, plan_vm_nics


def _site(**kw: Any) -> VSphereSite:
    return VSphereSite(
        name="dr",
        host="127.0.0.1",
        datacenter="dc-dr",
        datastore="ds-dr",
        networks=[
            Network(
                name="dr-db",
                cidr=IPv4Network("10.2.3.0/24"),
                gateway=IPv4Address("10.2.3.1"),
                dns_servers=[IPv4Address("10.2.3.53")],
            ),
            Network(name="dr-web", cidr=IPv4Network("10.2.1.0/24"), dns_servers=[IPv4Address("10.2.3.53")]),
            Network(name="drill", cidr=IPv4Network("192.168.100.0/24"), isolated=True),
            Network(name="lan", cidr=IPv4Network("10.9.0.0/16"), backing="VM Network"),
        ],
        **kw,
    )


def _nic(**kw: Any) -> NicMapping:
    return NicMapping.model_validate({"source_network": "prod-db", "target_network": "dr-db", **kw})


def test_static_ip_takes_prefix_gateway_and_dns_from_the_network() -> None:
    plan = plan_nic(_nic(ip={"kind": "static", "ip": "10.2.3.10"}), _site(), "planned")
    assert plan == NicPlan(
        network="dr-db",
        backing="dr-db",
        connected=True,
        ip=IPv4Address("10.2.3.10"),
        prefix=24,
        gateway=IPv4Address("10.2.3.1"),
        dns_servers=(IPv4Address("10.2.3.53"),),
    )
    assert plan.interface == "10.2.3.10/24"
    assert plan.netmask == IPv4Address("255.255.255.0")


def test_static_ip_with_its_own_prefix_and_gateway() -> None:
    rule = {"kind": "static", "ip": "10.2.3.130", "prefix": 25, "gateway": "10.2.3.129"}
    plan = plan_nic(_nic(ip=rule), _site(), RecoveryMode.UNPLANNED)
    assert (plan.prefix, plan.gateway, plan.netmask) == (
        25,
        IPv4Address("10.2.3.129"),
        IPv4Address("255.255.255.128"),
    )


def test_subnet_translation_keeps_the_host_part() -> None:
    mapping = NicMapping.model_validate(
        {
            "source_network": "prod-web",
            "target_network": "dr-web",
            "ip": {"kind": "translate", "from_cidr": "10.1.1.0/24", "to_cidr": "10.2.1.0/24"},
        }
    )
    plan = plan_nic(mapping, _site(), "unplanned", "10.1.1.25")
    assert (plan.ip, plan.prefix, plan.gateway) == (IPv4Address("10.2.1.25"), 24, IPv4Address("10.2.1.1"))
    with pytest.raises(IpPlanError, match="needs the source IP"):
        plan_nic(mapping, _site(), "unplanned")
    with pytest.raises(IpPlanError, match=r"10\.1\.2\.5 is not in 10\.1\.1\.0/24"):
        plan_nic(mapping, _site(), "unplanned", IPv4Address("10.1.2.5"))


def test_test_mode_joins_the_isolated_network_with_failover_addressing() -> None:
    mapping = _nic(test_network="drill", ip={"kind": "static", "ip": "10.2.3.10"})
    plan = plan_nic(mapping, _site(), "test")
    # Production-identical addressing inside the bubble: the guest sees what it will see in failover.
    assert (plan.network, plan.connected, plan.ip, plan.gateway) == (
        "drill",
        True,
        IPv4Address("10.2.3.10"),
        IPv4Address("10.2.3.1"),
    )
    assert plan.dns_servers == (IPv4Address("10.2.3.53"),)


def test_test_mode_uses_test_ip_in_the_test_network() -> None:
    mapping = _nic(
        test_network="drill",
        ip={"kind": "static", "ip": "10.2.3.10"},
        test_ip={"kind": "static", "ip": "192.168.100.10"},
    )
    plan = plan_nic(mapping, _site(), "test")
    assert (plan.network, plan.ip, plan.prefix, plan.gateway, plan.dns_servers) == (
        "drill",
        IPv4Address("192.168.100.10"),
        24,
        IPv4Address("192.168.100.1"),
        (),
    )
    # Failover ignores the test settings.
    assert plan_nic(mapping, _site(), "planned").ip == IPv4Address("10.2.3.10")


def test_test_mode_without_a_test_network_leaves_the_nic_disconnected() -> None:
    plan = plan_nic(_nic(ip={"kind": "static", "ip": "10.2.3.10"}), _site(), "test")
    assert (plan.network, plan.connected) == ("dr-db", False)


def test_a_test_network_that_is_not_isolated_is_refused() -> None:
    with pytest.raises(IpPlanError, match="not isolated"):
        plan_nic(_nic(test_network="dr-web"), _site(), "test")


def test_dhcp_maps_only_the_network_and_backing_names_win() -> None:
    plan = plan_nic(NicMapping(source_network="prod-web", target_network="lan"), _site(), "planned")
    assert (plan.network, plan.backing, plan.ip, plan.prefix, plan.interface, plan.netmask) == (
        "lan",
        "VM Network",
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "static", "ip": "10.2.4.10"}, r"outside subnet 10\.2\.3\.0/24"),
        ({"kind": "static", "ip": "10.2.3.0"}, "network or broadcast"),
        ({"kind": "static", "ip": "10.2.3.255"}, "network or broadcast"),
        ({"kind": "static", "ip": "10.2.3.1"}, "also the gateway"),
        ({"kind": "static", "ip": "10.2.3.130", "prefix": 28, "gateway": "10.2.3.1"}, "gateway .* outside"),
    ],
)
def test_addresses_that_cannot_work_are_refused(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(IpPlanError, match=message):
        plan_nic(_nic(ip=rule), _site(), "planned")


def test_unknown_networks_are_named() -> None:
    with pytest.raises(IpPlanError, match="no network 'nowhere'"):
        plan_nic(NicMapping(source_network="a", target_network="nowhere"), _site(), "planned")


def test_every_nic_of_a_vm_with_its_source_address() -> None:
    vm = PlanVM.model_validate(
        {
            "name": "web-01",
            "nics": [
                {
                    "source_network": "prod-web",
                    "target_network": "dr-web",
                    "test_network": "drill",
                    "ip": {"kind": "translate", "from_cidr": "10.1.1.0/24", "to_cidr": "10.2.1.0/24"},
                },
                {"source_network": "prod-db", "target_network": "dr-db"},
            ],
        }
    )
    plans = plan_vm_nics(vm, _site(), "test", ["10.1.1.21"])
    assert [(p.network, p.ip) for p in plans] == [("drill", IPv4Address("10.2.1.21")), ("dr-db", None)]
    assert [p.connected for p in plans] == [True, False]
    with pytest.raises(IpPlanError, match="VM 'web-01' NIC 0"):
        plan_vm_nics(vm, _site(), "test")


def test_aws_subnets_by_name() -> None:
    site = AwsSite(
        name="aws",
        region="us-east-1",
        networks=[Network(name="aws-app", cidr=IPv4Network("10.3.2.0/24"), backing="aws-app-subnet")],
    )
    plan = plan_nic(
        NicMapping.model_validate(
            {
                "source_network": "prod-app",
                "target_network": "aws-app",
                "ip": {"kind": "static", "ip": "10.3.2.11"},
            }
        ),
        site,
        "unplanned",
    )
    assert (plan.backing, str(plan.ip), str(plan.gateway)) == ("aws-app-subnet", "10.3.2.11", "10.3.2.1")


def test_test_mode_joins_the_drills_own_network_when_there_is_one() -> None:
    nic = _nic(ip={"kind": "static", "ip": "10.2.3.10"})
    plan = plan_nic(nic, _site(), "test", run_network="seawall-drill-20261201t1-ab")
    # Connected, with the production-identical address: the bubble is the run's alone.
    assert (plan.network, plan.backing, plan.connected, plan.ip) == (
        "seawall-drill-20261201t1-ab",
        "seawall-drill-20261201t1-ab",
        True,
        IPv4Address("10.2.3.10"),
    )
    # A fixed test network wins; a failover never uses the drill's network.
    assert plan_nic(_nic(test_network="drill"), _site(), "test", run_network="x-run").network == "drill"
    assert plan_nic(nic, _site(), "planned", run_network="x-run").network == "dr-db"
