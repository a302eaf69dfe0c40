"""DNS put back by cleanup and failback, against the lab's real servers: Route53 (moto) and BIND.

The target site's activities do the work as a worker would (``update_dns``, then ``cleanup_run`` for a
drill, or ``update_dns`` of a failback for a real failover). What each zone holds before and after is
read independently: every record set of the Route53 zone with boto3, and ``dig`` against BIND itself.
After a drill's cleanup and after failback the zone holds exactly what it held before the run; cleanup
twice changes nothing more; a record an operator changed after the run is left as they set it and
reported as a conflict.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from activities.checks import CheckActivities
from activities.cleanup import CleanupActivities
from activities.context import SiteContext
from seawall.contract.messages import CleanupOutcome, CleanupRequest, RecoveredVM, RecoverVMInput, TargetVM
from seawall.lab import LabInfo
from seawall.plans import load_inventory
from seawall.runtime.config import Settings
from seawall.sites.dns import sidecar_name
from tests.integration.replication_env import EXAMPLES, write_inventory

pytestmark = pytest.mark.lab


def _route53(lab: LabInfo) -> Any:
    return boto3.client(
        "route53",
        endpoint_url=lab.aws.endpoint_url,
        region_name=lab.aws.region,
        aws_access_key_id=lab.aws.access_key_id,
        aws_secret_access_key=lab.aws.secret_access_key,
    )


def _dig(lab: LabInfo, name: str, type: str) -> list[str]:
    out = subprocess.run(
        [
            "dig",
            "+tcp",
            "+norecurse",
            "+noall",
            "+answer",
            f"@{lab.dns.server}",
            "-p",
            str(lab.dns.port),
            name,
            type,
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return sorted(
        " ".join([f[1], *f[4:]]) for f in (line.split() for line in out.splitlines()) if f[3] == type
    )


class Zone:
    """One provider's view for the test: its inventory entry, how to read and to change it behind
    Seawall's back (an operator)."""

    def __init__(self, lab: LabInfo, provider: str) -> None:
        self.lab, self.provider = lab, provider

    def inventory_entry(self) -> dict[str, Any]:
        if self.provider == "route53":
            return {"name": self.lab.dns.zone, "provider": "route53", "site": "aws"}
        return {
            "name": self.lab.dns.zone,
            "provider": "rfc2136",
            "server": self.lab.dns.server,
            "port": self.lab.dns.port,
            "tsig_key_name": self.lab.dns.tsig_key_name,
            "tsig_algorithm": self.lab.dns.tsig_algorithm,
            "credentials": f"file:{self.lab.dns.tsig_key_file}",
        }

    def snapshot(self, names: list[str]) -> dict[tuple[str, str], list[str]]:
        """Every record set of the zone (Route53), or every type of interest at ``names`` and their
        sidecars (BIND, by dig): TTLs and values."""
        if self.provider == "route53":
            r53 = _route53(self.lab)
            sets = r53.list_resource_record_sets(HostedZoneId=self.lab.aws.hosted_zone_id)[
                "ResourceRecordSets"
            ]
            return {
                (s["Name"].rstrip("."), s["Type"]): sorted(
                    f"{s.get('TTL')} {r['Value']}" for r in s["ResourceRecords"]
                )
                for s in sets
            }
        out: dict[tuple[str, str], list[str]] = {}
        for name in names:
            for owner, type in ((name, "A"), (sidecar_name(name, "A"), "TXT")):
                answer = _dig(self.lab, owner, type)
                if answer:
                    out[(owner, type)] = answer
        return out

    def operator_sets(self, name: str, value: str) -> None:
        if self.provider == "route53":
            _route53(self.lab).change_resource_record_sets(
                HostedZoneId=self.lab.aws.hosted_zone_id,
                ChangeBatch={
                    "Changes": [
                        {
                            "Action": "UPSERT",
                            "ResourceRecordSet": {
                                "Name": name + ".",
                                "Type": "A",
                                "TTL": 120,
                                "ResourceRecords": [{"Value": value}],
                            },
                        }
                    ]
                },
            )
            return
        import dns.query
        import dns.update

        from seawall.sites.rfc2136 import parse_tsig_key

        key = parse_tsig_key(
            self.lab.dns.tsig_key_file.read_text(), self.lab.dns.tsig_key_name, self.lab.dns.tsig_algorithm
        )
        update = dns.update.UpdateMessage(self.lab.dns.zone + ".")
        update.use_tsig(key)
        update.replace(name + ".", 120, "A", value)
        assert dns.query.tcp(update, self.lab.dns.server, port=self.lab.dns.port, timeout=5).rcode() == 0

    def remove(self, names: list[str]) -> None:
        """Test cleanup: the new names and every sidecar, whatever a failed test left."""
        if self.provider == "route53":
            r53 = _route53(self.lab)
            sets = r53.list_resource_record_sets(HostedZoneId=self.lab.aws.hosted_zone_id)[
                "ResourceRecordSets"
            ]
            mine = [s for s in sets if any(n in s["Name"] for n in names) or "_seawall-prev" in s["Name"]]
            if mine:
                r53.change_resource_record_sets(
                    HostedZoneId=self.lab.aws.hosted_zone_id,
                    ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": s} for s in mine]},
                )
            return
        import dns.query
        import dns.update

        from seawall.sites.rfc2136 import parse_tsig_key

        key = parse_tsig_key(
            self.lab.dns.tsig_key_file.read_text(), self.lab.dns.tsig_key_name, self.lab.dns.tsig_algorithm
        )
        update = dns.update.UpdateMessage(self.lab.dns.zone + ".")
        update.use_tsig(key)
        for name in names:
            update.delete(name + ".")
            update.delete(sidecar_name(name, "A") + ".")
        dns.query.tcp(update, self.lab.dns.server, port=self.lab.dns.port, timeout=5)


