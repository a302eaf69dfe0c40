"""The refusals of operator actions, as plain domain errors.

``seawall.control`` raises these; each door says them its own way: the API as a problem+json answer
(404, 409), the CLI as one line and an exit code. ``str(error)`` is that one line where the doors
agree on it; where they word it differently the error carries the facts (plan, run, VM) instead.
"""

from __future__ import annotations


class ControlError(Exception):
    """An operator action that the state of things refuses."""


class NotFound(ControlError):
    """What the action names does not exist."""


class NoSuchRun(NotFound):
    """No run of the plan (or not the run asked for) is known to Temporal."""

    def __init__(self, plan: str, run_id: str | None = None) -> None:
        self.plan, self.run_id = plan, run_id
        super().__init__(
            f"no run {run_id} of plan {plan}" if run_id else f"no failover of {plan} has been started"
        )


class NoReport(NotFound):
    """No report of the plan (or of the run asked for) has been written yet."""

    def __init__(self, plan: str, run: str | None, folder: str) -> None:
        self.plan, self.run, self.folder = plan, run, folder
        super().__init__(f"no report of plan {plan}{' run ' + run if run else ''} yet")


class InvalidState(ControlError):
    """The action needs another state than the one its subject is in."""


class AlreadyRunning(InvalidState):
    """A failover of the plan is running: one per plan at a time."""

    def __init__(self, plan: str) -> None:
        self.plan = plan
        super().__init__(f"a failover of {plan} is already running")


class NotRunning(InvalidState):
    """The plan has no running failover to send an update to."""

    def __init__(self, plan: str) -> None:
        self.plan = plan
        super().__init__(f"no failover of {plan} is running")


class NotProtected(InvalidState):
    """The VM has no replication schedule (it was never protected, or unprotected since)."""

    def __init__(self, vm: str) -> None:
        self.vm = vm
        super().__init__(f"{vm} is not protected yet")


class NotFailedOver(InvalidState):
    """Commit and reprotect follow a completed real failover of the plan; its newest run is not one."""

    def __init__(self, plan: str, why: str) -> None:
        self.plan = plan
        super().__init__(f"plan {plan}: {why}")


class Refused(InvalidState):
    """The running workflow refused an update (its validator said why)."""

    def __init__(self, update: str, detail: str) -> None:
        self.update, self.detail = update, detail
        super().__init__(detail)


class NotAuthorised(Refused):
    """The workflow refused the update's intent: unsigned, forged, expired, replayed or a role too low."""


class Failed(ControlError):
    """The workflow the action ran ended in failure; ``str()`` is its cause."""


class Stuck(InvalidState):
    """The run cannot take the update: its workflow task keeps failing (a worker bug, or a run started
    with an input older code could not decode). Only ending it helps (``seawall abort --force``)."""

    def __init__(self, plan: str, detail: str) -> None:
        self.plan, self.detail = plan, detail
        super().__init__(f"the run of {plan} is stuck ({detail}): end it with `seawall abort {plan} --force`")
