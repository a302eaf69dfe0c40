"""Record fresh workflow histories for the replay tests (needs the lab: `seawall lab up`).

    .venv/bin/python -m tests.replay.record_histories          # replication, probe, GC
    .venv/bin/python -m tests.replay.record_histories drill    # a recovery-plan drill
    .venv/bin/python -m tests.replay.record_histories drill-local-choose # the same, saved as *_local_choose
    .venv/bin/python -m tests.replay.record_histories failback # planned failover, commit, reprotect
    .venv/bin/python -m tests.replay.record_histories verify   # a full verify (VerifyReplica)
    .venv/bin/python -m tests.replay.record_histories group    # ProtectGroup, GroupReplicationCycle
    .venv/bin/python -m tests.replay.record_histories scheduled # a ScheduledDrill and its drill
    .venv/bin/python -m tests.replay.record_histories mirror   # a cycle of a mirrored store
    .venv/bin/python -m tests.replay.record_histories bandwidth # BandwidthCoordinator runs
    .venv/bin/python -m tests.replay.record_histories group-mirror # a group cycle of a mirrored store
    .venv/bin/python -m tests.replay.record_histories memo     # a cycle recording its result in its memo

``watch_rpo.json`` was recorded from a run of tests/workflows/test_rpo_watch.py's scenario (its
check_rpo stubbed: breaches in the lab need hours of stopped replication).

Re-record only when a workflow's shape changes *on purpose* and old runs can no longer exist; otherwise
keep the old histories and guard the change with ``workflow.patched``: the point of these files is
that code changes must still replay what already ran.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from seawall.contract.messages import GcInput, ProbeSiteInput, ProtectInput, ProtectResult, UnprotectInput
from seawall.contract.names import schedule_id
from seawall.control.status import cycle_history
from seawall.lab import config as lab_config
from seawall.lab import load_lab
from seawall.lab.disks import restore_disk, write_blocks
from tests.integration.replication_env import replication_env

HERE = Path(__file__).resolve().parent / "histories"


async def record() -> None:
    lab = load_lab()
    HERE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        async with replication_env(lab, Path(tmp), lab_config.state_dir()) as env:
            client, queue = env.client, env.settings.orchestration_queue

            async def save(name: str, workflow_id: str, run_id: str | None = None) -> None:
                history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
                (HERE / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}: {len(history.events)} events")

            probe = await client.start_workflow(
                "ProbeSite", ProbeSiteInput(site="primary"), id="record/probe", task_queue=queue
            )
            await probe.result()
            await save("probe_site", probe.id, probe.result_run_id)

            protect = await client.start_workflow(
                "ProtectVM",
                ProtectInput(vm="app-01"),
                id="protect/app-01",
                task_queue=queue,
                result_type=ProtectResult,
            )
            await protect.result()
            await save("protect_vm", protect.id, protect.result_run_id)
            seed = (await cycle_history(client, "app-01", limit=1))[0]
            await save("replication_cycle_seed", seed.workflow_id, seed.run_id)

            write_blocks(lab, "primary", "app-01", 8192, b"\x5a" * 4096)
            await client.get_schedule_handle(schedule_id("app-01")).trigger()
            for _ in range(120):
                runs = await cycle_history(client, "app-01", limit=5)
                done = [r for r in runs if r.workflow_id != seed.workflow_id and r.result is not None]
                if done:
                    await save("replication_cycle_incremental", done[0].workflow_id, done[0].run_id)
                    break
                await asyncio.sleep(0.5)
            else:
                raise SystemExit("the triggered cycle did not complete")

            gc = await client.start_workflow(
                "CollectGarbage", GcInput(store="local", site="primary"), id="record/gc", task_queue=queue
            )
            await gc.result()
            await save("collect_garbage", gc.id, gc.result_run_id)

            unprotect = await client.start_workflow(
                "UnprotectVM",
                UnprotectInput(vm="app-01", delete_replica=True),
                id="unprotect/app-01",
                task_queue=queue,
                result_type=int,
            )
            await unprotect.result()
            await save("unprotect_vm", unprotect.id, unprotect.result_run_id)
    restore_disk(lab, "primary", "app-01")


async def record_drill(suffix: str = "") -> None:
    """A drill of the example ERP plan: RecoveryPlan and RecoverVM histories (``suffix``: saved beside
    the older recordings of the same workflows, which must keep replaying)."""
    from seawall.contract.messages import ApproveInput
    from tests.integration.test_recovery import protected_erp, stand_ins, start_drill, wait_progress

    lab = load_lab()
    with tempfile.TemporaryDirectory() as tmp:
        async with protected_erp(lab, Path(tmp), lab_config.state_dir()) as env:
            with stand_ins(env.settings.health_check_port_offset):
                handle = await start_drill(env, ttl_s=3600)
                await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead")
                await handle.execute_update("approve", ApproveInput(gate="web-go-ahead", by="recorder"))
                await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"))
                await handle.execute_update("cleanup")
                report = await handle.result()
            for name, wf_id in (
                ("recovery_plan_drill", handle.id),
                ("recover_vm", f"recover/{report.plan}/{report.run}/db-01"),
            ):
                history = await env.client.get_workflow_handle(wf_id).fetch_history()
                name = f"{name}{suffix}"
                (HERE / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}: {len(history.events)} events")


async def record_scheduled_drill() -> None:
    """A ScheduledDrill of the example ERP plan that approves its gate: ScheduledDrill's history and
    its RecoveryPlan child's (with the notifications of patch ``notify-events``)."""
    from seawall.contract.drills import DrillInput, DrillResult
    from tests.integration.test_recovery import protected_erp, stand_ins

    lab = load_lab()
    with tempfile.TemporaryDirectory() as tmp:
        async with protected_erp(lab, Path(tmp), lab_config.state_dir()) as env:
            with stand_ins(env.settings.health_check_port_offset):
                drill = await env.client.start_workflow(
                    "ScheduledDrill",
                    DrillInput(plan="erp-dr", approve_gates=True, health_timeout_s=900),
                    id="drill/erp-dr",
                    task_queue=env.settings.orchestration_queue,
                    result_type=DrillResult,
                )
                result = await drill.result()
                assert result.status == "passed", result
            for name, handle in (
                ("scheduled_drill", drill),
                ("recovery_plan_notified_drill", env.client.get_workflow_handle("recover/erp-dr")),
            ):
                history = await handle.fetch_history()
                (HERE / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}: {len(history.events)} events")


