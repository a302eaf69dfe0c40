"""Who a recovered vSphere VM is: Windows sysprep customization, and the source's custom attributes.

``customize_windows`` queues a sysprep customization (``CustomizeVM_Task``): computer name, per NIC
a fixed address or DHCP with its gateway and DNS servers, and a domain join (or a workgroup). The
join account's password and the Administrator password are resolved by the caller at the worker
and go to vCenter inside the task's spec only. A copy of the spec *without* any password is kept in
vCenter's customization spec manager as ``seawall.<run>.<vm>``: what was asked of the guest stays
readable there (and cleanup removes it with the run).

Like ``customize_ip``, it does nothing (False) when the VM is already on or a customization is
pending: a retried activity (a worker killed mid-way) never queues a second one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from seawall.model import WindowsCustomization
from seawall.model.ipplan import NicPlan
from seawall.security.secrets import SecretError, resolve_credentials, resolve_text
from seawall.sites.base import SiteError, VMShape
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.session import VSphereError

NETBIOS_MAX = 15


@dataclass(frozen=True)
class WindowsIdentity:
    """The sysprep identity, secrets resolved (never logged, never returned)."""

    computer_name: str
    domain: str | None
    join_user: str | None
    join_password: str | None
    workgroup: str | None
    admin_password: str | None
    organization: str
    owner: str
    time_zone: int


def spec_name(run: str, vm: str) -> str:
    return f"seawall.{run}.{vm}"


def _password(value: str | None, keep: bool) -> Any:
    if value is None or not keep:
        return None
    return vim.vm.customization.Password(value=value, plainText=True)


def sysprep_spec(nics: Sequence[NicPlan], who: WindowsIdentity, *, with_secrets: bool) -> Any:
    """The customization spec; ``with_secrets=False`` leaves both passwords out (the stored copy)."""
    settings = []
    dns_all: list[str] = []
    for nic in nics:
        adapter = vim.vm.customization.IPSettings()
        if nic.ip is None:
            adapter.ip = vim.vm.customization.DhcpIpGenerator()
        else:
            adapter.ip = vim.vm.customization.FixedIp(ipAddress=str(nic.ip))
            adapter.subnetMask = str(nic.netmask)
            if nic.gateway is not None:
                adapter.gateway = [str(nic.gateway)]
        if nic.dns_servers:
            adapter.dnsServerList = [str(s) for s in nic.dns_servers]
            dns_all += [str(s) for s in nic.dns_servers if str(s) not in dns_all]
        if who.domain:
            adapter.dnsDomain = who.domain
        settings.append(vim.vm.customization.AdapterMapping(adapter=adapter))
    if who.domain:
        identification = vim.vm.customization.Identification(
            joinDomain=who.domain,
            domainAdmin=who.join_user,
            domainAdminPassword=_password(who.join_password, with_secrets),
        )
    else:
        identification = vim.vm.customization.Identification(joinWorkgroup=who.workgroup or "WORKGROUP")
    identity = vim.vm.customization.Sysprep(
        guiUnattended=vim.vm.customization.GuiUnattended(
            autoLogon=False,
            autoLogonCount=0,
            timeZone=who.time_zone,
            password=_password(who.admin_password, with_secrets),
        ),
        userData=vim.vm.customization.UserData(
            fullName=who.owner,
            orgName=who.organization,
            computerName=vim.vm.customization.FixedName(name=who.computer_name),
            productId="",
        ),
        identification=identification,
    )
    return vim.vm.customization.Specification(
        identity=identity,
        globalIPSettings=vim.vm.customization.GlobalIPSettings(
            dnsServerList=dns_all or None, dnsSuffixList=[who.domain] if who.domain else None
        ),
        nicSettingMap=settings,
    )


def computer_name(hostname: str) -> tuple[str, str | None]:
    """The NetBIOS computer name for ``hostname`` (its first label, at most 15 characters), and a
    note when it had to be shortened."""
    label = hostname.partition(".")[0]
    if len(label) <= NETBIOS_MAX:
        return label, None
    return label[:NETBIOS_MAX], f"computer name {label!r} is longer than 15 characters: {label[:15]!r} used"


def windows_identity(shape: VMShape, notes: list[str], remember: Callable[[str], None]) -> WindowsIdentity:
    """The sysprep identity of a recovered Windows VM, its secrets resolved here at the worker;
    ``remember`` teaches each secret reference to the adapter's ``redact``."""
    w = shape.windows or WindowsCustomization()
    name, note = computer_name(shape.hostname)
    if note:
        notes.append(note)
    user = password = admin = None
    try:
        if w.domain is not None and w.join_credentials is not None:
            creds = resolve_credentials(w.join_credentials, required=("user", "password"))
            user, password = str(creds["user"]), str(creds["password"])
            remember(w.join_credentials)
        if w.admin_password is not None:
            admin = resolve_text(w.admin_password)
            remember(w.admin_password)
    except SecretError as exc:
        raise SiteError(f"Windows customization of {shape.hostname}: {exc}", "CredentialsError") from None
    return WindowsIdentity(
        computer_name=name,
        domain=w.domain,
        join_user=user,
        join_password=password,
        workgroup=w.workgroup,
        admin_password=admin,
        organization=w.organization,
        owner=w.owner,
        time_zone=w.time_zone,
    )


