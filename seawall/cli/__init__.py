"""`seawall` command line: verbs on nouns, `--json` for scripts, Rich for people."""

from __future__ import annotations

import typer

from seawall.cli import after_failover as after_failover_cmd
from seawall.cli import api as api_cmd
from seawall.cli import capacity as capacity_cmd
from seawall.cli import codec as codec_cmd
from seawall.cli import decisions as decisions_cmd
from seawall.cli import demo as demo_cmd
from seawall.cli import drills as drills_cmd
from seawall.cli import failover as failover_cmd
from seawall.cli import keys as keys_cmd
from seawall.cli import lab as lab_cmd
from seawall.cli import plan as plan_cmd
from seawall.cli import points as points_cmd
from seawall.cli import replication as replication_cmd
from seawall.cli import worker as worker_cmd

app = typer.Typer(
    name="seawall",
    help="Seawall: self-hosted disaster recovery on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(lab_cmd.app, name="lab")
plan_cmd.app.command("schedule")(drills_cmd.schedule)
app.add_typer(plan_cmd.app, name="plan")
app.add_typer(demo_cmd.app, name="demo")
app.add_typer(codec_cmd.app, name="codec")
app.add_typer(api_cmd.app, name="api")
app.add_typer(keys_cmd.app, name="keys")
app.command("worker")(worker_cmd.worker)
app.command("protect")(replication_cmd.protect)
app.command("unprotect")(replication_cmd.unprotect)
app.command("replicate-now")(replication_cmd.replicate_now)
app.command("status")(replication_cmd.status)
app.command("capacity")(capacity_cmd.capacity)
app.command("verify")(replication_cmd.verify)
app.command("points")(points_cmd.points)
app.command("failover")(failover_cmd.failover)
app.command("wait")(failover_cmd.wait)
app.command("approve")(decisions_cmd.approve)
app.command("abort")(decisions_cmd.abort)
app.command("cleanup")(decisions_cmd.cleanup)
app.command("retry")(decisions_cmd.retry)
app.command("rollback")(decisions_cmd.rollback)
app.command("report")(after_failover_cmd.report)
app.command("commit")(after_failover_cmd.commit)
app.command("reprotect")(after_failover_cmd.reprotect)


def main() -> None:
    import os
    import sys

    from pydantic import ValidationError
    from temporalio.service import RPCError

    from seawall.cli.common import Exit, err_console, rpc_line

    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except RPCError as exc:
        # Any verb: a Temporal error no command words itself is one line and an exit code, never a
        # traceback (the server restarting, a run that vanished meanwhile).
        line, code = rpc_line(exc)
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    except ValidationError as exc:
        # An argument a verb passed on as it was and its input model refused (an empty --reason):
        # the field and what is wrong with it, never a traceback.
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or exc.title
            err_console.print(f"invalid input: {field}: {error['msg']}", markup=False, highlight=False)
        code = Exit.BAD_INPUT
    # The Temporal SDK's native runtime can abort the interpreter's own teardown (SIGABRT in
    # PyGILState_Release, temporalio/sdk-python#300), turning a clean exit into -6: flush what we
    # printed and leave without running it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