async def record_failback() -> None:
    """Planned failover, CommitFailover, Reprotect and a CleanupTest: their histories."""
    from seawall.contract.messages import (
        ApproveInput,
        CleanupOutcome,
        CommitOutcome,
        FailoverInput,
        PlanInput,
        PlanRunInput,
        ReprotectOutcome,
        RunReport,
    )
    from tests.integration.test_recovery import protected_erp, stand_ins, wait_progress
    from tests.integration.test_recovery_aws import set_primary_power

    lab = load_lab()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            async with protected_erp(lab, Path(tmp), lab_config.state_dir()) as env:
                client, queue = env.client, env.settings.orchestration_queue
                with stand_ins(env.settings.health_check_port_offset):
                    handle = await client.start_workflow(
                        "RecoveryPlan",
                        FailoverInput(plan="erp-dr", mode="planned"),
                        id="recover/erp-dr",
                        task_queue=queue,
                        result_type=RunReport,
                    )
                    await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead", timeout=240)
                    await handle.execute_update("approve", ApproveInput(gate="web-go-ahead", by="recorder"))
                    report = await handle.result()
                runs = {
                    "commit_failover": await client.start_workflow(
                        "CommitFailover",
                        PlanRunInput(plan="erp-dr", run=report.run),
                        id="commit/erp-dr",
                        task_queue=queue,
                        result_type=CommitOutcome,
                    ),
                }
                await runs["commit_failover"].result()
                runs["reprotect"] = await client.start_workflow(
                    "Reprotect",
                    PlanInput(plan="erp-dr"),
                    id="reprotect/erp-dr",
                    task_queue=queue,
                    result_type=ReprotectOutcome,
                )
                await runs["reprotect"].result()
                with stand_ins(env.settings.health_check_port_offset):
                    home = await client.start_workflow(
                        "RecoveryPlan",
                        FailoverInput(plan="erp-dr", mode="planned", direction="failback"),
                        id="recover/erp-dr",
                        task_queue=queue,
                        result_type=RunReport,
                    )
                    await wait_progress(home, lambda p: p["pending_gate"] == "web-go-ahead", timeout=240)
                    await home.execute_update("approve", ApproveInput(gate="web-go-ahead", by="recorder"))
                    back = await home.result()
                runs["recovery_plan_failback"] = home
                runs["recover_vm_in_place"] = client.get_workflow_handle(f"recover/erp-dr/{back.run}/db-01")
                runs["cleanup_test"] = await client.start_workflow(
                    "CleanupTest",
                    PlanRunInput(plan="erp-dr", run=report.run),
                    id="cleanup/erp-dr",
                    task_queue=queue,
                    result_type=CleanupOutcome,
                )
                await runs["cleanup_test"].result()
                for name, run in runs.items():
                    history = await run.fetch_history()
                    (HERE / f"{name}.json").write_text(history.to_json())
                    print(f"recorded {name}: {len(history.events)} events")
        finally:
            set_primary_power(lab, on=True)