def _setup(lab: LabInfo, tmp: Path, zone: Zone, existing: str, fresh: str) -> Settings:
    inventory_path = write_inventory(
        tmp, lab.state_dir, s3_prefix=f"dns-restore-{uuid.uuid4().hex[:6]}/", lab=lab
    )
    data = yaml.safe_load(inventory_path.read_text())
    data["dns_zones"] = [zone.inventory_entry()]
    inventory_path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = yaml.safe_load((EXAMPLES / "erp-dr.yaml").read_text())
    plan["inventory"] = str(inventory_path)
    for group in plan["groups"]:
        for vm in group["vms"]:
            vm["dns"] = []
    db = plan["groups"][0]["vms"][0]
    assert db["name"] == "db-01"
    db["dns"] = [
        {"zone": lab.dns.zone, "name": existing, "type": "A", "ttl": 60, "in_test": True},
        {"zone": lab.dns.zone, "name": fresh, "type": "A", "ttl": 60, "in_test": True},
    ]
    plans = tmp / "plans"
    plans.mkdir()
    (plans / "erp-dr.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    return Settings(inventory=inventory_path, plans_dir=plans)


@pytest.mark.parametrize("provider", ["route53", "rfc2136"])
def test_drill_cleanup_and_failback_put_every_record_back(
    lab: LabInfo, tmp_path: Path, provider: str
) -> None:
    zone = Zone(lab, provider)
    tag = uuid.uuid4().hex[:6]
    existing, fresh = f"old-{tag}.{lab.dns.zone}", f"new-{tag}.{lab.dns.zone}"
    names = [existing, fresh]
    zone.operator_sets(existing, "10.1.9.9")  # production's record, from before any run
    try:
        settings = _setup(lab, tmp_path, zone, existing, fresh)
        ctx = SiteContext(load_inventory(settings.inventory), "dr")
        checks, cleanup = CheckActivities(ctx, settings), CleanupActivities(ctx, settings)
        before = zone.snapshot(names)
        assert before[(existing, "A")] == ["120 10.1.9.9"] and (fresh, "A") not in before
        recovered = TargetVM(name="db-01-drill", ips=["192.168.50.10"], resources=[])

        # A drill sets its in_test records, then its cleanup (twice: a retried activity) restores them.
        drill = RecoverVMInput(plan="erp-dr", run=f"drill-{tag}", mode="test", vm="db-01", target_site="dr")
        set_ = ActivityEnvironment().run(checks.update_dns, RecoveredVM(target=drill, vm=recovered))
        assert [(c.name, c.previous) for c in set_] == [(existing, "10.1.9.9"), (fresh, None)]
        during = zone.snapshot(names)
        assert during[(existing, "A")] == ["60 192.168.50.10"] and during[(fresh, "A")] == [
            "60 192.168.50.10"
        ]
        request = CleanupRequest(plan="erp-dr", run=f"drill-{tag}", mode="test")
        first: CleanupOutcome = ActivityEnvironment().run(cleanup.cleanup_run, request)
        assert sorted(d.outcome for d in first.dns) == ["restored", "restored"], first.dns
        assert zone.snapshot(names) == before
        again: CleanupOutcome = ActivityEnvironment().run(cleanup.cleanup_run, request)
        assert [d.outcome for d in again.dns] == ["unchanged", "unchanged"]
        assert zone.snapshot(names) == before

        # A real failover moves both; an operator then repoints the new name by hand; failback
        # restores the one Seawall still owns and leaves the operator's record alone.
        failover = RecoverVMInput(
            plan="erp-dr", run=f"real-{tag}", mode="planned", vm="db-01", target_site="dr"
        )
        ActivityEnvironment().run(checks.update_dns, RecoveredVM(target=failover, vm=recovered))
        zone.operator_sets(fresh, "10.7.7.7")
        home = RecoverVMInput(
            plan="erp-dr", run=f"back-{tag}", mode="planned", vm="db-01", target_site="primary", in_place=True
        )
        back = ActivityEnvironment().run(checks.update_dns, RecoveredVM(target=home, vm=recovered))
        outcomes = {c.name: c for c in back}
        assert outcomes[existing].outcome == "restored" and outcomes[existing].value == "10.1.9.9"
        assert outcomes[fresh].outcome == "conflict" and "10.7.7.7" in outcomes[fresh].detail
        after = zone.snapshot(names)
        expected = {**before, (fresh, "A"): ["120 10.7.7.7"]}
        assert after == expected
        # Failing back again (a retry) changes nothing: the operator's record stays theirs.
        again_back = ActivityEnvironment().run(checks.update_dns, RecoveredVM(target=home, vm=recovered))
        assert [c.outcome for c in again_back] == ["unchanged", "unchanged"]
        assert zone.snapshot(names) == expected
    finally:
        zone.remove(names)
