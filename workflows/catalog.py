"""Which workflows each kind of worker runs: the orchestration queue's and the site queues'.

Kept out of ``workflows/__init__.py`` on purpose: the sandbox re-imports a workflow's module, and the
package it lives in, for every workflow run it starts. A package ``__init__`` that imported every
workflow made each run re-execute all fifteen workflow modules; now a replication cycle re-imports
only its own module and the few it uses.
"""

from __future__ import annotations

from workflows.after_failover import CleanupTestWorkflow, CommitFailoverWorkflow, ReprotectWorkflow
from workflows.bandwidth import BandwidthCoordinatorWorkflow
from workflows.drills import ScheduledDrillWorkflow
from workflows.groups import GroupReplicationCycleWorkflow
from workflows.probe import ProbeSiteWorkflow
from workflows.protect_group import ProtectGroupWorkflow
from workflows.recover_vm import RecoverVMWorkflow
from workflows.recovery import RecoveryPlanWorkflow
from workflows.replication import (
    CollectGarbageWorkflow,
    ProtectVMWorkflow,
    ReplicationCycleWorkflow,
)
from workflows.rpo import WatchRpoWorkflow
from workflows.unprotect import UnprotectVMWorkflow
from workflows.verify import VerifyReplicaWorkflow

# Orchestration queue: everything an operator starts.
ALL_WORKFLOWS: list[type] = [
    ProbeSiteWorkflow,
    ProtectVMWorkflow,
    ReplicationCycleWorkflow,
    UnprotectVMWorkflow,
    CollectGarbageWorkflow,
    RecoveryPlanWorkflow,
    RecoverVMWorkflow,
    CleanupTestWorkflow,
    CommitFailoverWorkflow,
    ReprotectWorkflow,
    VerifyReplicaWorkflow,
    ProtectGroupWorkflow,
    GroupReplicationCycleWorkflow,
    ScheduledDrillWorkflow,
    WatchRpoWorkflow,
    # A replica store's total bandwidth limit is coordinated here (a site's on the site's queue).
    BandwidthCoordinatorWorkflow,
]
# Site queues: workflows whose quick steps run as local activities on the site's own worker.
SITE_WORKFLOWS: list[type] = [
    ReplicationCycleWorkflow,
    CollectGarbageWorkflow,
    RecoverVMWorkflow,
    GroupReplicationCycleWorkflow,
    # A site's total bandwidth limit, shared by every worker process of the site.
    BandwidthCoordinatorWorkflow,
]
