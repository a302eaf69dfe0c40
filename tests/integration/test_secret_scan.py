"""No lab password or key leaves the worker: not in histories, schedules, worker logs or status JSON.

A full replication run (probe both kinds of site, protect a VM onto S3 and one onto Azure, a
triggered cycle each, status, unprotect) runs in a namespace of its own so that every task runs on
the worker whose logs are captured here. Payload encryption stays OFF: with it on, histories would be
ciphertext and the scan would prove nothing about what the workflows carry.

What is scanned for, and why not every secret as a bare substring: the Azurite account key and the
replica key are long and distinctive, so any occurrence (hex, raw bytes, base64) is a leak. The
vcsim password is ``pass`` and the moto secret key is ``testing``; both are ordinary words ("passed",
"bypass", pytest's "testing"), and ``testing`` is also the lab's AWS access key *id*, which is not
secret and appears by design in SigV4 credential scopes. For those two the scan looks for the shapes
a leaked credential takes -- ``"password": "pass"``, ``pwd=pass``, ``user:pass@``, a secret-key field
or variable set to ``testing`` -- and for each credential file's whole JSON document. A self-test
shows the detector flags every such shape.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from temporalio.api.history.v1 import History
from temporalio.client import Client

from seawall.contract.messages import ProbeSiteInput, ProtectInput, ProtectResult, SiteProbe, UnprotectInput
from seawall.contract.names import schedule_id
from seawall.control import replication
from seawall.control.status import vm_status
from seawall.lab import LabInfo
from seawall.lab.disks import restore_disk, write_blocks
from seawall.model import Inventory
from tests.integration.isolated_namespace import all_runs, isolated_namespace, raw_history
from tests.integration.replication_env import write_inventory

# One VM per credentialed replica store: S3 on moto and Azure Blob on Azurite.
STORES = {"app-01": "s3", "app-02": "azure"}
# Our own code at DEBUG, as an operator turning up verbosity would see it; libraries at INFO.
OUR_LOGGERS = ("seawall", "activities", "workers", "workflows", "temporalio")


@dataclass(frozen=True)
class Finding:
    secret: str
    where: str
    excerpt: str


class SecretDetector:
    """Finds the lab's secrets in text or bytes, by exact value or by credential shape."""

    def __init__(self, lab: LabInfo) -> None:
        replica_hex = lab.replica_key_file.read_text().strip()
        replica_raw = bytes.fromhex(replica_hex)
        self.exact: dict[str, bytes] = {
            "azure account key": lab.azure.account_key.encode(),
            "azure account key (decoded)": base64.b64decode(lab.azure.account_key),
            "replica key (hex)": replica_hex.encode(),
            "replica key (HEX)": replica_hex.upper().encode(),
            "replica key (raw)": replica_raw,
            "replica key (base64)": base64.b64encode(replica_raw),
        }
        files = {f"{site.site} vcsim": site.credentials_file for site in lab.vsphere.values()}
        files |= {"aws": lab.aws.credentials_file, "azure": lab.azure.credentials_file}
        for name, path in files.items():
            # The credentials files themselves, as the lab wrote them or re-serialized compactly.
            text = path.read_text()
            self.exact[f"{name} credentials file"] = text.strip().encode()
            self.exact[f"{name} credentials JSON"] = json.dumps(
                json.loads(text), separators=(",", ":")
            ).encode()
        password = re.escape(lab.primary.password)
        aws_secret = re.escape(lab.aws.secret_access_key)
        quote = r"""[\"'\\]*"""
        self.shapes: dict[str, re.Pattern[bytes]] = {
            "vcsim password field": re.compile(
                rf"(?i)(password|passwd|pwd){quote}\s*[:=]\s*{quote}{password}(?![\w-])".encode()
            ),
            "vcsim password in a URL": re.compile(rf"://[^/\s:@]+:{password}@".encode()),
            "aws secret key field": re.compile(
                rf"(?i)(secret_access_key|secretaccesskey|aws_secret|secret[_-]?key){quote}\s*[:=]\s*"
                rf"{quote}{aws_secret}(?![\w-])".encode()
            ),
        }

    def scan(self, where: str, data: bytes | str) -> list[Finding]:
        blob = data.encode() if isinstance(data, str) else data
        found: list[Finding] = []
        for name, value in self.exact.items():
            index = blob.find(value)
            if index >= 0:
                found.append(Finding(name, where, repr(blob[max(0, index - 40) : index + 20])))
        for name, pattern in self.shapes.items():
            match = pattern.search(blob)
            if match:
                found.append(Finding(name, where, repr(blob[max(0, match.start() - 40) : match.end() + 20])))
        return found


def test_the_detector_flags_every_leak_shape(lab: LabInfo) -> None:
    detect = SecretDetector(lab)
    site = lab.primary
    leaks = [
        json.dumps({"user": site.user, "password": site.password}),
        json.dumps({"password": site.password}, indent=2),
        f"connect(user={site.user!r}, pwd={site.password!r})",
        str({"user": site.user, "password": site.password}),
        f"https://{site.user}:{site.password}@{site.host}/sdk",
        json.dumps({"aws_secret_access_key": lab.aws.secret_access_key}),
        f"AWS_SECRET_ACCESS_KEY={lab.aws.secret_access_key}",
        lab.azure.connection_string,
        f"key={lab.replica_key_file.read_text().strip()}",
        json.dumps({"detail": json.dumps({"password": site.password})}),  # JSON inside a JSON string
    ]
    for leak in leaks:
        assert detect.scan("sample", leak), leak
    # ...and stays quiet on ordinary text that merely contains the words.
    quiet = [
        "3 passed, 0 failed; testing the bypass; password: redacted",
        f'{{"password": "***", "user": "{site.user}"}}',
        f"Credential={lab.aws.access_key_id}/20261126/us-east-1/s3/aws4_request",
        json.dumps({"password_ref": "file:/etc/seawall/primary.json", "passes": 2}),
    ]
    for text in quiet:
        assert not detect.scan("sample", text), text


