"""A NIC mapping against the sites' networks: the networks must exist, static addresses must be
usable and unique in their subnet, translated subnets must nest, and a drill must stay isolated.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from seawall.model import AwsSite, Network, NicMapping, StaticIP, SubnetTranslation
from seawall.plans.errors import Loc, Problem, did_you_mean


def _site_network(site: Any, name: str, at: Loc, problems: list[Problem]) -> Network | None:
    if site is None:
        return None  # the unknown site is reported once, on the plan
    for network in site.networks:
        if network.name == name:
            return network
    known = [network.name for network in site.networks]
    problems.append(
        Problem(at, f"network '{name}' does not exist at site '{site.name}'{did_you_mean(name, known)}")
    )
    return None


def _check_address(
    ip: StaticIP, network: Network, on_aws: bool, at: Loc, problems: list[Problem]
) -> IPv4Address | None:
    """Problems with one static address in its network; returns the address when it is usable."""
    address, cidr = ip.ip, network.cidr
    where = f"subnet {cidr} of network '{network.name}'"
    bad = None
    if address not in cidr:
        bad = f"{address} is outside {where}"
    elif cidr.prefixlen <= 30 and address == cidr.network_address:
        bad = f"{address} is the network address of {where}"
    elif cidr.prefixlen <= 30 and address == cidr.broadcast_address:
        bad = f"{address} is the broadcast address of {where}"
    elif address == network.effective_gateway:
        bad = f"{address} is the gateway of network '{network.name}'"
    elif on_aws and int(address) - int(cidr.network_address) <= 3:
        bad = f"{address} is reserved by AWS in {where} (the first four addresses and the last are)"
    if bad:
        problems.append(Problem((*at, "ip"), bad))
    if ip.prefix is not None and ip.prefix != cidr.prefixlen:
        problems.append(Problem((*at, "prefix"), f"/{ip.prefix} does not match {where}"))
    if ip.gateway is not None and ip.gateway not in cidr:
        problems.append(Problem((*at, "gateway"), f"gateway {ip.gateway} is outside {where}"))
    return None if bad else address


def _check_rule(
    rule: StaticIP | SubnetTranslation,
    source_net: Network | None,
    net: Network,
    on_aws: bool,
    at: Loc,
    vm_name: str,
    used: dict[IPv4Address, str],
    problems: list[Problem],
) -> None:
    """One NIC's addressing in one network: static addresses must fit and be unique; subnets nest."""
    if isinstance(rule, StaticIP):
        address = _check_address(rule, net, on_aws, at, problems)
        if address is not None:
            if address in used:
                problems.append(Problem((*at, "ip"), f"{address} is already used by VM '{used[address]}'"))
            used.setdefault(address, vm_name)
        return
    if source_net is not None and not rule.from_cidr.subnet_of(source_net.cidr):
        problems.append(
            Problem(
                (*at, "from_cidr"),
                f"{rule.from_cidr} is outside subnet {source_net.cidr} of network '{source_net.name}'",
            )
        )
    if not rule.to_cidr.subnet_of(net.cidr):
        problems.append(
            Problem((*at, "to_cidr"), f"{rule.to_cidr} is outside subnet {net.cidr} of network '{net.name}'")
        )


def check_nic(
    nic: NicMapping,
    vm_name: str,
    source: Any,
    target: Any,
    at: Loc,
    used: dict[str, dict[IPv4Address, str]],
    problems: list[Problem],
) -> None:
    """One NIC of ``vm_name`` at ``at``: its problems go to ``problems``; ``used`` collects the
    addresses taken so far, per rule (``ip``, ``test_ip``), across the whole plan. An unknown
    ``source`` or ``target`` site (None) is reported once on the plan, not per NIC."""
    on_aws = isinstance(target, AwsSite)
    if nic.security_groups and target is not None and not on_aws:
        problems.append(
            Problem(
                (*at, "security_groups"), f"security groups apply to AWS targets; '{target.name}' is not one"
            )
        )
    if nic.model is not None and target is not None and (nic.model == "ena") != on_aws:
        where = "an AWS target (ENA)" if on_aws else f"site '{target.name}' ({target.kind})"
        problems.append(Problem((*at, "model"), f"NIC model '{nic.model}' does not exist at {where}"))
    source_net = _site_network(source, nic.source_network, (*at, "source_network"), problems)
    target_net = _site_network(target, nic.target_network, (*at, "target_network"), problems)
    if target_net is not None and nic.ip is not None:
        _check_rule(nic.ip, source_net, target_net, on_aws, (*at, "ip"), vm_name, used["ip"], problems)
    if nic.test_network is None:
        if nic.test_ip is not None:
            problems.append(Problem((*at, "test_ip"), "test_ip needs a test_network"))
        return
    test_net = _site_network(target, nic.test_network, (*at, "test_network"), problems)
    if test_net is None:
        return
    if not test_net.isolated:
        problems.append(
            Problem(
                (*at, "test_network"),
                f"test network '{test_net.name}' is not isolated: a drill there could reach production "
                f"(mark it isolated: true, or pick an isolated network)",
            )
        )
    if nic.test_ip is not None:
        _check_rule(
            nic.test_ip, source_net, test_net, on_aws, (*at, "test_ip"), vm_name, used["test_ip"], problems
        )
    elif on_aws and nic.ip is not None and not _fits(nic.ip, test_net):
        # vSphere drills may reuse production addresses in an isolated bubble; an EC2 NIC's
        # address must lie inside its subnet, so a drill on AWS needs its own addressing.
        problems.append(
            Problem(
                (*at, "test_network"),
                f"on AWS a test NIC needs an address inside subnet {test_net.cidr} of '{test_net.name}': "
                f"give test_ip",
            )
        )


def _fits(rule: StaticIP | SubnetTranslation, net: Network) -> bool:
    if isinstance(rule, StaticIP):
        return rule.ip in net.cidr
    return rule.to_cidr.subnet_of(net.cidr)