async def record_verify() -> None:
    """A VerifyReplica of a freshly protected VM."""
    from seawall.contract.verify import VerifyInput, VerifyReport

    lab = load_lab()
    with tempfile.TemporaryDirectory() as tmp:
        async with replication_env(lab, Path(tmp), lab_config.state_dir()) as env:
            client, queue = env.client, env.settings.orchestration_queue
            await client.execute_workflow(
                "ProtectVM", ProtectInput(vm="app-01"), id="protect/app-01", task_queue=queue
            )
            handle = await client.start_workflow(
                "VerifyReplica", VerifyInput(vm="app-01"), id="verify/app-01", task_queue=queue
            )
            report = VerifyReport.model_validate(await handle.result())
            assert report.ok, report
            history = await handle.fetch_history()
            (HERE / "verify_replica.json").write_text(history.to_json())
            print(f"recorded verify_replica: {len(history.events)} events")


async def record_group() -> None:
    """A consistency group of the ERP tiers protected (hung freeze, thaw): ProtectGroup and its seed."""
    from seawall.contract.messages import GroupCycleInput, ProtectGroupResult
    from tests.integration.test_consistency_group import _inventory

    lab = load_lab()
    with tempfile.TemporaryDirectory() as tmp:
        inventory, _ = _inventory(lab, Path(tmp))
        async with replication_env(lab, Path(tmp), lab_config.state_dir(), inventory=inventory) as env:
            client = env.client
            protect = await client.start_workflow(
                "ProtectGroup",
                GroupCycleInput(group="erp"),
                id="protect-group/erp",
                task_queue=env.settings.orchestration_queue,
                result_type=ProtectGroupResult,
            )
            result = await protect.result()
            await client.get_schedule_handle(result.schedule_id).delete()
            query = f'WorkflowType = "GroupReplicationCycle" AND WorkflowId = "replicate-group/erp/seed-{protect.result_run_id.replace("-", "")[-12:]}"'  # noqa: E501
            (seed,) = [wf async for wf in client.list_workflows(query)]
            for name, handle in (
                ("protect_group", protect),
                ("group_replication_cycle", client.get_workflow_handle(seed.id, run_id=seed.run_id)),
            ):
                history = await handle.fetch_history()
                (HERE / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}: {len(history.events)} events")


async def record_mirror() -> None:
    """The seed cycle of a VM whose S3 store is mirrored to Azure (the ``mirror-points`` branch)."""
    from tests.integration.test_mirror_cycle import VM, mirrored_env
    from tests.integration.test_replication import protect, unprotect

    lab = load_lab()
    with tempfile.TemporaryDirectory() as tmp:
        async with mirrored_env(lab, lab_config.state_dir(), Path(tmp)) as env:
            await protect(env.client, env, VM)
            seed = (await cycle_history(env.client, VM, limit=1))[0]
            assert seed.result is not None and seed.result.mirror == "azure", seed
            history = await env.client.get_workflow_handle(
                seed.workflow_id, run_id=seed.run_id
            ).fetch_history()
            (HERE / "replication_cycle_mirrored.json").write_text(history.to_json())
            print(f"recorded replication_cycle_mirrored: {len(history.events)} events")
            await unprotect(env.client, env, VM)


async def record_bandwidth() -> None:
    """Two processes claiming a site's limit: a run that continues as new after its claims (one member
    drops out), and the next run that ends idle."""
    import uuid

    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Worker

    from seawall.contract.bandwidth import BandwidthClaim, CoordinatorState
    from seawall.contract.names import bandwidth_coordinator_id
    from seawall.runtime.bandwidth import claim_share
    from workflows.bandwidth import BandwidthCoordinatorWorkflow

    lab = load_lab()
    client = await Client.connect(
        lab.temporal.address, namespace=lab.temporal.namespace, data_converter=pydantic_data_converter
    )
    tag = uuid.uuid4().hex[:8]
    scope, queue = f"site:record-{tag}", f"record-bandwidth-{tag}"
    state = CoordinatorState(scope=scope, max_claims=4, expire_s=1.0, idle_s=3.0)
    async with Worker(client, task_queue=queue, workflows=[BandwidthCoordinatorWorkflow]):
        for member, extra in (("p1", {}), ("p2", {"seeding": True, "seed_limit": 5e6}), ("p1", {})):
            claim = BandwidthClaim.model_validate({"member": member, "limit": 20e6, **extra})
            await claim_share(client, scope, queue, claim, state=state)
        await asyncio.sleep(1.5)  # p2 falls silent and expires
        await claim_share(client, scope, queue, BandwidthClaim(member="p1", limit=20e6), state=state)
        handle = client.get_workflow_handle(bandwidth_coordinator_id(scope))
        first = (await handle.describe()).run_id  # the run after the continue-as-new
        await claim_share(client, scope, queue, BandwidthClaim(member="p1", shipping=False), state=state)
        await handle.result()
        runs = [first]
    async for wf in client.list_workflows(f'WorkflowId = "{bandwidth_coordinator_id(scope)}"'):
        if wf.run_id not in runs:
            runs.insert(0, wf.run_id)
    for name, run_id in zip(("bandwidth_coordinator", "bandwidth_coordinator_idle"), runs, strict=False):
        history = await client.get_workflow_handle(
            bandwidth_coordinator_id(scope), run_id=run_id
        ).fetch_history()
        (HERE / f"{name}.json").write_text(history.to_json())
        print(f"recorded {name}: {len(history.events)} events")


