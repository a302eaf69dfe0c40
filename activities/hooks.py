"""Plan hooks (a command or an HTTP call), run at the target site's worker.

What a hook shows is bounded and redacted: a command runs with a minimal environment (PATH, LANG and
what the plan declares for it; never the worker's own variables, which hold site credentials and keys),
only the tail of its output is kept (at most ``OUTPUT_KEPT`` bytes read into memory, ``DETAIL_CHARS``
characters reported), and every configured secret, the hook's own secrets and bearer token, and the
query values and userinfo of URLs are masked before the detail reaches the report, the history or a
log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import requests
from temporalio import activity

from activities.context import fatal
from activities.recovery import find_plan
from activities.target import TargetSite
from seawall.contract.messages import HookOutcome, HookRequest
from seawall.contract.names import Activity
from seawall.model import CommandHook, HttpHook
from seawall.security.secrets import ResolvedSecret, SecretError, redact, resolve, resolve_text

# The tail of a command's output kept in memory while it runs, and what the report shows of it.
OUTPUT_KEPT = 64 * 1024
DETAIL_CHARS = 2000


def command_env(
    hook: CommandHook, base_dir: Path | None = None
) -> tuple[dict[str, str], list[ResolvedSecret]]:
    """The command's whole environment, and the secrets in it (to mask in what it prints)."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": os.environ.get("LANG", "C.UTF-8")}
    env.update(hook.env)
    secrets: list[ResolvedSecret] = []
    for name, ref in hook.secret_env.items():
        try:
            secret = resolve(ref, base_dir)
        except SecretError as exc:
            raise fatal(f"hook {hook.name}: {name}: {exc}", "CredentialsError") from None
        if secret is not None:
            env[name] = secret.text()
            secrets.append(secret)
    return env, secrets


def run_command(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run ``argv``; its exit code and the tail of its output (stdout and stderr together).

    Output is read as it comes and only the last ``OUTPUT_KEPT`` bytes are kept, so a hook that prints
    gigabytes costs no memory. On timeout the whole process group is killed (the hook's children too).
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        close_fds=True,
        start_new_session=True,
    )
    tail = bytearray()
    total = 0

    def pump() -> None:
        nonlocal total
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, OUTPUT_KEPT):
            total += len(chunk)
            tail.extend(chunk)
            if len(tail) > OUTPUT_KEPT:
                del tail[: len(tail) - OUTPUT_KEPT]

    reader = threading.Thread(target=pump, name="hook-output", daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
    text = tail.decode("utf-8", "replace").strip()
    if len(text) > DETAIL_CHARS or total > len(tail):
        text = (
            f"[{total} bytes of output, the last {min(len(text), DETAIL_CHARS)} characters:] "
            + text[-DETAIL_CHARS:]
        )
    return code, text


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
        own_secrets: list[ResolvedSecret | str | None] = []
        try:
            if isinstance(hook, CommandHook):
                env, hook_secrets = command_env(hook, Path(self.settings.plans_dir))
                own_secrets += hook_secrets
                code, output = run_command(hook.command, env, timeout)
                ok = code == 0
                detail = f"exit {code}: {output}"
            elif isinstance(hook, HttpHook):
                token = resolve_text(hook.credentials) if hook.credentials != "none" else None
                own_secrets.append(token)
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
            # The hook's own secrets first (a short token too), then everything configured and URLs.
            detail=self.ctx.redact(redact(detail, own_secrets)),
            started_at=started,
            finished_at=datetime.now(UTC).isoformat(),
        )
        if not ok and not hook.continue_on_failure:
            raise fatal(f"hook {name} failed: {outcome.detail}", "HookFailed")
        return outcome
