"""The lab's process parts (Temporal, vcsim x2, moto, Azurite, BIND): what each runs and how it is checked.

``parts()`` is the table ``manager.py`` starts, checks and stops; ``partstart.py`` starts one part.
Kept apart from both so the table reads as one list and the lifecycle code does not carry its argv.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seawall.lab import bind, cloud, moto_server, temporal, vsphere, vsphere_build, vsphere_spec
from seawall.lab import config as c
from seawall.lab.info import VSphereSiteInfo
from seawall.lab.labsecrets import credentials_path


class LabError(RuntimeError):
    """A part could not be started, did not become healthy, or could not be set up."""


@dataclass
class Part:
    name: str
    port: int
    argv: list[str]
    ping: Callable[[], str]  # ready to be set up (the service answers)
    check: Callable[[], str]  # ready for Seawall (answers and holds the lab's objects)
    start_timeout: float
    # Sets up what the lab needs inside the part (idempotent); runs as soon as the part answers, so
    # one part's set-up overlaps the others' start-up. Its result goes into LabInfo.
    bootstrap: Callable[[], object] | None = None
    fingerprint_extra: str = ""

    @property
    def fingerprint(self) -> str:
        # A part whose command or built inventory would differ is restarted rather than reused.
        blob = json.dumps([self.argv, self.fingerprint_extra]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def vcsim_binary() -> Path | None:
    """An upstream `vcsim` on PATH, else ``$SEAWALL_VCSIM_BIN``, else ours in ``.seawall/bin/vcsim``."""
    found = shutil.which("vcsim")
    if found:
        return Path(found)
    explicit = os.environ.get("SEAWALL_VCSIM_BIN")
    if explicit:
        return Path(explicit)
    root = c.repo_root()
    return root / ".seawall" / "bin" / "vcsim" if root else None


def ensure_vcsim() -> Path:
    binary = vcsim_binary()
    root = c.repo_root()
    ours = root / ".seawall" / "bin" / "vcsim" if root else None
    if root is not None and binary == ours:
        # Cheap when up to date; rebuilds after main.go changed. Its output goes to stderr so that
        # `lab up --json` stays parseable.
        build = root / "deploy" / "lab" / "vcsim" / "build.sh"
        subprocess.run(["bash", str(build)], check=True, stdout=sys.stderr)
    if binary is None or not binary.is_file():
        raise LabError(
            "no vcsim: put one on PATH, set SEAWALL_VCSIM_BIN, or build ours with deploy/lab/vcsim/build.sh"
        )
    return binary


def azurite_argv(state: Path, cfg: c.LabConfig) -> list[str]:
    root = c.repo_root()
    script = root / "deploy" / "lab" / "node_modules" / ".bin" / "azurite-blob" if root else None
    node = shutil.which("node")
    if script is None or not script.exists() or node is None:
        raise LabError("Azurite is not installed: run scripts/setup.sh (npm install in deploy/lab)")
    return [
        node,
        str(script),
        "--blobHost",
        c.HOST,
        "--blobPort",
        str(cfg.azurite_port),
        "--location",
        str(state / "azurite"),
        "--skipApiVersionCheck",
        "--loose",
        # Telemetry would phone home and, with no network, hold the process open after SIGTERM.
        "--disableTelemetry",
    ]


def parts(state: Path, cfg: c.LabConfig, *, for_start: bool) -> list[Part]:
    """The six process parts. ``for_start`` resolves binaries (and may build vcsim); status does not.

    Longer than 80 lines on purpose: it is the lab's table of parts (argv, ping, check, timeouts),
    one literal entry per part, read best side by side rather than spread over six helpers.
    """
    specs = vsphere_spec.site_specs(state, cfg)
    vcsim = str(ensure_vcsim() if for_start else (vcsim_binary() or "vcsim"))
    try:
        temporal_argv = temporal.argv(state, cfg)
    except FileNotFoundError as exc:
        if for_start:
            raise LabError(str(exc)) from exc
        temporal_argv = ["temporal"]
    try:
        blob_argv = azurite_argv(state, cfg)
    except LabError:
        if for_start:
            raise
        blob_argv = ["azurite-blob"]
    try:
        named_argv = bind.argv(state)
    except FileNotFoundError as exc:
        if for_start:
            raise LabError(str(exc)) from exc
        named_argv = ["named"]
    # Its files are written before it starts; its config's text decides whether a running one is reused.
    named_conf = bind.prepare(state, cfg) if for_start else ""

    def build_site(spec: vsphere_spec.SiteSpec) -> VSphereSiteInfo:
        vsphere_build.build(spec)
        vsphere_build.fill_disks(spec)
        return vsphere.describe(spec)

    def vcsim_part(site: str) -> Part:
        spec = specs[site]
        return Part(
            name=f"vcsim-{site}",
            port=spec.port,
            # -dc 0: an empty vCenter; the lab builds the named inventory (see seawall.lab.vsphere_build).
            argv=[vcsim, "-l", f"{c.HOST}:{spec.port}", "-tls=false", "-dc", "0"],
            ping=lambda: vsphere.ping(spec.port),
            check=lambda: vsphere.check(spec),
            start_timeout=20,
            bootstrap=lambda: build_site(spec),
            fingerprint_extra=repr(spec),
        )

    return [
        Part(
            name="temporal",
            port=cfg.temporal_port,
            argv=temporal_argv,
            ping=lambda: temporal.ping(cfg),
            check=lambda: temporal.ping(cfg),
            start_timeout=40,
        ),
        vcsim_part("primary"),
        vcsim_part("dr"),
        Part(
            name="moto",
            port=cfg.moto_port,
            # moto.server with S3 written through to the state dir (seawall/lab/moto_server.py).
            argv=[
                sys.executable,
                moto_server.__file__,
                "--data",
                str(state / "s3"),
                "-H",
                c.HOST,
                "-p",
                str(cfg.moto_port),
            ],
            ping=lambda: cloud.ping_moto(cfg.moto_port),
            check=lambda: cloud.check_moto(cfg.moto_port),
            start_timeout=40,
            bootstrap=lambda: cloud.bootstrap_moto(cfg.moto_port, credentials_path(state, "aws")),
        ),
        Part(
            name="azurite",
            port=cfg.azurite_port,
            argv=blob_argv,
            ping=lambda: cloud.ping_azurite(cfg.azurite_port),
            check=lambda: cloud.check_azurite(cfg.azurite_port),
            start_timeout=40,
            bootstrap=lambda: cloud.bootstrap_azurite(cfg.azurite_port, credentials_path(state, "azure")),
        ),
        Part(
            name="bind",
            port=cfg.dns_port,
            argv=named_argv,
            ping=lambda: bind.ping(state, cfg),
            check=lambda: bind.check(state, cfg),
            start_timeout=20,
            bootstrap=lambda: bind.info(state, cfg),
            fingerprint_extra=named_conf,
        ),
    ]
