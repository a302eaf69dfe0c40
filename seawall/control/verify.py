"""Verify a VM's replica in full (``VerifyReplica``): every chunk of every point (or the ones named).

Written once for every door; the scrub itself runs at the VM's source site, where the store's key is.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from seawall.contract.failures import failure_reason
from seawall.contract.names import Workflow, verify_id
from seawall.contract.verify import VerifyInput, VerifyReport
from seawall.control.errors import Failed, NotFound


async def verify(client: Client, queue: str, vm: str, points: list[str] | None = None) -> VerifyReport:
    """Run a full verify of ``vm`` to its end (a second caller attaches to the running one).

    :class:`NotFound` for a point that does not exist; :class:`Failed` with the reason otherwise.
    """
    try:
        return await client.execute_workflow(
            Workflow.VERIFY_REPLICA,
            VerifyInput(vm=vm, points=list(points or [])),
            id=verify_id(vm),
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            result_type=VerifyReport,
        )
    except WorkflowFailureError as exc:
        root: BaseException | None = exc.cause
        while isinstance(getattr(root, "cause", None), BaseException):
            root = getattr(root, "cause", None)
        if isinstance(root, ApplicationError) and root.type in ("PointNotFound", "NotProtected"):
            raise NotFound(root.message) from None
        raise Failed(failure_reason(exc)) from None
