"""Plan hooks (a command or an HTTP call), run at the target site's worker."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import requests
from temporalio import activity

from activities.context import fatal
from activities.recovery import find_plan
from activities.target import TargetSite
from seawall.contract.messages import HookOutcome, HookRequest
from seawall.contract.names import Activity
from seawall.model import CommandHook, HttpHook
from seawall.security.secrets import resolve_text


class HookActivities(TargetSite):
    @activity.defn(name=Activity.RUN_HOOK)
    def run_hook(self, req: HookRequest) -> HookOutcome:
        plan_name, group, name = req.plan, req.group, req.name
        plan, _ = find_plan(self.settings, plan_name)
        hooks = list(plan.pre_hooks) + list(plan.post_hooks)
        for g in plan.groups:
            if group is None or g.name == group:
                hooks += list(g.pre_hooks) + list(g.post_hooks)
        hook = next((h for h in hooks if h.name == name), None)
        if hook is None:
            raise fatal(f"plan {plan_name!r} has no hook {name!r}", "PlanInvalid")
        started = datetime.now(UTC).isoformat()
        timeout = hook.timeout.total_seconds()
        try:
            if isinstance(hook, CommandHook):
                done = subprocess.run(
                    hook.command, capture_output=True, text=True, timeout=timeout, check=False
                )
                ok = done.returncode == 0
                detail = f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[-500:]}"
            elif isinstance(hook, HttpHook):
                token = resolve_text(hook.credentials) if hook.credentials != "none" else None
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                answer = requests.request(hook.method, hook.url, headers=headers, timeout=timeout)
                ok = answer.status_code < 400
                detail = f"{hook.method} {hook.url}: {answer.status_code}"
            else:
                raise fatal(f"hook {name!r} has unknown kind {hook.kind!r}", "PlanInvalid")
        except (subprocess.TimeoutExpired, requests.RequestException, OSError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        outcome = HookOutcome(
            name=name,
            ok=ok,
            detail=self.ctx.redact(detail),
            started_at=started,
            finished_at=datetime.now(UTC).isoformat(),
        )
        if not ok and not hook.continue_on_failure:
            raise fatal(f"hook {name} failed: {outcome.detail}", "HookFailed")
        return outcome
