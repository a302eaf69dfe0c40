"""The workflow sandbox, with each workflow class validated once per process.

A ``Worker`` validates every workflow class it registers by building a throwaway sandboxed instance,
which re-imports the class's modules inside the sandbox: about 0.1 s a class, 1.5 s for Seawall's
fifteen on these machines. A worker process with an orchestration worker and a worker per site paid
that once per worker, and the workflow tests, which start three workers per test, paid it in every
test. The outcome depends only on the class and the sandbox restrictions, so this runner validates a
class the first time and remembers it; every workflow *run* is still executed in the sandbox.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from temporalio import workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

__all__ = ["ValidatedOnceRunner", "sandbox_runner"]


@dataclass(frozen=True)
class ValidatedOnceRunner(SandboxedWorkflowRunner):
    """A ``SandboxedWorkflowRunner`` that skips re-validating a class it has validated already."""

    _validated: set[type] = field(default_factory=set, init=False, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, compare=False, repr=False)

    def prepare_workflow(self, defn: workflow._Definition) -> None:
        with self._lock:
            if defn.cls in self._validated:
                return
        # A failure raises here and the class stays unvalidated: the next worker tries again.
        super().prepare_workflow(defn)
        with self._lock:
            self._validated.add(defn.cls)


_RUNNER = ValidatedOnceRunner()


def sandbox_runner() -> ValidatedOnceRunner:
    """The process's one runner (default restrictions), shared by every worker it builds."""
    return _RUNNER
