"""probe_site: can this worker reach its site with its own credentials?"""

from __future__ import annotations

import os
import socket
import time

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import SiteContext, site_errors
from seawall.contract.messages import ProbeSiteInput, SiteProbe
from seawall.contract.names import Activity


class ProbeActivities:
    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx

    @activity.defn(name=Activity.PROBE_SITE)
    def probe_site(self, req: ProbeSiteInput) -> SiteProbe:
        site = req.site
        if site != self.ctx.site.name:
            # Routing put the task on the wrong queue: retrying on this worker cannot help.
            raise ApplicationError(
                f"worker for site {self.ctx.site.name!r} received a probe for {site!r}", non_retryable=True
            )
        started = time.monotonic()
        try:
            with site_errors():
                detail = self.ctx.adapter.probe()
            reachable = True
        except Exception as exc:  # the probe reports what failed; it is not an activity failure
            detail = f"{type(exc).__name__}: {exc}"
            reachable = False
        return SiteProbe(
            site=site,
            kind=self.ctx.site.kind,
            reachable=reachable,
            detail=self.ctx.redact(detail),
            elapsed_ms=int((time.monotonic() - started) * 1000),
            worker=f"{os.getpid()}@{socket.gethostname()}",
        )
