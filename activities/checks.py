"""At the target site, once a recovered VM runs: its health checks, then its DNS records."""

from __future__ import annotations

import time
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import fatal, site_errors
from activities.heartbeat import Beat, keep_alive
from activities.target import TargetSite
from seawall.contract.messages import DnsChange, HealthOutcome, RecoveredVM, TargetVM
from seawall.contract.names import Activity
from seawall.model import DnsRecord, GuestIpCheck, HttpCheck, TcpCheck
from seawall.sites import health
from seawall.sites.dns import DnsProvider, provider_for
from seawall.sites.dnsrevert import revert_record


class CheckActivities(TargetSite):
    def _check_address(self, ip: str, port: int) -> tuple[str, int]:
        """Where a TCP/HTTP check connects. A lab redirects checks to a stand-in on loopback."""
        if self.settings.health_check_redirect:
            return self.settings.health_check_redirect, port + self.settings.health_check_port_offset
        return ip, port

    @activity.defn(name=Activity.CHECK_HEALTH)
    def check_health(self, req: RecoveredVM) -> HealthOutcome:
        # One attempt of a check may block on a connect for longer than the heartbeat timeout.
        with keep_alive(Beat("health checks")):
            return self._check_health(req)

    def _check_health(self, req: RecoveredVM) -> HealthOutcome:
        inp, vm = req.target, req.vm
        _, pv = self._plan_vm(inp.plan, inp.vm)
        started = time.monotonic()
        lines: list[str] = []
        ip = vm.ips[0] if vm.ips else None
        site = self.ctx.site
        for check in pv.health_checks:
            timeout = check.timeout.total_seconds()
            activity.heartbeat(check.kind)

            def waiting(seconds: float, kind: str = check.kind) -> None:
                # A check may poll for many minutes: the server must keep seeing this worker alive.
                activity.heartbeat(kind)
                time.sleep(seconds)

            if isinstance(check, GuestIpCheck):
                if ip is None:
                    raise fatal(f"{inp.vm}: a guest-ip check needs a planned IP", "PlanInvalid")
                result = health.check_guest_ip(self._guest_ips(vm), ip, timeout=timeout, sleep=waiting)
                with site_errors():
                    said = self.ctx.adapter.guest_report(vm.name)
                if said:
                    # The guest's own words (KVM: its console line, with the last record it found).
                    result = health.HealthResult(
                        result.ok, result.attempts, result.elapsed, f"{result.detail}; guest says: {said}"
                    )
            elif isinstance(check, TcpCheck):
                host, port = self._check_address(ip or "", check.port)
                result = health.check_tcp(host, port, timeout=timeout, sleep=waiting)
            elif isinstance(check, HttpCheck):
                if check.url:
                    url = check.url
                else:
                    host, port = self._check_address(
                        ip or "", check.port or (443 if check.scheme == "https" else 80)
                    )
                    url = f"{check.scheme}://{host}:{port}{check.path}"
                verify: bool | str = (
                    str(self.settings.health_check_ca) if self.settings.health_check_ca else True
                )
                result = health.check_http(
                    url, status=check.status, timeout=timeout, verify_tls=verify, sleep=waiting
                )
            else:
                raise fatal(f"unknown health check {check.kind!r}", "PlanInvalid")
            lines.append(
                f"{check.kind}: {'ok' if result.ok else 'FAILED'} "
                f"after {result.attempts} tries: {result.detail}"
            )
            if not result.ok:
                raise ApplicationError(
                    f"{inp.vm} is not healthy at {site.name}: " + "; ".join(lines), type="Unhealthy"
                )
        return HealthOutcome(ok=True, checks=lines, elapsed_s=round(time.monotonic() - started, 3))

    def _guest_ips(self, vm: TargetVM) -> Callable[[], list[str]]:
        adapter = self.ctx.adapter

        def read() -> list[str]:
            with site_errors():
                return adapter.guest_ips(vm.name)

        return read

    @activity.defn(name=Activity.UPDATE_DNS)
    def update_dns(self, req: RecoveredVM) -> list[DnsChange]:
        """Point the VM's records at it (a drill: only its ``in_test`` records); failing back, put
        back what the failover changed instead (the original VM has its addresses again)."""
        inp, vm = req.target, req.vm
        _, pv = self._plan_vm(inp.plan, inp.vm)
        if inp.in_place:
            return [self._revert(record, run=None) for record in pv.dns]
        changes: list[DnsChange] = []
        for record in pv.dns:
            if inp.mode == "test" and not record.in_test:
                continue  # a drill runs in an isolated network: production DNS stays as it is
            value = record.value or (vm.ips[record.nic] if record.nic < len(vm.ips) else None)
            if value is None:
                raise fatal(
                    f"{inp.vm}: DNS {record.name} has no value and NIC {record.nic} has no IP", "PlanInvalid"
                )
            provider = self._dns(str(record.zone))
            with site_errors():
                change = provider.upsert(
                    str(record.zone), str(record.name), record.type, [value], record.ttl, run=inp.run
                )
            changes.append(
                DnsChange(
                    name=str(record.name),
                    type=record.type,
                    value=value,
                    previous=",".join(change.previous.values) if change.previous else None,
                    zone=str(record.zone),
                )
            )
        return changes

    def _dns(self, zone_name: str) -> DnsProvider:
        zone = self.ctx.inventory.dns_zone(zone_name)
        with site_errors():  # the zone's site resolves its credentials here
            return provider_for(zone, self.ctx.adapter_of)

    def _revert(self, record: DnsRecord, run: str | None) -> DnsChange:
        """Put one record back as it was before the run (``run`` None: whichever run changed it)."""
        provider = self._dns(str(record.zone))
        with site_errors():
            done = revert_record(provider, str(record.zone), str(record.name), record.type, run=run)
        return DnsChange(
            name=str(record.name),
            type=record.type,
            value=",".join(done.restored.values) if done.restored else "",
            previous=",".join(done.replaced.values) if done.replaced else None,
            zone=str(record.zone),
            outcome=done.outcome,
            detail=done.detail,
        )
