"""`seawall demo up | down`: a worker, the lab's primary VMs protected at 30 s, a guest writer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from seawall.cli.common import Exit, console, err_console

if TYPE_CHECKING:
    from seawall.lab import LabInfo

app = typer.Typer(help="Run the demo on the lab: protect every primary VM and keep writing to them.")


@app.command("up")
def up(drill: bool = typer.Option(True, "--drill/--no-drill", help="End with a test failover.")) -> None:
    """Start the demo worker, protect the primary VMs (30 s RPO), start the guest writer."""
    from seawall.control.errors import ControlError
    from seawall.lab import LabNotUpError, load_lab

    try:
        lab = load_lab()
    except LabNotUpError as exc:
        err_console.print(f"{exc}; run `seawall lab up` first")
        raise typer.Exit(Exit.UNAVAILABLE) from None
    try:
        _up(lab, drill)
    except ControlError as exc:
        # What failed, in the operation's own words (a protect, a drill); what is up stays up.
        err_console.print(f"demo: {exc}", markup=False, highlight=False, soft_wrap=True)
        err_console.print("what runs already: `seawall status`; stop it: `seawall demo down`")
        raise typer.Exit(Exit.FAILED) from None


def _up(lab: LabInfo, drill: bool) -> None:
    from seawall.lab import demo

    pids = demo.start(lab)
    console.print(f"demo worker pid {pids['worker']}, guest writer pid {pids['writer']}")
    vms = ", ".join(vm.name for vm in lab.vsphere["primary"].vms)
    console.print(f"protected: {vms} (policy {demo.DEMO_POLICY})")
    if lab.kvm:
        from seawall.lab import demo_kvm

        kvm_pid = demo_kvm.start(lab)
        guests = ", ".join(g.name for g in lab.kvm["kvm-a"].guests)
        console.print(f"KVM worker pid {kvm_pid}; protected at kvm-a: {guests}")
    if drill:
        console.print("test failover of plan erp-dr to the dr site:")
        html, link = demo.drill(lab)
        console.print(f"  report:  {html}", soft_wrap=True)
        console.print(f"  the run: {link}", soft_wrap=True)
        if lab.kvm:
            console.print("test failover of plan kvm-dr: the real guests boot at kvm-b on its drill network:")
            html, lines = demo_kvm.drill(lab)
            for line in lines:
                console.print(f"  {line}", soft_wrap=True)
            console.print(f"  report:  {html}", soft_wrap=True)


@app.command("down")
def down() -> None:
    """Stop the demo's worker and writer (the lab keeps running)."""
    from seawall.lab import LabNotUpError, demo, load_lab

    try:
        lab = load_lab()
    except LabNotUpError:
        return
    stopped = demo.stop(lab)
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