def inventory_with_credentialed_stores(lab: LabInfo, tmp: Path, lab_state: Path) -> Path:
    path = write_inventory(tmp, lab_state, s3_prefix=f"secret-scan-{uuid.uuid4().hex[:8]}/", lab=lab)
    data = yaml.safe_load(path.read_text())
    for pvm in data["protected_vms"]:
        if pvm["name"] in STORES:
            pvm["replica_store"] = STORES[pvm["name"]]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def status_json(client: Client, inventory: Inventory) -> str:
    """What ``seawall status --json`` prints: every protected VM's status, as JSON."""
    rows = [await vm_status(client, inventory, pvm.name) for pvm in inventory.protected_vms]
    assert {row.vm for row in rows if row.scheduled} >= set(STORES), rows
    return json.dumps([row.model_dump(mode="json") for row in rows], indent=2, sort_keys=True, default=str)


async def test_no_secret_in_histories_logs_or_status(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.integration.replication_env import replication_env

    caplog.set_level(logging.INFO)
    for name in OUR_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    detect = SecretDetector(lab)
    inventory = inventory_with_credentialed_stores(lab, tmp_path, lab_state_dir)
    rng = random.Random(5)
    scanned: dict[str, int] = {}
    findings: list[Finding] = []

    def scan(where: str, data: bytes | str) -> None:
        scanned[where] = len(data)
        findings.extend(detect.scan(where, data))

    try:
        async with (
            isolated_namespace(lab.temporal.address, "seawall-secrets") as namespace,
            replication_env(
                lab,
                tmp_path / "env",
                lab_state_dir,
                inventory=inventory,
                sites=("primary", "aws"),
                settings_overrides={"temporal_namespace": namespace, "payload_keys": None},
            ) as env,
        ):
            client = env.client
            assert client.data_converter.payload_codec is None
            queue = env.settings.orchestration_queue
            for site in ("primary", "aws"):
                probe = await client.execute_workflow(
                    "ProbeSite",
                    ProbeSiteInput(site=site),
                    id=f"probe-{site}-{uuid.uuid4().hex[:8]}",
                    task_queue=queue,
                    result_type=SiteProbe,
                )
                assert probe.reachable, probe.detail
            for vm in STORES:
                await client.execute_workflow(
                    "ProtectVM",
                    ProtectInput(vm=vm),
                    id=f"protect/{vm}",
                    task_queue=queue,
                    result_type=ProtectResult,
                )
            for vm in STORES:
                write_blocks(lab, "primary", vm, rng.randrange(64) * 4096, rng.randbytes(4096))
                written_at = datetime.now(UTC)
                await replication.replicate_now(client, vm)
                await env.wait_cycle_after(vm, written_at, timeout=120)

            for vm in STORES:
                described = await client.get_schedule_handle(schedule_id(vm)).describe()
                scan(f"schedule {schedule_id(vm)}", described.raw_description.SerializeToString())
            scan("seawall status --json", await status_json(client, env.inventory))

            for vm in STORES:
                await client.execute_workflow(
                    "UnprotectVM",
                    UnprotectInput(vm=vm, delete_replica=True),
                    id=f"unprotect/{vm}",
                    task_queue=queue,
                    result_type=int,
                )

            plain = await Client.connect(lab.temporal.address, namespace=namespace)
            runs = await all_runs(plain)
            types = {t for _, _, t in runs}
            assert {"ProbeSite", "ProtectVM", "ReplicationCycle", "UnprotectVM"} <= types, runs
            for wf_id, run_id, wf_type in runs:
                events = await raw_history(plain, wf_id, run_id)
                history = History(events=events)
                # Binary form: payload bytes exactly as stored. JSON form: what `temporal workflow show`
                # and the UI's download give (payload data there is base64, hence the binary scan too).
                scan(f"history {wf_type} {wf_id} (protobuf)", history.SerializeToString())
                scan(f"history {wf_type} {wf_id} (json)", json_format.MessageToJson(history))

        scan("worker log", caplog.text)
        for record in caplog.records:
            # Structured extras and arguments a JSON log formatter would emit, not only the message.
            scan("worker log record", json.dumps(record.__dict__, default=repr))
    finally:
        for vm in STORES:
            for index in range(len(lab.primary.vm(vm).disks)):
                restore_disk(lab, "primary", vm, index)

    assert not findings, "secrets found:\n" + "\n".join(
        f"  {f.secret} in {f.where}: {f.excerpt}" for f in findings
    )
    # The scan looked at something real: every workflow's history, and a worker that logged its work.
    histories = [where for where in scanned if where.startswith("history ReplicationCycle")]
    assert len(histories) >= 2 * 2 * len(STORES), sorted(scanned)  # seed + triggered, two forms each
    assert "seawall status --json" in scanned
    assert caplog.records, "the worker logged nothing: the log scan would prove nothing"
