"""Where each NIC of a recovered VM lands and which address it gets: pure computation, no I/O.

The rules (``NicMapping``):

- failover (planned / unplanned): the NIC joins ``target_network`` and gets ``ip``;
- test: the NIC joins ``test_network`` (isolated) and gets ``test_ip``, or, without one, the
  *failover* addressing of ``target_network`` — an isolated bubble may run the application with
  production-identical addresses (prefix, gateway and DNS servers then come from the failover
  network too, because that is the addressing the guest must see);
- test without a ``test_network``: the NIC is planned on the target network but *disconnected*, so
  a drill can never reach production through it;
- no rule (``ip`` None): the guest keeps what it does (DHCP), only the network is mapped.

A static rule's address must lie inside the network it is computed for, must not be that subnet's
network or broadcast address, and must differ from the gateway; subnet translation keeps the host
part and needs the source address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from seawall.model.addressing import NicMapping, StaticIP, SubnetTranslation
from seawall.model.plan import PlanVM, RecoveryMode
from seawall.model.sites import Network, Site

__all__ = ["IpPlanError", "NicPlan", "plan_nic", "plan_vm_nics"]


class IpPlanError(ValueError):
    """A NIC's addressing cannot be computed (missing source IP, address outside its network, ...)."""


@dataclass(frozen=True)
class NicPlan:
    """One NIC at the target: the network to attach to and, unless DHCP, its static addressing."""

    network: str  # the plan's network name at the target site
    backing: str  # the name at the site: vSphere port group, AWS subnet Name tag
    connected: bool
    ip: IPv4Address | None  # None: DHCP / whatever the guest does
    prefix: int | None
    gateway: IPv4Address | None
    dns_servers: tuple[IPv4Address, ...]
    model: str | None = None  # the plan's NIC model; None: the source's
    security_groups: tuple[str, ...] = ()  # AWS: names or ids; empty: the VPC's default group
    keep_mac: bool = True  # the source's MAC (failover default), or a new one (drill default)

    @property
    def netmask(self) -> IPv4Address | None:
        if self.prefix is None:
            return None
        return IPv4Network(f"0.0.0.0/{self.prefix}").netmask

    @property
    def interface(self) -> str | None:
        """``10.2.3.10/24``, or None for DHCP."""
        return None if self.ip is None else f"{self.ip}/{self.prefix}"


def _address(
    rule: StaticIP | SubnetTranslation, network: Network, source_ip: IPv4Address | None, what: str
) -> tuple[IPv4Address, int, IPv4Address]:
    if isinstance(rule, StaticIP):
        ip = rule.ip
        prefix = rule.prefix if rule.prefix is not None else network.cidr.prefixlen
        gateway = rule.gateway if rule.gateway is not None else network.effective_gateway
    else:
        if source_ip is None:
            raise IpPlanError(
                f"{what}: subnet translation {rule.from_cidr} -> {rule.to_cidr} needs the source IP"
            )
        try:
            ip = rule.translate(source_ip)
        except ValueError as exc:
            raise IpPlanError(f"{what}: {exc}") from None
        prefix = network.cidr.prefixlen
        gateway = network.effective_gateway
    if ip not in network.cidr:
        raise IpPlanError(f"{what}: {ip} is outside subnet {network.cidr} of network {network.name!r}")
    subnet = IPv4Network(f"{ip}/{prefix}", strict=False)
    if prefix < 31 and ip in (subnet.network_address, subnet.broadcast_address):
        raise IpPlanError(f"{what}: {ip} is the network or broadcast address of {subnet}")
    if gateway not in subnet:
        raise IpPlanError(f"{what}: gateway {gateway} is outside {subnet}")
    if gateway == ip:
        raise IpPlanError(f"{what}: {ip} is also the gateway")
    return ip, prefix, gateway


def plan_nic(
    mapping: NicMapping,
    site: Site,
    mode: RecoveryMode | str,
    source_ip: IPv4Address | str | None = None,
    *,
    what: str = "NIC",
    run_network: str | None = None,
) -> NicPlan:
    """The target network and address of one NIC in ``mode`` at ``site``; in a drill, a NIC without a
    ``test_network`` joins ``run_network`` (the drill's own isolated network) when given, with the
    failover addressing, else stays on its target network disconnected."""
    mode = RecoveryMode(mode)
    src = IPv4Address(source_ip) if source_ip is not None else None
    try:
        target = site.network(mapping.target_network)
        test = site.network(mapping.test_network) if mapping.test_network is not None else None
    except KeyError as exc:
        raise IpPlanError(f"{what}: {exc.args[0]}") from None
    connected = True
    keep_mac = mapping.mac == "keep" if mapping.mac is not None else mode is not RecoveryMode.TEST
    rule = mapping.ip
    addressing = target  # the network whose prefix/gateway/DNS the address is computed against
    attach = target
    if mode is RecoveryMode.TEST:
        if test is None and run_network is not None:
            attach = Network(name=run_network, cidr=target.cidr, isolated=True)
        elif test is None:
            connected = False
        else:
            if not test.isolated:
                raise IpPlanError(f"{what}: test network {test.name!r} is not isolated")
            attach = test
            if mapping.test_ip is not None:
                rule = mapping.test_ip
                addressing = test
    model, groups = mapping.model, tuple(mapping.security_groups)
    if rule is None:
        return NicPlan(
            attach.name, attach.backing_name, connected, None, None, None, (), model, groups, keep_mac
        )
    ip, prefix, gateway = _address(rule, addressing, src, what)
    return NicPlan(
        network=attach.name,
        backing=attach.backing_name,
        connected=connected,
        ip=ip,
        prefix=prefix,
        gateway=gateway,
        dns_servers=tuple(addressing.dns_servers),
        model=model,
        security_groups=groups,
        keep_mac=keep_mac,
    )


def plan_vm_nics(
    vm: PlanVM,
    site: Site,
    mode: RecoveryMode | str,
    source_ips: Sequence[IPv4Address | str | None] = (),
    *,
    run_network: str | None = None,
) -> list[NicPlan]:
    """Every NIC of ``vm``, in order; ``source_ips[i]`` is NIC i's address at the source, if known."""
    plans = []
    for index, mapping in enumerate(vm.nics):
        src = source_ips[index] if index < len(source_ips) else None
        plans.append(
            plan_nic(mapping, site, mode, src, what=f"VM {vm.name!r} NIC {index}", run_network=run_network)
        )
    return plans
