"""The RFC 2136 provider against the lab's BIND: every change read back from the server itself.

The provider is built the way the recovery activity builds it, from an inventory zone whose TSIG key
is a ``file:`` reference to the lab's key file. What the zone holds is read with ``dig`` (and a plain
dnspython query), never through the provider under test.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest
import yaml

from activities.checks import CheckActivities
from activities.context import SiteContext
from seawall.contract.messages import RecoveredVM, RecoverVMInput, TargetVM
from seawall.lab import LabInfo
from seawall.model import Rfc2136Zone
from seawall.plans import load_inventory
from seawall.runtime.config import Settings
from seawall.sites.dns import DnsError, DnsRecordSet, sidecar_name
from seawall.sites.rfc2136 import DnsAuthError, Rfc2136Dns, parse_tsig_key
from tests.integration.replication_env import EXAMPLES, write_inventory

pytestmark = pytest.mark.lab


def _zone(lab: LabInfo) -> Rfc2136Zone:
    return Rfc2136Zone(
        name=lab.dns.zone,
        server=lab.dns.server,
        port=lab.dns.port,
        tsig_key_name=lab.dns.tsig_key_name,
        tsig_algorithm="hmac-sha256",
        credentials=f"file:{lab.dns.tsig_key_file}",
    )


@pytest.fixture
def bind(lab: LabInfo) -> Rfc2136Dns:
    return Rfc2136Dns.from_zone(_zone(lab))


def _lab_key(lab: LabInfo) -> dns.tsig.Key:
    return parse_tsig_key(lab.dns.tsig_key_file.read_text(), lab.dns.tsig_key_name, lab.dns.tsig_algorithm)


def _send(lab: LabInfo, update: dns.update.UpdateMessage) -> int:
    return dns.query.tcp(update, lab.dns.server, port=lab.dns.port, timeout=5).rcode()


@pytest.fixture
def name(lab: LabInfo) -> Iterator[str]:
    fqdn = f"t-{uuid.uuid4().hex[:8]}.{lab.dns.zone}"
    yield fqdn
    # Whatever a failed test left: the name and its sidecars, with the lab's key.
    update = dns.update.UpdateMessage(lab.dns.zone + ".")
    update.use_tsig(_lab_key(lab))
    for owner in (fqdn, sidecar_name(fqdn, "A"), sidecar_name(fqdn, "CNAME")):
        update.delete(owner + ".")
    assert _send(lab, update) == dns.rcode.NOERROR


def dig(lab: LabInfo, name: str, type: str = "A") -> list[str]:
    """What the server answers, by BIND's own client: sorted ``TTL VALUE`` lines."""
    server = [f"@{lab.dns.server}", "-p", str(lab.dns.port)]
    out = subprocess.run(
        ["dig", "+tcp", "+norecurse", "+noall", "+answer", *server, name, type],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    rows = [line.split() for line in out.splitlines()]
    return sorted(" ".join([f[1], *f[4:]]) for f in rows if f[3] == type)


def serial(lab: LabInfo) -> int:
    answer = dns.query.tcp(
        dns.message.make_query(lab.dns.zone + ".", "SOA"), lab.dns.server, port=lab.dns.port, timeout=5
    )
    return int(answer.answer[0][0].serial)


def test_the_lab_zone_holds_its_seeded_records(lab: LabInfo) -> None:
    assert lab.dns.records["web-01." + lab.dns.zone] == "10.1.1.21"
    for fqdn, value in lab.dns.records.items():
        kind = "A" if value[0].isdigit() else "CNAME"
        answer = dig(lab, fqdn, kind)
        assert len(answer) == 1 and answer[0].split()[1].removesuffix(".") == value, fqdn


def test_new_record_created_repeated_and_deleted_on_restore(
    lab: LabInfo, bind: Rfc2136Dns, name: str
) -> None:
    zone = lab.dns.zone
    change = bind.upsert(zone, name, "A", ["10.2.1.21"], 60)
    assert change.previous is None
    assert dig(lab, name) == ["60 10.2.1.21"]
    assert dig(lab, sidecar_name(name, "A"), "TXT") == ['60 "seawall-prev v1 absent set=10.2.1.21"']
    # The activity's retry: the same change back, and nothing sent to the server (serial unchanged).
    before = serial(lab)
    assert bind.upsert(zone, name, "A", ["10.2.1.21"], 60) == change
    assert serial(lab) == before

    # A second failover elsewhere: still "absent before Seawall", so restore deletes the record.
    second = bind.upsert(zone, name, "A", ["10.3.1.21", "10.3.1.22"], 30)
    assert second.previous is None
    assert dig(lab, name) == ["30 10.3.1.21", "30 10.3.1.22"]
    assert bind.restore(second) is None
    assert dig(lab, name) == [] and dig(lab, sidecar_name(name, "A"), "TXT") == []
    before = serial(lab)
    assert bind.restore(second) is None, "restoring twice is a no-op"
    assert serial(lab) == before


def test_existing_record_restored_to_its_previous_value(lab: LabInfo, bind: Rfc2136Dns, name: str) -> None:
    zone = lab.dns.zone
    # Production's record, put there by someone else with the zone's key.
    seed = dns.update.UpdateMessage(zone + ".")
    seed.use_tsig(_lab_key(lab))
    seed.add(name + ".", 300, "A", "10.1.2.11")
    assert _send(lab, seed) == dns.rcode.NOERROR
    original = DnsRecordSet(name, "A", 300, ("10.1.2.11",))
    assert bind.get(zone, name, "A") == original

    change = bind.upsert(zone, name, "A", ["10.2.2.11"], 60)
    assert change.previous == original
    assert dig(lab, name) == ["60 10.2.2.11"]
    assert bind.upsert(zone, name.upper(), "A", ["10.2.2.11"], 60) == change

    assert bind.restore(change) == original
    assert dig(lab, name) == ["300 10.1.2.11"]
    assert dig(lab, sidecar_name(name, "A"), "TXT") == []


def test_cname_created_and_removed_and_a_clash_refused(lab: LabInfo, bind: Rfc2136Dns, name: str) -> None:
    zone = lab.dns.zone
    change = bind.upsert(zone, name, "CNAME", [f"app-01.{zone}"], 120)
    assert dig(lab, name, "CNAME") == [f"120 app-01.{zone}."]
    # BIND would silently ignore an A record beside the CNAME; the provider says why it cannot be.
    with pytest.raises(DnsError, match="is a CNAME"):
        bind.upsert(zone, name, "A", ["10.2.1.1"], 60)
    assert bind.restore(change) is None
    assert dig(lab, name, "CNAME") == []
    # The seeded erp CNAME is left as it is.
    with pytest.raises(DnsError, match="is a CNAME"):
        bind.upsert(zone, f"erp.{zone}", "A", ["10.2.1.1"], 60)
    assert dig(lab, f"erp.{zone}", "CNAME") == [f"300 web-01.{zone}."]


def test_updates_without_the_lab_key_are_refused(lab: LabInfo, name: str) -> None:
    zone = lab.dns.zone
    wrong_secret = Rfc2136Dns(
        lab.dns.server,
        dns.tsig.Key(lab.dns.tsig_key_name, base64.b64encode(os.urandom(32)).decode()),
        port=lab.dns.port,
    )
    with pytest.raises(DnsAuthError, match="BADSIG"):
        wrong_secret.upsert(zone, name, "A", ["10.9.9.9"], 60)
    intruder = dns.tsig.Key("intruder.", base64.b64encode(os.urandom(32)).decode())
    unknown_key = Rfc2136Dns(lab.dns.server, intruder, port=lab.dns.port)
    with pytest.raises(DnsAuthError, match="BADKEY"):
        unknown_key.get(zone, name, "A")
    # The server itself refuses the update, not just the provider's reads: unsigned, and wrongly signed.
    unsigned = dns.update.UpdateMessage(zone + ".")
    unsigned.add(name + ".", 60, "A", "10.9.9.9")
    assert _send(lab, unsigned) == dns.rcode.REFUSED
    forged = dns.update.UpdateMessage(zone + ".")
    forged.use_tsig(wrong_secret.key)
    forged.add(name + ".", 60, "A", "10.9.9.9")
    with pytest.raises(dns.tsig.PeerBadSignature):
        _send(lab, forged)
    assert dig(lab, name) == []


def test_the_recovery_activity_updates_an_rfc2136_zone(lab: LabInfo, tmp_path: Path, name: str) -> None:
    """update_dns at the target site's worker: the inventory's rfc2136 zone, its key by file: reference."""
    inventory_path = write_inventory(tmp_path, lab.state_dir, s3_prefix="dns-activity/", lab=lab)
    data = yaml.safe_load(inventory_path.read_text())
    data["dns_zones"] = [_zone(lab).model_dump(mode="json")]
    inventory_path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = yaml.safe_load((EXAMPLES / "erp-dr.yaml").read_text())
    plan["inventory"] = str(inventory_path)
    db = plan["groups"][0]["vms"][0]
    assert db["name"] == "db-01"
    db["dns"] = [{"zone": lab.dns.zone, "name": name, "type": "A", "ttl": 60}]
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "erp-dr.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    settings = Settings(inventory=inventory_path, plans_dir=plans)
    activities = CheckActivities(SiteContext(load_inventory(inventory_path), "dr"), settings)
    inp = RecoverVMInput(plan=plan["name"], run="r1", mode="planned", vm="db-01", target_site="dr")
    vm = TargetVM(name="db-01", ips=["10.2.3.10"], resources=[])

    changes = activities.update_dns(RecoveredVM(target=inp, vm=vm))
    assert [(c.name, c.value, c.previous) for c in changes] == [(name, "10.2.3.10", None)]
    assert dig(lab, name) == ["60 10.2.3.10"]
    assert activities.update_dns(RecoveredVM(target=inp, vm=vm)) == changes, (
        "a retried activity reports the same change"
    )
