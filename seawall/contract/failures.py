"""The reason behind a failure, for reports and doors: the innermost message, not "Activity task failed".

A child's failure wraps its activity's, which wraps the ApplicationError the activity raised; what an
operator needs is that last message (``point ... of app-01 is corrupt: chunk ... in pack ...``). The
workflows word a failed VM with it, the doors a failed run. Sandbox-safe (temporalio.exceptions only).
"""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError


def failure_reason(exc: BaseException) -> str:
    """The innermost failure's message, with the activity or child it came from when there is one."""
    where = ""
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, ActivityError) and cur.activity_type:
            where = cur.activity_type
        # FailureError chains, and the client's WorkflowFailureError / update errors, all say ``cause``.
        nxt = getattr(cur, "cause", None)
        if not isinstance(nxt, BaseException):
            nxt = None
        if nxt is None:
            break
        cur = nxt
    message = cur.message if isinstance(cur, FailureError) else str(cur)
    if isinstance(exc, ChildWorkflowError | ActivityError) and cur is exc:
        return message
    return f"{where}: {message}" if where else message
