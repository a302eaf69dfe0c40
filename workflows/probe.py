"""ProbeSiteWorkflow: ask a site's own worker whether it can reach the site with its own credentials.

Operators run it before protecting VMs or drilling a plan; it is also the smallest end-to-end proof that
routing by site task queue, the pydantic converter and our search attributes work.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.probe import ProbeActivities
    from seawall.contract.messages import ProbeSiteInput, SiteProbe
    from seawall.contract.names import Workflow
    from seawall.contract.queues import site_queue
    from seawall.contract.search import SA_SITE
    from workflows.inputs import decode_input


@workflow.defn(name=Workflow.PROBE_SITE)
class ProbeSiteWorkflow:
    @workflow.run
    async def run(self, raw: Any = None) -> SiteProbe:
        inp = decode_input(ProbeSiteInput, raw)
        workflow.upsert_search_attributes([SA_SITE.value_set(inp.site)])
        # A probe answers in seconds; a few quick retries tell a flapping site from a dead one.
        return await workflow.execute_activity_method(
            ProbeActivities.probe_site,
            inp,
            task_queue=site_queue(inp.site),
            schedule_to_close_timeout=timedelta(minutes=2),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1)),
        )
