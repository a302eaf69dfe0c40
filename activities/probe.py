"""probe_site: can this worker reach its site with its own credentials?"""

from __future__ import annotations

import os
import socket
import tempfile
import time

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import SiteContext
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
            detail = self._probe()
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

    def _probe(self) -> str:
        kind = self.ctx.site.kind
        if kind == "vsphere":
            with self.ctx.vsphere() as conn:
                about = conn.content.about
                return f"{about.fullName} (api {about.apiVersion})"
        if kind == "aws":
            ec2 = self.ctx.aws_client("ec2")
            zones = ec2.describe_availability_zones()["AvailabilityZones"]
            return f"region {ec2.meta.region_name}: {len(zones)} availability zones"
        if kind == "directory":
            root = self.ctx.directory_root()
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".probe-") as f:
                f.write(b"seawall")
                f.flush()
                os.fsync(f.fileno())
            return f"{root} is writable"
        raise ApplicationError(f"site kind {kind!r} cannot be probed", non_retryable=True)
