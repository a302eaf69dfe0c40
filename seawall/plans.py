"""Plan and inventory files as code: load YAML, validate it, and report every problem at its file:line.

The file format (see ``examples/``):

- Every file starts with a header saying what it is: ``kind: Inventory`` or ``kind: RecoveryPlan``
  (and optionally ``version: 1``). Files are recognised by that header, never by their name.
- An inventory holds ``sites``, ``replica_stores``, ``policies``, ``protected_vms``, ``dns_zones``
  and, optionally, ``plans`` written inline.
- A plan file holds one recovery plan, and names its inventory with ``inventory: <path>``, relative
  to the plan file. ``check_files(..., inventory=PATH)`` (``seawall plan check --inventory``)
  overrides that; when neither is given and exactly one inventory is among the files checked, that
  one is used.
- Relative paths in a file (``file:`` secret references, directory sites and stores) are relative to
  that file's directory. The loaders return models with those paths made absolute, so a worker can
  resolve them without knowing where the file was.

Validation runs in two passes: the schema (pydantic, unknown keys rejected with a suggestion), then
references and semantics (names that must exist, addresses that must fit their networks, dependency
cycles, ...). Every problem becomes a ``PlanError`` located at a 1-based line of the file, e.g.
``plans/erp.yaml:14: groups[1].vms[0].nics[0].ip.ip: 10.9.0.5 is outside subnet 10.2.2.0/24 of
network 'dr-app'``.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, Tag, ValidationError

from seawall.models import (
    AwsSite,
    DirectorySite,
    DirectoryStore,
    Hook,
    HttpHook,
    Inventory,
    Network,
    NicMapping,
    PlanVM,
    RecoveryPlan,
    StaticIP,
    SubnetTranslation,
)

__all__ = [
    "CheckReport",
    "FileSummary",
    "InventoryFile",
    "PlanError",
    "PlanFile",
    "PlanValidationError",
    "Problem",
    "check",
    "check_files",
    "check_inventory",
    "check_plan",
    "load_inventory",
    "load_plan",
]

Loc = tuple[str | int, ...]


# --- file-level models ----------------------------------------------------------------------------


class InventoryFile(Inventory):
    """An inventory file: the inventory plus its header."""

    kind: Literal["Inventory"] = Field(description="this file is an inventory")
    version: Literal[1] = 1


class PlanFile(RecoveryPlan):
    """A plan file: one recovery plan, its header, and where its inventory is."""

    kind: Literal["RecoveryPlan"] = Field(description="this file is a recovery plan")
    version: Literal[1] = 1
    inventory: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="the inventory file, relative to this file"
    )


_FILE_KINDS: dict[str, type[BaseModel]] = {"Inventory": InventoryFile, "RecoveryPlan": PlanFile}


# --- errors ---------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class PlanError:
    """One problem in a file, at a 1-based line; ``field`` is a dotted/indexed path or empty."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:"
        return f"{where} {self.field}: {self.message}" if self.field else f"{where} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class PlanValidationError(Exception):
    """A plan or inventory is invalid; ``errors`` says where and why."""

    def __init__(self, errors: Sequence[PlanError]) -> None:
        self.errors = sorted(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


@dataclass(frozen=True)
class Problem:
    """A semantic problem in a model, not yet tied to a file: ``loc`` is its path in the model."""

    loc: Loc
    message: str

    @property
    def field(self) -> str:
        return format_loc(self.loc)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.loc else self.message


def format_loc(loc: Iterable[str | int]) -> str:
    """``('groups', 1, 'vms', 0, 'name')`` -> ``groups[1].vms[0].name``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""


# --- YAML with line numbers -----------------------------------------------------------------------


@dataclass
class _Document:
    path: str  # as the user spelled it, for messages
    real: Path
    data: dict[str, Any]
    root: yaml.MappingNode

    def line(self, loc: Loc) -> int:
        """The line of the deepest node ``loc`` reaches: a key's line, or its enclosing mapping's."""
        node: yaml.Node = self.root
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == part:
                        line, node = key.start_mark.line + 1, value
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, loc: Loc, message: str) -> PlanError:
        return PlanError(self.path, self.line(loc), format_loc(loc), message)


def _duplicate_keys(node: yaml.Node, loc: Loc, seen: set[int]) -> list[tuple[int, Loc, str]]:
    """PyYAML keeps the last of two equal keys silently; a plan must not hide one half of itself."""
    if id(node) in seen:
        return []
    seen.add(id(node))
    found: list[tuple[int, Loc, str]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if key.value in first:
                found.append((line, (*loc, key.value), f"duplicate key (first at line {first[key.value]})"))
            else:
                first[key.value] = line
            found.extend(_duplicate_keys(value, (*loc, key.value), seen))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found.extend(_duplicate_keys(item, (*loc, index), seen))
    return found


_MAX_EXPANDED_NODES = 200_000


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """How many nodes the document has once aliases are expanded (validation walks every copy).

    A few nested aliases can expand to billions of nodes ("billion laughs"); a recursive alias never
    ends. Both are reported instead of hanging the checker.
    """
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _AliasError("a recursive alias (an anchor used inside itself)", node.start_mark.line + 1)
    active.add(key)
    size = 1
    if isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo, active) + _expanded_size(v, memo, active) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(item, memo, active) for item in node.value)
    active.discard(key)
    if size > _MAX_EXPANDED_NODES:
        raise _AliasError(
            f"aliases expand to more than {_MAX_EXPANDED_NODES} nodes", node.start_mark.line + 1
        )
    memo[key] = size
    return size


class _AliasError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _read(path: str | Path) -> tuple[_Document | None, list[PlanError]]:
    shown = str(path)
    real = Path(path)
    try:
        text = real.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [PlanError(shown, 1, "", "file not found")]
    except IsADirectoryError:
        return None, [PlanError(shown, 1, "", "is a directory, not a file")]
    except UnicodeDecodeError as exc:
        return None, [PlanError(shown, 1, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    except OSError as exc:
        return None, [PlanError(shown, 1, "", f"cannot read: {exc.strerror or exc}")]

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, [PlanError(shown, 1, "", "file is empty")]
        try:
            _expanded_size(root, {}, set())
        except _AliasError as exc:
            return None, [PlanError(shown, exc.line, "", f"invalid YAML: {exc}")]
        duplicates = _duplicate_keys(root, (), set())
        if duplicates:
            return None, [PlanError(shown, line, format_loc(loc), msg) for line, loc, msg in duplicates]
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = f"invalid YAML: {exc.problem or 'cannot parse'}"
        if exc.context:
            started = f" at line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
            message += f" ({exc.context}{started})"
        return None, [PlanError(shown, line, "", message)]
    except yaml.YAMLError as exc:
        return None, [PlanError(shown, 1, "", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()

    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        return None, [
            PlanError(shown, root.start_mark.line + 1, "", "expected a mapping starting with 'kind: ...'")
        ]
    return _Document(shown, real, data, root), []


# --- schema errors --------------------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the type that matters for a location."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [arg for arg in get_args(tp) if arg is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _explicit_tags(member: Any) -> dict[str, Any]:
    """``Annotated[Model, Tag("x")]`` members of a union with a callable discriminator (DNS zones)."""
    if get_origin(member) is not Annotated:
        return {}
    model, *metadata = get_args(member)
    return {meta.tag: model for meta in metadata if isinstance(meta, Tag)}


def _walk(model: type[BaseModel], loc: Loc) -> tuple[Loc, type[BaseModel] | None]:
    """Translate a pydantic error location into a file location.

    Pydantic puts the tag of a discriminated union into the location (``sites.0.vsphere.host``);
    the file has no such level. Walking the model types tells tags from keys. Also returns the model
    that holds the last key, for "did you mean" suggestions.
    """
    tp: Any = model
    clean: list[str | int] = []
    holder: type[BaseModel] | None = None
    for part in loc:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            by_tag = {}
            for member in get_args(tp):
                by_tag.update(_explicit_tags(member))
                member = _unwrap(member)
                if (
                    isinstance(member, type)
                    and issubclass(member, BaseModel)
                    and "kind" in member.model_fields
                ):
                    for tag in get_args(member.model_fields["kind"].annotation):
                        by_tag[tag] = member
            if part in by_tag:
                tp = by_tag[part]
                continue
            clean.append(part)
            tp = None
        elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
            clean.append(part)
            tp = get_args(tp)[0] if get_args(tp) else None
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            clean.append(part)
            holder = tp
            info = tp.model_fields.get(part)
            tp = info.annotation if info is not None else None
        else:
            clean.append(part)
            holder = None
            tp = None
    return tuple(clean), holder


_SECRET_FIELDS = {"credentials", "key_ref", "connection_string"}
_QUOTED = re.compile(r"'([^']*)'")


def _schema_errors(doc: _Document, model: type[BaseModel], exc: ValidationError) -> list[PlanError]:
    errors = []
    for detail in exc.errors(include_url=False):
        loc, holder = _walk(model, tuple(detail["loc"]))
        kind = detail["type"]
        ctx = detail.get("ctx") or {}
        given = detail.get("input")
        message = str(detail["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            key = str(loc[-1]) if loc else "?"
            fields = list(holder.model_fields) if holder is not None else []
            message = f"unknown key '{key}'{_did_you_mean(key, fields)}"
        elif kind == "missing":
            message = "required key is missing"
        elif kind in ("time_delta_parsing", "time_delta_type"):
            message = "not a duration: write e.g. 30s, 5m, 1h30m, 2d, or a number of seconds"
            if isinstance(given, str | int | float):
                message += f" (got {given!r})"
        elif kind == "seawall_dns_provider":
            loc = (*loc, "provider")
            got = given.get("provider") if isinstance(given, dict) else None
            message += f" (got {got!r})"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "kind")
            expected = _QUOTED.findall(str(ctx.get("expected_tags", "")))
            listed = ", ".join(f"'{tag}'" for tag in expected)
            if kind == "union_tag_not_found":
                message = f"'kind' is missing: one of {listed}"
            else:
                tag = str(ctx.get("tag", ""))
                message = f"unknown kind '{tag}': expected one of {listed}{_did_you_mean(tag, expected)}"
        elif kind in ("literal_error", "enum") and isinstance(given, str):
            expected = _QUOTED.findall(str(ctx.get("expected", "")))
            message = f"{message} (got '{given}'){_did_you_mean(given, expected)}"
        elif (
            not kind.startswith("seawall_")
            and isinstance(given, str | int | float | bool)
            and not _SECRET_FIELDS.intersection(str(part) for part in loc)
        ):
            # The value helps find the typo; secret fields never echo it (it may be the secret).
            message = f"{message} (got {given!r})"
        errors.append(doc.error(loc, message))
    return errors


# --- semantic checks ------------------------------------------------------------------------------


def _duplicates(names: Sequence[str], prefix: Loc, what: str) -> list[Problem]:
    first: dict[str, int] = {}
    problems = []
    for index, name in enumerate(names):
        if name in first:
            where = format_loc((*prefix, first[name]))
            problems.append(
                Problem((*prefix, index, "name"), f"{what} '{name}' is already defined ({where})")
            )
        else:
            first[name] = index
    return problems


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    return f"unknown {what} '{name}'{_did_you_mean(name, known)}"


def check_inventory(inventory: Inventory) -> list[Problem]:
    """References and uniqueness inside an inventory (its inline plans included)."""
    problems: list[Problem] = []
    problems += _duplicates([s.name for s in inventory.sites], ("sites",), "site")
    problems += _duplicates([s.name for s in inventory.replica_stores], ("replica_stores",), "replica store")
    problems += _duplicates([p.name for p in inventory.policies], ("policies",), "policy")
    problems += _duplicates([v.name for v in inventory.protected_vms], ("protected_vms",), "protected VM")
    problems += _duplicates([z.name for z in inventory.dns_zones], ("dns_zones",), "DNS zone")
    problems += _duplicates([p.name for p in inventory.plans], ("plans",), "plan")

    sites = {site.name: site for site in inventory.sites}
    for index, site in enumerate(inventory.sites):
        problems += _duplicates([n.name for n in site.networks], ("sites", index, "networks"), "network")

    policies = {policy.name for policy in inventory.policies}
    stores = {store.name for store in inventory.replica_stores}
    for index, vm in enumerate(inventory.protected_vms):
        at: Loc = ("protected_vms", index)
        if vm.source_site not in sites:
            problems.append(Problem((*at, "source_site"), _unknown("site", vm.source_site, sites)))
        for target_index, target in enumerate(vm.target_sites):
            if target == vm.source_site:
                problems.append(
                    Problem((*at, "target_sites", target_index), f"'{target}' is the VM's source site")
                )
            elif target not in sites:
                problems.append(Problem((*at, "target_sites", target_index), _unknown("site", target, sites)))
        if vm.policy not in policies:
            problems.append(Problem((*at, "policy"), _unknown("policy", vm.policy, policies)))
        if vm.replica_store not in stores:
            problems.append(
                Problem((*at, "replica_store"), _unknown("replica store", vm.replica_store, stores))
            )

    for index, zone in enumerate(inventory.dns_zones):
        if zone.provider != "route53":
            continue  # an RFC 2136 zone names its server, not a site: its updates go from the target's worker
        zone_site = sites.get(zone.site)
        if zone_site is None:
            problems.append(Problem(("dns_zones", index, "site"), _unknown("site", zone.site, sites)))
        elif zone.provider == "route53" and not isinstance(zone_site, AwsSite):
            problems.append(
                Problem(
                    ("dns_zones", index, "site"), f"route53 zones need an aws site; '{zone.site}' is not one"
                )
            )

    for index, plan in enumerate(inventory.plans):
        problems += [Problem(("plans", index, *p.loc), p.message) for p in check_plan(plan, inventory)]
    return problems


def _site_network(site: Any, name: str, at: Loc, problems: list[Problem]) -> Network | None:
    if site is None:
        return None  # the unknown site is reported once, on the plan
    for network in site.networks:
        if network.name == name:
            return network
    known = [network.name for network in site.networks]
    problems.append(
        Problem(at, f"network '{name}' does not exist at site '{site.name}'{_did_you_mean(name, known)}")
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


def _check_hooks(hooks: Sequence[Hook], at: Loc, sites: dict[str, Any], problems: list[Problem]) -> None:
    problems += _duplicates([hook.name for hook in hooks], at, "hook")
    for index, hook in enumerate(hooks):
        if hook.site is not None and hook.site not in sites:
            problems.append(Problem((*at, index, "site"), _unknown("site", hook.site, sites)))


def check_plan(plan: RecoveryPlan, inventory: Inventory) -> list[Problem]:
    """Everything about a plan that its schema cannot know: names it refers to, addresses, order."""
    return _PlanChecker(plan, inventory).run()


class _PlanChecker:
    def __init__(self, plan: RecoveryPlan, inventory: Inventory) -> None:
        self.plan = plan
        self.inventory = inventory
        self.problems: list[Problem] = []
        self.sites = {site.name: site for site in inventory.sites}
        self.protected = {vm.name: vm for vm in inventory.protected_vms}
        self.zones = {zone.name: zone for zone in inventory.dns_zones}
        self.source = self.sites.get(plan.source_site)
        self.target = self.sites.get(plan.target_site)
        self.group_of: dict[str, int] = {}
        for group_index, group in enumerate(plan.groups):
            for vm in group.vms:
                self.group_of.setdefault(vm.name, group_index)
        self.used: dict[str, dict[IPv4Address, str]] = {"ip": {}, "test_ip": {}}
        self.records: dict[str, tuple[str, str]] = {}

    def add(self, at: Loc, message: str) -> None:
        self.problems.append(Problem(at, message))

    def run(self) -> list[Problem]:
        plan = self.plan
        if self.source is None:
            self.add(("source_site",), _unknown("site", plan.source_site, self.sites))
        if self.target is None:
            self.add(("target_site",), _unknown("site", plan.target_site, self.sites))
        elif plan.target_site == plan.source_site:
            self.add(("target_site",), "the target site is the source site")
            self.target = None  # one error says it all; checks against the source would only echo it

        group_names = [group.name for group in plan.groups]
        self.problems += _duplicates(group_names, ("groups",), "group")
        _check_hooks(plan.pre_hooks, ("pre_hooks",), self.sites, self.problems)
        _check_hooks(plan.post_hooks, ("post_hooks",), self.sites, self.problems)
        self.problems += _duplicates([gate.name for gate in plan.gates], ("gates",), "gate")
        for index, gate in enumerate(plan.gates):
            if gate.before not in group_names:
                self.add(("gates", index, "before"), _unknown("group", gate.before, group_names))

        placed: set[str] = set()
        for group_index, group in enumerate(plan.groups):
            _check_hooks(group.pre_hooks, ("groups", group_index, "pre_hooks"), self.sites, self.problems)
            _check_hooks(group.post_hooks, ("groups", group_index, "post_hooks"), self.sites, self.problems)
            for vm_index, vm in enumerate(group.vms):
                at: Loc = ("groups", group_index, "vms", vm_index)
                if vm.name in placed:
                    first_group = plan.groups[self.group_of[vm.name]].name
                    self.add((*at, "name"), f"VM '{vm.name}' is already in group '{first_group}'")
                    continue
                placed.add(vm.name)
                self.check_replica(vm, at)
                self.check_size(vm, at)
                for nic_index, nic in enumerate(vm.nics):
                    _check_nic(
                        nic,
                        vm.name,
                        self.source,
                        self.target,
                        (*at, "nics", nic_index),
                        self.used,
                        self.problems,
                    )
                self.check_dns(vm, at)
                self.check_dependencies(vm, group_index, at)
        self.problems += _cycles(plan)
        return self.problems

    def check_replica(self, vm: PlanVM, at: Loc) -> None:
        """The VM must be replicated from this plan's source to this plan's target."""
        replica = self.protected.get(vm.name)
        if replica is None:
            self.add(
                (*at, "name"),
                f"VM '{vm.name}' is not protected in the inventory{_did_you_mean(vm.name, self.protected)}",
            )
        elif replica.source_site != self.plan.source_site:
            self.add(
                (*at, "name"),
                f"VM '{vm.name}' is protected from site '{replica.source_site}', "
                f"not from the plan's source site '{self.plan.source_site}'",
            )
        elif self.target is not None and self.plan.target_site not in replica.target_sites:
            self.add(
                (*at, "name"),
                f"VM '{vm.name}' is not replicated to site '{self.plan.target_site}' "
                f"(its target sites: {', '.join(replica.target_sites)})",
            )

    def check_size(self, vm: PlanVM, at: Loc) -> None:
        if vm.size is None or vm.size.instance_type is None or self.target is None:
            return
        if not isinstance(self.target, AwsSite):
            self.add(
                (*at, "size", "instance_type"),
                f"instance_type applies to aws targets, not '{self.target.kind}'",
            )

    def check_dns(self, vm: PlanVM, at: Loc) -> None:
        for index, record in enumerate(vm.dns):
            record_at: Loc = (*at, "dns", index)
            if record.zone not in self.zones:
                self.add((*record_at, "zone"), _unknown("DNS zone", record.zone, self.zones))
            if record.type == "A" and record.value is None and record.nic >= len(vm.nics):
                self.add(
                    (*record_at, "nic"),
                    f"VM '{vm.name}' has no NIC {record.nic} to take the address from; "
                    f"add it under nics or give a value",
                )
            # Two upserts of one name overwrite each other, and a CNAME cannot share its name.
            if record.name in self.records:
                kind, owner = self.records[record.name]
                self.add(
                    (*record_at, "name"), f"'{record.name}' already has an {kind} record, set by VM '{owner}'"
                )
            else:
                self.records[record.name] = (record.type, vm.name)

    def check_dependencies(self, vm: PlanVM, group_index: int, at: Loc) -> None:
        for index, dependency in enumerate(vm.depends_on):
            dep_at: Loc = (*at, "depends_on", index)
            if dependency == vm.name:
                self.add(dep_at, f"VM '{vm.name}' depends on itself")
            elif dependency not in self.group_of:
                self.add(
                    dep_at,
                    f"'{dependency}' is not a VM of this plan{_did_you_mean(dependency, self.group_of)}",
                )
            elif self.group_of[dependency] > group_index:
                later = self.plan.groups[self.group_of[dependency]].name
                self.add(
                    dep_at,
                    f"'{dependency}' boots in a later group ('{later}'), so '{vm.name}' would wait forever",
                )


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


def _check_nic(
    nic: NicMapping,
    vm_name: str,
    source: Any,
    target: Any,
    at: Loc,
    used: dict[str, dict[IPv4Address, str]],
    problems: list[Problem],
) -> None:
    on_aws = isinstance(target, AwsSite)
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


def _cycles(plan: RecoveryPlan) -> list[Problem]:
    """Dependency cycles, each reported once, at the edge that closes it, with its whole path.

    Edges to later groups are left out: each is an error of its own already, and any cycle through
    one would only repeat it.
    """
    group_of: dict[str, int] = {}
    for group_index, group in enumerate(plan.groups):
        for vm in group.vms:
            group_of.setdefault(vm.name, group_index)
    edges: dict[str, list[tuple[str, Loc]]] = {}
    for group_index, group in enumerate(plan.groups):
        for vm_index, vm in enumerate(group.vms):
            if vm.name in edges:
                continue
            edges[vm.name] = [
                (dep, ("groups", group_index, "vms", vm_index, "depends_on", dep_index))
                for dep_index, dep in enumerate(vm.depends_on)
                if dep != vm.name and group_of.get(dep, -1) <= group_index
            ]
    problems = []
    reported: set[frozenset[str]] = set()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        path.append(name)
        for dependency, at in edges.get(name, []):
            if dependency not in edges or dependency in done:
                continue
            if dependency in path:
                cycle = path[path.index(dependency) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    problems.append(Problem(at, "dependency cycle: " + " -> ".join([*cycle, dependency])))
                continue
            visit(dependency, path)
        path.pop()
        done.add(name)

    for name in edges:
        if name not in done:
            visit(name, [])
    return problems


# --- loading --------------------------------------------------------------------------------------


def _absolute_ref(ref: str | None, base: Path) -> str | None:
    if ref is None or not ref.startswith("file:"):
        return ref
    target = Path(ref.removeprefix("file:"))
    return ref if target.is_absolute() else f"file:{os.path.normpath(base / target)}"


def _absolute_path(path: str, base: Path) -> str:
    return path if Path(path).is_absolute() else os.path.normpath(base / path)


def _absolute_hooks(hooks: Sequence[Any], base: Path) -> list[Any]:
    return [
        hook.model_copy(update={"credentials": _absolute_ref(hook.credentials, base)})
        if isinstance(hook, HttpHook)
        else hook
        for hook in hooks
    ]


def _absolute_plan(plan: RecoveryPlan, base: Path) -> RecoveryPlan:
    groups = [
        group.model_copy(
            update={
                "pre_hooks": _absolute_hooks(group.pre_hooks, base),
                "post_hooks": _absolute_hooks(group.post_hooks, base),
            }
        )
        for group in plan.groups
    ]
    return plan.model_copy(
        update={
            "pre_hooks": _absolute_hooks(plan.pre_hooks, base),
            "post_hooks": _absolute_hooks(plan.post_hooks, base),
            "groups": groups,
        }
    )


def _absolute_inventory(inventory: Inventory, base: Path) -> Inventory:
    sites = []
    for site in inventory.sites:
        update: dict[str, Any] = {"credentials": _absolute_ref(site.credentials, base)}
        if isinstance(site, DirectorySite):
            update["path"] = _absolute_path(site.path, base)
        sites.append(site.model_copy(update=update))
    stores = []
    for store in inventory.replica_stores:
        update = {"credentials": _absolute_ref(store.credentials, base)}
        if isinstance(store, DirectoryStore):
            update["path"] = _absolute_path(store.path, base)
        elif store.kind == "azure":
            update["connection_string"] = _absolute_ref(getattr(store, "connection_string", None), base)
        stores.append(store.model_copy(update=update))
    return inventory.model_copy(
        update={
            "sites": sites,
            "replica_stores": stores,
            "policies": [
                policy.model_copy(update={"key_ref": _absolute_ref(policy.key_ref, base)})
                for policy in inventory.policies
            ],
            "dns_zones": [
                zone.model_copy(update={"credentials": _absolute_ref(zone.credentials, base)})
                for zone in inventory.dns_zones
            ],
            "plans": [_absolute_plan(plan, base) for plan in inventory.plans],
        }
    )


def _as_inventory(parsed: InventoryFile) -> Inventory:
    return Inventory.model_construct(**{name: getattr(parsed, name) for name in Inventory.model_fields})


def _as_plan(parsed: PlanFile) -> RecoveryPlan:
    return RecoveryPlan.model_construct(**{name: getattr(parsed, name) for name in RecoveryPlan.model_fields})


@dataclass
class FileSummary:
    """What a valid file holds, for people: its kind, and the inventory or plans in it."""

    path: str
    kind: Literal["Inventory", "RecoveryPlan"]
    inventory: Inventory | None = None
    plans: list[RecoveryPlan] = field(default_factory=list)


@dataclass
class CheckReport:
    """The outcome of checking files: every error (sorted), and a summary of each valid file."""

    errors: list[PlanError] = field(default_factory=list)
    files: list[FileSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Parsed:
    doc: _Document | None
    model: InventoryFile | PlanFile | None
    errors: list[PlanError]


def _parse(path: str | Path) -> _Parsed:
    doc, errors = _read(path)
    if doc is None:
        return _Parsed(None, None, errors)
    kind = doc.data.get("kind")
    if kind is None:
        return _Parsed(
            doc, None, [doc.error((), "missing header: 'kind: Inventory' or 'kind: RecoveryPlan'")]
        )
    model_type = _FILE_KINDS.get(kind) if isinstance(kind, str) else None
    if model_type is None:
        message = f"unknown kind {kind!r}: expected 'Inventory' or 'RecoveryPlan'"
        message += _did_you_mean(str(kind), _FILE_KINDS)
        return _Parsed(doc, None, [doc.error(("kind",), message)])
    try:
        model = model_type.model_validate(doc.data)
    except ValidationError as exc:
        return _Parsed(doc, None, _schema_errors(doc, model_type, exc))
    assert isinstance(model, InventoryFile | PlanFile)
    return _Parsed(doc, model, [])


class _Checker:
    """Checks a set of files once each, following plan files to their inventories."""

    def __init__(self, explicit_inventory: str | Path | None) -> None:
        self.explicit = explicit_inventory
        self.cache: dict[Path, _Parsed] = {}
        self.inventory_problems: dict[Path, list[PlanError]] = {}
        self.report = CheckReport()
        self.reported: set[Path] = set()

    def parsed(self, path: str | Path) -> _Parsed:
        key = Path(path).resolve()
        if key not in self.cache:
            self.cache[key] = _parse(path)
        return self.cache[key]

    def inventory_at(self, path: str | Path) -> tuple[Inventory | None, list[PlanError]]:
        """An inventory file's model and its errors (schema and references), computed once."""
        parsed = self.parsed(path)
        if parsed.errors or parsed.doc is None or parsed.model is None:
            return None, parsed.errors
        if not isinstance(parsed.model, InventoryFile):
            return None, [
                parsed.doc.error(
                    ("kind",), "this file is referred to as an inventory, but it is a RecoveryPlan"
                )
            ]
        key = parsed.doc.real.resolve()
        if key not in self.inventory_problems:
            doc = parsed.doc
            self.inventory_problems[key] = [
                doc.error(p.loc, p.message) for p in check_inventory(parsed.model)
            ]
        errors = self.inventory_problems[key]
        return (None if errors else _as_inventory(parsed.model)), errors

    def emit(self, path: str | Path, errors: list[PlanError]) -> None:
        """Report a file's errors once, however many plans refer to it."""
        key = Path(path).resolve()
        if key not in self.reported:
            self.reported.add(key)
            self.report.errors.extend(errors)

    def run(self, paths: Sequence[str | Path]) -> CheckReport:
        # A shell glob and an explicit name can list one file twice: check and summarise it once.
        unique: dict[Path, str | Path] = {}
        for path in paths:
            unique.setdefault(Path(path).resolve(), path)
        paths = list(unique.values())
        parsed = {path: self.parsed(path) for path in paths}
        given_inventories = [
            path
            for path, p in parsed.items()
            if isinstance(p.model, InventoryFile) or (p.doc and p.doc.data.get("kind") == "Inventory")
        ]
        plan_names: dict[str, str] = {}
        for path in paths:
            item = parsed[path]
            if item.errors or item.model is None or item.doc is None:
                self.emit(path, item.errors)
                continue
            if isinstance(item.model, InventoryFile):
                inventory, errors = self.inventory_at(path)
                self.emit(path, errors)
                if inventory is not None:
                    self.report.files.append(
                        FileSummary(str(path), "Inventory", inventory, list(inventory.plans))
                    )
                    for index, plan in enumerate(inventory.plans):
                        self.claim_plan_name(plan.name, item.doc, ("plans", index, "name"), plan_names)
                continue
            self.check_plan_file(path, item.doc, item.model, given_inventories, plan_names)
        self.report.errors.sort()
        return self.report

    def claim_plan_name(self, name: str, doc: _Document, at: Loc, names: dict[str, str]) -> None:
        # Each plan's failover runs under a fixed workflow id made from its name: names must be unique.
        if name in names:
            self.report.errors.append(doc.error(at, f"plan '{name}' is already defined in {names[name]}"))
        else:
            names[name] = doc.path

    def check_plan_file(
        self,
        path: str | Path,
        doc: _Document,
        model: PlanFile,
        given_inventories: list[str | Path],
        plan_names: dict[str, str],
    ) -> None:
        at: Loc = ()
        if self.explicit is not None:
            inventory_path: str | Path = self.explicit
        elif model.inventory is not None:
            inventory_path = os.path.normpath(os.path.join(os.path.dirname(str(path)), model.inventory))
            at = ("inventory",)
        elif len(given_inventories) == 1:
            inventory_path = given_inventories[0]
        else:
            self.emit(
                path,
                [doc.error((), "no inventory: add 'inventory: <path>' to the plan, or pass --inventory")],
            )
            return
        inventory_doc = self.parsed(inventory_path)
        if at and inventory_doc.doc is None and not Path(inventory_path).is_file():
            # Point at the plan's own 'inventory:' line: that is where the wrong path is written.
            self.emit(path, [doc.error(at, f"inventory file '{inventory_path}' not found")])
            return
        inventory, errors = self.inventory_at(inventory_path)
        self.emit(inventory_path, errors)
        self.claim_plan_name(model.name, doc, ("name",), plan_names)
        if inventory is None:
            return  # its errors are reported on the inventory file itself
        problems = [doc.error(p.loc, p.message) for p in check_plan(model, inventory)]
        self.emit(path, problems)
        if not problems:
            self.report.files.append(FileSummary(str(path), "RecoveryPlan", inventory, [_as_plan(model)]))


def check(paths: Sequence[str | Path], inventory: str | Path | None = None) -> CheckReport:
    """Check inventory and plan files; ``inventory`` overrides what plan files name."""
    return _Checker(inventory).run(paths)


def check_files(paths: Sequence[str | Path], inventory: str | Path | None = None) -> list[PlanError]:
    """Every error in these files (and the inventories their plans name), sorted by file and line."""
    return check(paths, inventory).errors


def load_inventory(path: str | Path) -> Inventory:
    """Load and fully validate an inventory file; relative paths in it become absolute."""
    inventory, errors = _Checker(None).inventory_at(path)
    if inventory is None:
        raise PlanValidationError(errors)
    return _absolute_inventory(inventory, Path(path).resolve().parent)


def load_plan(path: str | Path, inventory: Inventory | None = None) -> RecoveryPlan:
    """Load a plan file and validate it against ``inventory`` (default: the one the plan names)."""
    checker = _Checker(None)
    parsed = checker.parsed(path)
    if parsed.errors or parsed.doc is None or parsed.model is None:
        raise PlanValidationError(parsed.errors)
    if not isinstance(parsed.model, PlanFile):
        raise PlanValidationError(
            [parsed.doc.error(("kind",), "expected a RecoveryPlan file, found an Inventory")]
        )
    if inventory is None:
        if parsed.model.inventory is None:
            raise PlanValidationError(
                [parsed.doc.error((), "no inventory: add 'inventory: <path>' to the plan")]
            )
        inventory = load_inventory(Path(path).parent / parsed.model.inventory)
    problems = check_plan(parsed.model, inventory)
    if problems:
        raise PlanValidationError([parsed.doc.error(p.loc, p.message) for p in problems])
    return _absolute_plan(_as_plan(parsed.model), Path(path).resolve().parent)