async def record_group_mirror() -> None:
    """The seed cycle of a consistency group whose S3 store is mirrored to Azure (the
    ``group-mirror-points`` branch)."""
    from seawall.contract.messages import GroupCycleInput, ProtectGroupResult
    from tests.integration.test_mirror_group_failover import mirrored_group

    lab = load_lab()
    with tempfile.TemporaryDirectory() as tmp:
        inventory = mirrored_group(lab, lab_config.state_dir(), Path(tmp))
        async with replication_env(lab, Path(tmp), lab_config.state_dir(), inventory=inventory) as env:
            client = env.client
            protect = await client.start_workflow(
                "ProtectGroup",
                GroupCycleInput(group="erp"),
                id="protect-group/erp",
                task_queue=env.settings.orchestration_queue,
                result_type=ProtectGroupResult,
            )
            result = await protect.result()
            await client.get_schedule_handle(result.schedule_id).delete()
            seed_id = f"replicate-group/erp/seed-{protect.result_run_id.replace('-', '')[-12:]}"
            query = f'WorkflowType = "GroupReplicationCycle" AND WorkflowId = "{seed_id}"'
            (seed,) = [wf async for wf in client.list_workflows(query)]
            history = await client.get_workflow_handle(seed.id, run_id=seed.run_id).fetch_history()
            (HERE / "group_replication_cycle_mirrored.json").write_text(history.to_json())
            print(f"recorded group_replication_cycle_mirrored: {len(history.events)} events")


async def record_memo() -> None:
    """The seed cycle of a raw-image VM on a directory site (the ``cycle-result-memo`` branch): the
    benchmarks' fleet of one, with a worker in this process on a queue of its own."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.fleet import vm_name, write_fleet
    from seawall.control import replication
    from seawall.runtime.config import Settings
    from seawall.runtime.temporal import connect
    from workers.main import build_workers

    lab = load_lab()
    site = f"rec-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        inventory = write_fleet(Path(tmp), 1, disk_bytes=64 * 1024, interval_s=3600, site=site, prefix=site)
        settings = Settings(
            temporal_address=lab.temporal.address,
            inventory=inventory,
            orchestration_queue=f"rec-orchestration-{uuid.uuid4().hex[:8]}",
            graceful_shutdown_s=5,
        )
        client = await connect(settings)
        vm = vm_name(0, site)
        with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as pool:
            workers = build_workers(client, [site], settings, pool, identity="record-memo")
            running = asyncio.gather(*(w.run() for w in workers))
            try:
                await replication.protect(client, settings.orchestration_queue, vm)
                seed = (await cycle_history(client, vm, limit=1))[0]
                handle = client.get_workflow_handle(seed.workflow_id, run_id=seed.run_id)
                history = await handle.fetch_history()
                (HERE / "replication_cycle_result_memo.json").write_text(history.to_json())
                print(f"recorded replication_cycle_result_memo: {len(history.events)} events")
                await replication.unprotect(client, settings.orchestration_queue, vm)
            finally:
                for w in workers:
                    await w.shutdown()
                await running


if __name__ == "__main__":
    import sys

    which = {
        "drill": record_drill,
        # RecoverVM's first choice of a point as a local activity (patch recover-vm-local-choose-point).
        "drill-local-choose": lambda: record_drill("_local_choose"),
        "failback": record_failback,
        "verify": record_verify,
        "group": record_group,
        "scheduled": record_scheduled_drill,
        "mirror": record_mirror,
        "bandwidth": record_bandwidth,
        "group-mirror": record_group_mirror,
        "memo": record_memo,
    }.get(sys.argv[1] if sys.argv[1:] else "")
    asyncio.run(which() if which else record())