def customize_windows(
    conn: VSphereConnection,
    vm: Any,
    nics: Sequence[NicPlan],
    who: WindowsIdentity,
    *,
    record_as: str,
    timeout: float | None = None,
) -> bool:
    """Queue the sysprep customization; True if queued (False: on already, or one is pending)."""
    props = conn.properties(vm, ["runtime.powerState", "config.tools.pendingCustomization"])
    if props.get("runtime.powerState") == "poweredOn" or props.get("config.tools.pendingCustomization"):
        return False
    _record(conn, record_as, sysprep_spec(nics, who, with_secrets=False))
    spec = sysprep_spec(nics, who, with_secrets=True)
    conn.run_task(
        f"customize {conn.vm_name(vm)} (sysprep)", lambda: vm.CustomizeVM_Task(spec=spec), timeout=timeout
    )
    return True


def _record(conn: VSphereConnection, name: str, spec: Any) -> None:
    """Keep the password-less spec in vCenter's spec manager (replacing one a dead attempt stored)."""
    manager = conn.content.customizationSpecManager
    if manager is None:
        return
    item = vim.CustomizationSpecItem(
        info=vim.CustomizationSpecInfo(
            name=name,
            description="Seawall recovery: sysprep asked of the guest (no passwords)",
            type="Windows",
        ),
        spec=spec,
    )
    try:
        if manager.DoesCustomizationSpecExist(name=name):
            manager.OverwriteCustomizationSpec(item=item)
        else:
            manager.CreateCustomizationSpec(item=item)
    except vim.fault.AlreadyExists:
        manager.OverwriteCustomizationSpec(item=item)


def remove_run_specs(conn: VSphereConnection, run: str) -> list[str]:
    """Delete the stored specs of ``run``; their names."""
    manager = conn.content.customizationSpecManager
    if manager is None:
        return []
    gone: list[str] = []
    for info in list(manager.info or []):
        if str(info.name).startswith(f"seawall.{run}."):
            try:
                manager.DeleteCustomizationSpec(name=info.name)
            except vim.fault.NotFound:
                pass
            except vmodl.fault.MethodNotFound:
                # vcsim 0.24 stores specs but cannot delete them: nothing to do but leave them.
                return gone
            gone.append(str(info.name))
    return gone


def set_custom_attributes(conn: VSphereConnection, vm: Any, values: dict[str, str]) -> None:
    """Give ``vm`` the source's custom attributes, defining a field the site does not have yet."""
    if not values:
        return
    manager = conn.content.customFieldsManager
    if manager is None:
        raise VSphereError(f"{conn.describe()} has no custom fields manager: cannot set {sorted(values)}")
    fields = {
        str(f.name): f for f in manager.field or [] if f.managedObjectType in (None, vim.VirtualMachine)
    }
    for name, value in sorted(values.items()):
        field = fields.get(name)
        if field is None:
            try:
                field = manager.AddCustomFieldDef(name=name, moType=vim.VirtualMachine)
            except vim.fault.DuplicateName:
                field = next(f for f in manager.field if str(f.name) == name)
        manager.SetField(entity=vm, key=field.key, value=value)
