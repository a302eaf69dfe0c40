"""With payload encryption on, what the Temporal server stores says nothing about the estate.

Real workflows (ProbeSite, ProtectVM with its seed cycle, a scheduled ReplicationCycle, UnprotectVM)
run against the lab's dev server with an in-process worker whose converter encrypts. Then a client
WITHOUT the codec reads the stored histories and a running activity's heartbeat: every payload is
``binary/encrypted`` ciphertext, and none of the VM's datastore paths, the site's host names or IP,
or the lab's credentials appear anywhere in the raw history bytes. The same histories decode with the
codec, and the decoded payloads do hold those values: the scan looked where they would have been.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from seawall.blockstore.keys import load_key
from seawall.contract.messages import (
    CycleResult,
    ProbeSiteInput,
    ProtectInput,
    ProtectResult,
    SiteProbe,
    UnprotectInput,
)
from seawall.contract.names import schedule_id
from seawall.lab import LabInfo
from seawall.lab.disks import restore_disk, write_blocks
from seawall.lab.temporal import temporal_binary
from seawall.runtime.config import Settings
from seawall.runtime.temporal import connect
from seawall.security.codec import ENCODING, KEY_ID_METADATA, EncryptionCodec, UnknownPayloadKeyError
from seawall.security.codec_server import CodecServer
from tests.integration.isolated_namespace import all_runs, isolated_namespace, payloads_in, raw_history
from tests.integration.replication_env import replication_env, write_inventory

ROOT = Path(__file__).resolve().parents[2]
VM = "app-01"
# Identifier fields hold names by design (the UI finds runs by them): workflow ids such as
# ``protect/app-01``, search attributes, task queue names, and the identity of the schedule that
# started a cycle (``temporal-scheduler-<namespace>-replicate/app-01``). Everything else must be opaque.
IDENTIFIER_FIELDS = frozenset(
    {
        "search_attributes",
        "workflow_id",
        "workflow_execution",
        "parent_workflow_execution",
        "root_workflow_execution",
        "task_queue",
        "identity",
    }
)
# Payloads the codec does not (and must not) touch: the server indexes search attributes.
UNENCODED_FIELDS = frozenset({"search_attributes"})
# What the SDK core's own marker data may hold: no user values, only ids, counters and times.
SDK_MARKER_KEYS = frozenset(
    {
        "id",
        "deprecated",
        "seq",
        "attempt",
        "activity_id",
        "activity_type",
        "complete_time",
        "backoff",
        "original_schedule_time",
        "activation_index",
    }
)
# What resolve_protection says of a VM the inventory does not protect.
FAILURE_TEXT = b"not protected"
RELEASE_HEARTBEAT = asyncio.Event()


@activity.defn(name="codec_test_heartbeat")
async def heartbeat_until_released(detail: dict[str, str]) -> str:
    # What the ship activity heartbeats is a checkpoint of the same kind: where on which disk it is.
    while not RELEASE_HEARTBEAT.is_set():
        activity.heartbeat(detail)
        await asyncio.sleep(0.2)
    return detail["datastore_path"]


@workflow.defn(name="CodecHeartbeatProbe")
class HeartbeatProbe:
    @workflow.run
    async def run(self, detail: dict[str, str]) -> str:
        result: str = await workflow.execute_activity(
            "codec_test_heartbeat",
            detail,
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=30),
        )
        return result


def write_key_ring(tmp: Path) -> str:
    """A throwaway ring, newest first, as SEAWALL_PAYLOAD_KEYS would list it."""
    refs = []
    for key_id in ("history-2026", "history-2025"):
        path = tmp / f"{key_id}.key"
        path.write_text(os.urandom(32).hex() + "\n")
        refs.append(f"file:{path}#{key_id}")
    return ",".join(refs)


def is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def never_in_clear(lab: LabInfo) -> dict[str, bytes]:
    """Values of the estate and of its secrets that no stored history may show."""
    site = lab.primary
    vm = site.vm(VM)
    values: dict[str, str] = {
        "vcenter address": f"{site.host}:{site.port}",
        "esx host": vm.host,
        "datastore": f"[{site.datastore}]",
        "vcsim credentials": json.dumps({"password": site.password}).strip("{}"),
        "azure account key": lab.azure.account_key,
        "replica key": lab.replica_key_file.read_text().strip(),
    }
    for index, disk in enumerate(vm.disks):
        values[f"datastore path {index}"] = disk.datastore_path
        values[f"disk file {index}"] = disk.flat_name
    # Derived from the replica key; the shipped-disk summaries carry it (see ShippedDiskRef.shipped).
    values["replica hash seed"] = str(load_key(f"file:{lab.replica_key_file}").seed64)
    return {name: value.encode() for name, value in values.items()}


async def wait_for_runs(client: Client, types: set[str], timeout: float = 30.0) -> list[tuple[str, str, str]]:
    """Visibility is eventually consistent: wait until every expected workflow type is listed."""
    deadline = asyncio.get_running_loop().time() + timeout
    runs: list[tuple[str, str, str]] = []
    while asyncio.get_running_loop().time() < deadline:
        runs = await all_runs(client)
        if types <= {t for _, _, t in runs}:
            return runs
        await asyncio.sleep(0.5)
    raise AssertionError(f"expected runs of {sorted(types)}, listed: {runs}")


async def pending_heartbeat(plain: Client, workflow_id: str) -> list[Payload]:
    for _ in range(100):
        resp = await plain.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=plain.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
            )
        )
        for pending in resp.pending_activities:
            if pending.heartbeat_details.payloads:
                return list(pending.heartbeat_details.payloads)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id}: no heartbeat details recorded")


async def test_stored_histories_hold_only_ciphertext(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    ring = write_key_ring(tmp_path)
    rng = random.Random(11)
    vminfo = lab.primary.vm(VM)
    secrets = {**never_in_clear(lab), "failure message": FAILURE_TEXT}
    try:
        async with (
            isolated_namespace(lab.temporal.address, "seawall-codec") as namespace,
            replication_env(
                lab,
                tmp_path / "env",
                lab_state_dir,
                settings_overrides={"payload_keys": ring, "temporal_namespace": namespace},
            ) as env,
        ):
            client = env.client
            codec = client.data_converter.payload_codec
            assert isinstance(codec, EncryptionCodec)
            queue = env.settings.orchestration_queue

            probe = await client.execute_workflow(
                "ProbeSite",
                ProbeSiteInput(site="primary"),
                id=f"probe-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
                result_type=SiteProbe,
            )
            assert probe.reachable, probe.detail

            # A failure's message and stack trace name things too: they travel encrypted as well, and
            # the codec client still reads them.
            with pytest.raises(WorkflowFailureError) as failed:
                await client.execute_workflow(
                    "ProtectVM",
                    ProtectInput(vm="no-such-vm"),
                    id="protect/no-such-vm",
                    task_queue=queue,
                    result_type=ProtectResult,
                )
            cause = failed.value.cause
            assert FAILURE_TEXT.decode() in str(getattr(cause, "cause", None) or cause)

            protected = await client.execute_workflow(
                "ProtectVM",
                ProtectInput(vm=VM),
                id=f"protect/{VM}",
                task_queue=queue,
                result_type=ProtectResult,
            )
            write_blocks(lab, "primary", VM, rng.randrange(64) * 4096, rng.randbytes(4096))
            written_at = datetime.now(UTC)
            await client.get_schedule_handle(schedule_id(VM)).trigger()
            point = await env.wait_cycle_after(VM, written_at, timeout=120)
            assert point != protected.first_point

            plain = await Client.connect(lab.temporal.address, namespace=namespace)
            assert plain.data_converter.payload_codec is None
            # The schedule keeps the input of every future cycle; the worker's client sealed it too.
            schedule = (await plain.get_schedule_handle(schedule_id(VM)).describe()).raw_description
            cycle_input = list(schedule.schedule.action.start_workflow.input.payloads)
            assert cycle_input and all(p.metadata["encoding"] == ENCODING for p in cycle_input)
            assert VM.encode() not in b"".join(p.data for p in cycle_input)

            # A heartbeat, read back while its activity still runs, as the UI's pending-activity view does.
            detail = {"vm": VM, "datastore_path": vminfo.disks[0].datastore_path, "host": vminfo.host}
            hb_queue = f"codec-heartbeat-{uuid.uuid4().hex[:8]}"
            async with Worker(
                client,
                task_queue=hb_queue,
                workflows=[HeartbeatProbe],
                activities=[heartbeat_until_released],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ):
                hb_handle = await client.start_workflow(
                    HeartbeatProbe.run, detail, id=f"heartbeat-{uuid.uuid4().hex[:8]}", task_queue=hb_queue
                )
                try:
                    (beat,) = await pending_heartbeat(plain, hb_handle.id)
                finally:
                    RELEASE_HEARTBEAT.set()
                assert beat.metadata["encoding"] == ENCODING and not is_json(beat.data)
                assert all(value.encode() not in beat.SerializeToString() for value in detail.values())
                (clear_beat,) = await codec.decode([beat])
                assert json.loads(clear_beat.data) == detail
                assert await hb_handle.result() == detail["datastore_path"]

            await client.execute_workflow(
                "UnprotectVM",
                UnprotectInput(vm=VM, delete_replica=True),
                id=f"unprotect/{VM}",
                task_queue=queue,
                result_type=int,
            )

            runs = await wait_for_runs(
                plain, {"ProbeSite", "ProtectVM", "ReplicationCycle", "UnprotectVM", "CodecHeartbeatProbe"}
            )
            cycles = runs_of(runs, "ReplicationCycle")
            assert len(cycles) >= 2, runs  # the seed and the triggered one
            decoded_text = b""
            encrypted_count = 0
            for wf_id, run_id, wf_type in runs:
                events = await raw_history(plain, wf_id, run_id)
                raw = b"".join(e.SerializeToString() for e in events)
                for name, needle in secrets.items():
                    assert needle not in raw, f"{wf_type} {wf_id}: {name} ({needle!r}) is stored in clear"
                for event in events:
                    for path, payload in payloads_in(event, skip=UNENCODED_FIELDS):
                        if is_sdk_marker_data(event, path):
                            # Bookkeeping the SDK core writes past the codec: a patch's code name, or a
                            # local activity's sequence number, type and times. Its result is encrypted.
                            assert set(json.loads(payload.data)) <= SDK_MARKER_KEYS, payload
                            continue
                        where = f"{wf_type} {wf_id} event {event.event_id} {path}"
                        assert payload.metadata.get("encoding") == ENCODING, where
                        assert payload.metadata[KEY_ID_METADATA] == b"history-2026", where
                        assert not is_json(payload.data), where
                        encrypted_count += 1
                        # Decodes with the codec: the history is intact, only unreadable without the key.
                        (clear,) = await codec.decode([payload])
                        decoded_text += clear.data + b"\n"
                    # Outside identifier fields the VM's name appears nowhere (payloads, failures, markers).
                    opaque = event.__class__()
                    opaque.CopyFrom(event)
                    for _, payload in list(payloads_in(opaque, skip=UNENCODED_FIELDS)):
                        payload.Clear()
                    stripped = strip_fields(opaque, IDENTIFIER_FIELDS).SerializeToString()
                    assert VM.encode() not in stripped, f"{wf_type} {wf_id} event {event.event_id}"

            assert encrypted_count >= 20, encrypted_count
            # The control: decrypted, the same payloads do carry what the ciphertext hid.
            assert b'"vm":"app-01"' in decoded_text.replace(b" ", b"")
            for name in ("datastore path 0", "esx host", "replica hash seed", "failure message"):
                assert secrets[name] in decoded_text, name
            assert probe.detail.encode() in decoded_text
            # And the codec client reads every result back as the models the workflows returned.
            assert await client.get_workflow_handle(f"protect/{VM}", result_type=ProtectResult).result() == (
                protected
            )
            for cycle_id in cycles:
                cycle = await client.get_workflow_handle(cycle_id, result_type=CycleResult).result()
                assert cycle.vm == VM and cycle.verified
    finally:
        RELEASE_HEARTBEAT.clear()
        for index in range(len(vminfo.disks)):
            restore_disk(lab, "primary", VM, index)


def is_sdk_marker_data(event: HistoryEvent, path: str) -> bool:
    if not event.HasField("marker_recorded_event_attributes"):
        return False
    name = event.marker_recorded_event_attributes.marker_name
    return (name, path) in {
        ("core_patch", "marker_recorded_event_attributes.details[patch-data].payloads"),
        ("core_local_activity", "marker_recorded_event_attributes.details[data].payloads"),
    }


def runs_of(runs: list[tuple[str, str, str]], wf_type: str) -> list[str]:
    return [wf_id for wf_id, _, t in runs if t == wf_type]


def strip_fields(message: Any, names: frozenset[str]) -> Any:
    """``message`` with every field named in ``names`` cleared, at any depth (in place)."""
    for field, value in message.ListFields():
        if field.name in names:
            message.ClearField(field.name)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in [value] if isinstance(value, Message) else value:
                strip_fields(item, names)
    return message


async def test_worker_process_encrypts_from_its_environment(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    """``SEAWALL_PAYLOAD_KEYS`` alone turns encryption on in a ``seawall worker`` process."""
    ring = write_key_ring(tmp_path)
    inventory = write_inventory(tmp_path, lab_state_dir, s3_prefix="codec-env/", lab=lab)
    async with isolated_namespace(lab.temporal.address, "seawall-codec-env") as namespace:
        queue = f"seawall-orchestration-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "SEAWALL_TEMPORAL_ADDRESS": lab.temporal.address,
            "SEAWALL_TEMPORAL_NAMESPACE": namespace,
            "SEAWALL_INVENTORY": str(inventory),
            "SEAWALL_ORCHESTRATION_QUEUE": queue,
            "SEAWALL_PAYLOAD_KEYS": ring,
            "SEAWALL_GRACEFUL_SHUTDOWN_S": "2",
        }
        # A file, not a pipe: nobody reads a pipe once the worker is up, and a full one would block it.
        log_path = tmp_path / "worker.log"
        log = log_path.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "seawall.cli", "worker", "--site", "primary"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            await wait_for_text(log_path, "worker started", proc)
            client = await connect(
                Settings(
                    temporal_address=lab.temporal.address, temporal_namespace=namespace, payload_keys=ring
                )
            )
            wf_id = f"probe-{uuid.uuid4().hex[:8]}"
            probe = await client.execute_workflow(
                "ProbeSite", ProbeSiteInput(site="primary"), id=wf_id, task_queue=queue, result_type=SiteProbe
            )
            assert probe.reachable, probe.detail

            plain = await Client.connect(lab.temporal.address, namespace=namespace)
            events = await raw_history(plain, wf_id)
            payloads = [p for e in events for _, p in payloads_in(e, skip=UNENCODED_FIELDS)]
            assert payloads and all(p.metadata.get("encoding") == ENCODING for p in payloads)
            assert probe.detail.encode() not in b"".join(e.SerializeToString() for e in events)

            # The `temporal` CLI, a codec-server client of its own (as the Web UI is), shows the run
            # decoded through `seawall codec serve`'s protocol, and only with the token.
            codec = EncryptionCodec.from_refs(ring)
            with CodecServer(codec, port=0, token="cli-codec-token") as codec_server:
                rc, shown = await show_with_codec(
                    lab, namespace, wf_id, codec_server.url, "Bearer cli-codec-token"
                )
                assert rc == 0, shown
                assert completed_result(shown) == probe.model_dump(mode="json")
                rc, denied = await show_with_codec(lab, namespace, wf_id, codec_server.url, "Bearer wrong")
                assert rc != 0, denied

            # A reader holding only other keys is told which key it lacks.
            other = tmp_path / "other.key"
            other.write_text(os.urandom(32).hex())
            stranger = await connect(
                Settings(
                    temporal_address=lab.temporal.address,
                    temporal_namespace=namespace,
                    payload_keys=f"file:{other}#someone-else",
                )
            )
            with pytest.raises(UnknownPayloadKeyError, match="history-2026"):
                await stranger.get_workflow_handle(wf_id, result_type=SiteProbe).result()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        # Its exit status is not this test's subject (test_worker_probe checks the drain on SIGTERM), and a
        # Temporal client process can abort at interpreter exit (temporalio/sdk-python#300).
        assert "worker stopped" in log_path.read_text()


async def wait_for_text(path: Path, text: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if text in path.read_text():
            return
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {text!r} from the worker process:\n{path.read_text()}")


async def show_with_codec(
    lab: LabInfo, namespace: str, workflow_id: str, endpoint: str, auth: str
) -> tuple[int, str]:
    """``temporal workflow show --output json`` through a codec endpoint: exit status and output."""
    proc = await asyncio.create_subprocess_exec(
        str(temporal_binary()),
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        "--namespace",
        namespace,
        "--address",
        lab.temporal.address,
        "--codec-endpoint",
        endpoint,
        "--codec-auth",
        auth,
        "--output",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return int(proc.returncode or 0), out.decode()


def completed_result(history_json: str) -> object:
    """The decoded result of a run from its history in protobuf JSON (payload fields base64)."""
    for event in json.loads(history_json)["events"]:
        attrs = event.get("workflowExecutionCompletedEventAttributes")
        if attrs:
            (payload,) = attrs["result"]["payloads"]
            assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain", payload
            return json.loads(base64.b64decode(payload["data"]))
    raise AssertionError("no WorkflowExecutionCompleted event in the history")
