"""Plan and inventory files: every broken file fails with exit 2 and one located error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seawall.cli import app
from seawall.model import AwsSite, HttpHook, Inventory, RecoveryPlan, VSphereSite
from seawall.plans import (
    PlanError,
    PlanValidationError,
    check,
    check_files,
    check_plan,
    load_inventory,
    load_plan,
)

REPO = Path(__file__).resolve().parents[2]
DATA = Path("tests/data/plans")
BROKEN = DATA / "broken"
GOOD = DATA / "good"
EXAMPLES = sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").glob("*.yaml"))

# file, line, field, the start of the message (the rest may name suggestions or values)
BROKEN_CASES = [
    ("empty.yaml", 1, "", "file is empty"),
    # PyYAML's reader, composer and constructor failures, and values it cannot build, are located too.
    ("plan-yaml-bad-date.yaml", 5, "", "invalid YAML value: day is out of range for month"),
    ("plan-yaml-control-character.yaml", 4, "", "invalid YAML: special character #x0007 is not allowed"),
    ("plan-yaml-deep-nesting.yaml", 1, "", "invalid YAML: nested too deeply"),
    ("plan-yaml-two-documents.yaml", 3, "", "invalid YAML: but found another document"),
    ("plan-yaml-undefined-alias.yaml", 4, "", "invalid YAML: found undefined alias 'nowhere'"),
    ("inventory-cidr-host-bits.yaml", 25, "sites[1].networks[1].cidr", "Input is not a valid IPv4 network"),
    ("inventory-duplicate-site.yaml", 36, "sites[3].name", "site 'dr' is already defined (sites[1])"),
    (
        "inventory-gateway-outside.yaml",
        24,
        "sites[1].networks[0].gateway",
        "gateway 10.2.3.1 is outside the network's subnet 10.2.2.0/24",
    ),
    (
        "inventory-inline-secret.yaml",
        32,
        "sites[2].credentials",
        "is not a secret reference: write env:VARIABLE, file:PATH or none, neve",
    ),
    (
        "inventory-interval-garbage.yaml",
        42,
        "policies[0].interval",
        "not a duration: write e.g. 30s, 5m, 1h30m, 2d, or a number of seconds ",
    ),
    (
        "inventory-interval-too-long.yaml",
        42,
        "policies[0].interval",
        "2d is out of range: must be between 30s and 24h",
    ),
    (
        "inventory-interval-too-short.yaml",
        42,
        "policies[0].interval",
        "10s is out of range: must be between 30s and 24h",
    ),
    (
        "inventory-key-none.yaml",
        44,
        "policies[0].key_ref",
        "replicas are always encrypted: key_ref cannot be none",
    ),
    ("inventory-kvm-no-pool.yaml", 4, "sites[0].pool", "required key is missing"),
    ("inventory-missing-field.yaml", 15, "sites[1].datacenter", "required key is missing"),
    (
        "inventory-group-unknown-vm.yaml",
        56,
        "consistency_groups[0].vms[2]",
        "unknown protected VM 'web-1'; did you mean 'web-01'?",
    ),
    (
        "inventory-group-two-sites.yaml",
        56,
        "consistency_groups[0].vms",
        "members come from several source sites: dr, primary",
    ),
    ("inventory-no-retention.yaml", 41, "policies[0]", "give retention_count, retention_hours, or both"),
    (
        "inventory-site-kind.yaml",
        29,
        "sites[2].kind",
        "unknown kind 'amazon': expected one of 'vsphere', 'aws', 'directory', 'kvm'",
    ),
    ("inventory-strict-bool.yaml", 26, "sites[1].networks[2].isolated", "Input should be a valid boolean"),
    (
        "inventory-target-is-source.yaml",
        46,
        "protected_vms[0].target_sites[0]",
        "'primary' is the VM's source site",
    ),
    ("inventory-unknown-key.yaml", 43, "policies[0].retention_cout", "unknown key 'retention_cout'"),
    ("inventory-unknown-policy.yaml", 48, "protected_vms[2].policy", "unknown policy 'rpo-5'"),
    ("inventory-unknown-site.yaml", 48, "protected_vms[2].source_site", "unknown site 'primray'"),
    (
        "inventory-url-credentials.yaml",
        31,
        "sites[2].endpoint_url",
        "URL must not carry credentials (user:password@)",
    ),
    ("inventory-zone-not-aws.yaml", 52, "dns_zones[0].site", "route53 zones need an aws site"),
    (
        "inventory-zone-provider.yaml",
        53,
        "dns_zones[1].provider",
        "unknown DNS provider: expected 'route53' or 'rfc2136' (got 'bind')",
    ),
    ("inventory-zone-rfc2136-no-key.yaml", 53, "dns_zones[1].tsig_key_name", "required key is missing"),
    ("inventory-zone-rfc2136-site.yaml", 55, "dns_zones[0].site", "unknown key 'site'"),
    (
        "plan-bad-dns-name.yaml",
        36,
        "groups[1].vms[0].dns[0].name",
        "'-app-01.corp.example.com' is not a valid DNS name: dot-separated labe",
    ),
    ("plan-bad-kind.yaml", 2, "kind", "unknown kind 'RecoveryPlna': expected 'Inventory' or 'RecoveryPlan'"),
    (
        "plan-bad-name.yaml",
        4,
        "name",
        "'App_DR' is not a valid name: use 1-63 lowercase letters, digits and '",
    ),
    (
        "plan-bad-port.yaml",
        21,
        "groups[0].vms[0].health_checks[0].port",
        "Input should be less than or equal to 65535",
    ),
    ("plan-cname-without-value.yaml", 36, "groups[1].vms[0].dns[0]", "a CNAME record needs a value"),
    (
        "plan-dependency-cycle.yaml",
        38,
        "groups[1].vms[1].depends_on[1]",
        "dependency cycle: app-01 -> app-02 -> app-01",
    ),
    (
        "plan-depends-later-group.yaml",
        13,
        "groups[0].vms[0].depends_on[0]",
        "'app-01' boots in a later group ('app'), so 'db-01' would wait forever",
    ),
    (
        "plan-dns-duplicate.yaml",
        36,
        "groups[1].vms[0].dns[0].name",
        "'db.corp.example.com' already has an A record, set by VM 'db-01'",
    ),
    (
        "plan-dns-outside-zone.yaml",
        36,
        "groups[1].vms[0].dns[0].name",
        "'app-01.example.org' is outside zone 'corp.example.com'",
    ),
    ("plan-dns-unknown-zone.yaml", 19, "groups[0].vms[0].dns[0].zone", "unknown DNS zone 'example.net'"),
    ("plan-duplicate-yaml-key.yaml", 24, "groups[1].boot_delay", "duplicate key (first at line 23)"),
    ("plan-failure-policy.yaml", 7, "failure_policy", "Input should be 'stop', 'skip-vm' or 'rollback-test'"),
    ("plan-gate-unknown-group.yaml", 8, "gates[0].before", "unknown group 'apps'"),
    (
        "plan-health-check-kind.yaml",
        21,
        "groups[0].vms[0].health_checks[0].kind",
        "unknown kind 'tpc': expected one of 'tcp', 'http', 'guest-ip'",
    ),
    ("plan-hook-no-command.yaml", 25, "groups[1].pre_hooks[0].command", "required key is missing"),
    (
        "plan-hook-timeout.yaml",
        25,
        "groups[1].pre_hooks[0].timeout",
        "12h is out of range: must be between 1s and 4h",
    ),
    (
        "plan-inline-secret.yaml",
        25,
        "groups[1].pre_hooks[0].credentials",
        "is not a secret reference: write env:VARIABLE, file:PATH or none, neve",
    ),
    (
        "plan-ip-broadcast.yaml",
        34,
        "groups[1].vms[0].nics[0].ip.ip",
        "10.2.2.255 is the broadcast address of subnet 10.2.2.0/24 of network '",
    ),
    (
        "plan-ip-duplicate.yaml",
        42,
        "groups[1].vms[1].nics[0].ip.ip",
        "10.2.2.11 is already used by VM 'app-01'",
    ),
    (
        "plan-ip-gateway.yaml",
        34,
        "groups[1].vms[0].nics[0].ip.ip",
        "10.2.2.1 is the gateway of network 'dr-app'",
    ),
    ("plan-ip-invalid.yaml", 34, "groups[1].vms[0].nics[0].ip.ip", "Input is not a valid IPv4 address"),
    (
        "plan-ip-network-address.yaml",
        34,
        "groups[1].vms[0].nics[0].ip.ip",
        "10.2.2.0 is the network address of subnet 10.2.2.0/24 of network 'dr-a",
    ),
    (
        "plan-ip-outside-subnet.yaml",
        34,
        "groups[1].vms[0].nics[0].ip.ip",
        "10.9.0.5 is outside subnet 10.2.2.0/24 of network 'dr-app'",
    ),
    (
        "plan-malformed-yaml.yaml",
        22,
        "",
        "invalid YAML: expected ',' or '}', but got ':' (while parsing a flow m",
    ),
    ("plan-memory.yaml", 29, "groups[1].vms[0].size.memory_mib", "Input should be a multiple of 4"),
    ("plan-missing-field.yaml", 12, "groups[0].vms[0].name", "required key is missing"),
    (
        "plan-missing-inventory.yaml",
        3,
        "inventory",
        "inventory file 'tests/data/plans/good/nope.yaml' not found",
    ),
    ("plan-missing-kind.yaml", 2, "", "missing header: 'kind: Inventory' or 'kind: RecoveryPlan'"),
    ("plan-same-site.yaml", 6, "target_site", "the target site is the source site"),
    (
        "plan-test-network-not-isolated.yaml",
        16,
        "groups[0].vms[0].nics[0].test_network",
        "test network 'shared' is not isolated: a drill there could reach produ",
    ),
    ("plan-test-ttl.yaml", 7, "test_ttl", "30d is out of range: must be between 10m and 14d"),
    (
        "plan-translation-outside.yaml",
        42,
        "groups[1].vms[1].nics[0].ip.from_cidr",
        "10.1.9.0/24 is outside subnet 10.1.2.0/24 of network 'prod-app'",
    ),
    (
        "plan-translation-prefix.yaml",
        42,
        "groups[1].vms[1].nics[0].ip",
        "subnet translation needs equal prefix lengths: 10.1.2.0/24 -> 10.2.2.0",
    ),
    ("plan-type-error.yaml", 29, "groups[1].vms[0].size.cpus", "Input should be a valid integer"),
    (
        "plan-unknown-dependency.yaml",
        28,
        "groups[1].vms[0].depends_on[0]",
        "'db-99' is not a VM of this plan",
    ),
    ("plan-unknown-key.yaml", 23, "groups[1].boot_dely", "unknown key 'boot_dely'"),
    (
        "plan-unknown-network.yaml",
        32,
        "groups[1].vms[0].nics[0].target_network",
        "network 'dr-ap' does not exist at site 'dr'",
    ),
    ("plan-unknown-site.yaml", 6, "target_site", "unknown site 'dr2'"),
    (
        "plan-unknown-source-network.yaml",
        14,
        "groups[0].vms[0].nics[0].source_network",
        "network 'dr-db' does not exist at site 'primary'",
    ),
    ("plan-vm-in-two-groups.yaml", 37, "groups[1].vms[1].name", "VM 'db-01' is already in group 'db'"),
    (
        "plan-vm-not-protected.yaml",
        37,
        "groups[1].vms[1].name",
        "VM 'app-09' is not protected in the inventory",
    ),
    (
        "plan-vm-wrong-source.yaml",
        37,
        "groups[1].vms[1].name",
        "VM 'ops-01' is protected from site 'dr', not from the plan's source si",
    ),
    (
        "plan-vm-wrong-target.yaml",
        37,
        "groups[1].vms[1].name",
        "VM 'web-01' is not replicated to site 'dr' (its target sites: aws)",
    ),
]


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths in messages are the paths as given; relative ones need a fixed working directory.
    monkeypatch.chdir(REPO)


def _prefix(name: str, line: int, field: str) -> str:
    where = f"{BROKEN / name}:{line}:"
    return f"{where} {field}: " if field else f"{where} "


def test_every_broken_file_is_in_the_table() -> None:
    on_disk = sorted(p.name for p in (REPO / BROKEN).glob("*.yaml"))
    assert on_disk == sorted(case[0] for case in BROKEN_CASES)
    assert len(on_disk) >= 25


@pytest.mark.parametrize(("name", "line", "field", "message"), BROKEN_CASES)
def test_broken_file_cli(name: str, line: int, field: str, message: str) -> None:
    result = CliRunner().invoke(app, ["plan", "check", str(BROKEN / name)])
    assert result.exit_code == 2, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # one defect per file, reported once, nothing else printed
    assert lines[0].startswith(_prefix(name, line, field) + message), lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(("name", "line", "field", "message"), BROKEN_CASES)
def test_broken_file_json(name: str, line: int, field: str, message: str) -> None:
    result = CliRunner().invoke(app, ["plan", "check", "--json", str(BROKEN / name)])
    assert result.exit_code == 2
    body = json.loads(result.stdout)
    assert body["ok"] is False
    assert body["errors"] == [
        {"file": str(BROKEN / name), "line": line, "field": field, "message": body["errors"][0]["message"]}
    ]
    assert body["errors"][0]["message"].startswith(message)


def _seawall() -> list[str]:
    script = Path(sys.executable).parent / "seawall"
    return [str(script)] if script.exists() else [sys.executable, "-m", "seawall.cli"]


def test_broken_files_real_process() -> None:
    """The installed console script, all broken files at once: sorted lines, exit 2, no traceback."""
    names = [case[0] for case in BROKEN_CASES]
    proc = subprocess.run(
        [*_seawall(), "plan", "check", *(str(BROKEN / name) for name in names)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ""
    assert "Traceback" not in proc.stdout
    lines = proc.stdout.splitlines()
    keys = [(line.split(":")[0], int(line.split(":")[1])) for line in lines]
    assert keys == sorted(keys)
    for name, line, field, message in BROKEN_CASES:
        assert any(got.startswith(_prefix(name, line, field) + message) for got in lines), name
    # Checked together, the broken plans (all named app-dr) also collide with each other: that is the
    # only kind of extra line.
    extra = [
        got for got in lines if not any(got.startswith(_prefix(n, ln, f) + m) for n, ln, f, m in BROKEN_CASES)
    ]
    assert extra and all(": name: plan 'app-dr' is already defined in " in got for got in extra)
    assert len(lines) == len(BROKEN_CASES) + len(extra)


def test_examples_pass_cli() -> None:
    assert len(EXAMPLES) >= 3
    result = CliRunner().invoke(app, ["plan", "check", *EXAMPLES])
    assert result.exit_code == 0, result.stdout
    for path in EXAMPLES:
        assert path in result.stdout
    assert "erp-dr" in result.stdout and "erp-aws" in result.stdout


def test_examples_pass_real_process() -> None:
    proc = subprocess.run(
        [*_seawall(), "plan", "check", "--json", *EXAMPLES],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == {"ok": True, "errors": []}


def test_good_files_pass() -> None:
    assert check_files([GOOD / "inventory.yaml", GOOD / "plan.yaml"]) == []
    assert check_files([GOOD / "plan.yaml"]) == []  # follows its inventory: key


def test_missing_file() -> None:
    result = CliRunner().invoke(app, ["plan", "check", "tests/data/plans/nope.yaml"])
    assert result.exit_code == 2
    assert result.stdout == "tests/data/plans/nope.yaml:1: file not found\n"


def test_directory_is_an_error() -> None:
    assert [str(e) for e in check_files([GOOD])] == [f"{GOOD}:1: is a directory, not a file"]


def test_inventory_errors_reported_once_for_many_plans(tmp_path: Path) -> None:
    inventory = (REPO / GOOD / "inventory.yaml").read_text().replace("interval: 5m", "interval: 5s")
    (tmp_path / "inventory.yaml").write_text(inventory)
    plan = (REPO / GOOD / "plan.yaml").read_text()
    (tmp_path / "a.yaml").write_text(plan)
    (tmp_path / "b.yaml").write_text(plan.replace("name: app-dr", "name: app-dr2"))
    errors = check_files([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert [(Path(e.file).name, e.field) for e in errors] == [("inventory.yaml", "policies[0].interval")]


def test_duplicate_plan_names_across_files(tmp_path: Path) -> None:
    plan = (
        (REPO / GOOD / "plan.yaml").read_text().replace("inventory.yaml", str(REPO / GOOD / "inventory.yaml"))
    )
    (tmp_path / "a.yaml").write_text(plan)
    (tmp_path / "b.yaml").write_text(plan)
    errors = check_files([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert len(errors) == 1
    assert errors[0].file.endswith("b.yaml") and errors[0].field == "name"
    assert "already defined" in errors[0].message


def test_inventory_option_overrides_and_single_inventory_is_found(tmp_path: Path) -> None:
    plan = (REPO / GOOD / "plan.yaml").read_text().replace("inventory: inventory.yaml\n", "")
    (tmp_path / "plan.yaml").write_text(plan)
    lone = check_files([tmp_path / "plan.yaml"])
    assert len(lone) == 1 and "no inventory" in lone[0].message and lone[0].line == 2  # first key
    assert check_files([tmp_path / "plan.yaml"], inventory=REPO / GOOD / "inventory.yaml") == []
    assert check_files([REPO / GOOD / "inventory.yaml", tmp_path / "plan.yaml"]) == []
    result = CliRunner().invoke(
        app, ["plan", "check", "--inventory", str(GOOD / "inventory.yaml"), str(tmp_path / "plan.yaml")]
    )
    assert result.exit_code == 0, result.stdout


def test_plan_given_as_inventory_is_an_error() -> None:
    errors = check_files([GOOD / "plan.yaml"], inventory=GOOD / "plan.yaml")
    assert any("it is a RecoveryPlan" in e.message for e in errors)


def test_inline_plans_in_inventory(tmp_path: Path) -> None:
    inventory = (REPO / GOOD / "inventory.yaml").read_text()
    plan_lines = (REPO / GOOD / "plan.yaml").read_text().splitlines()[3:]  # drop comment, kind, inventory
    inline = "plans:\n" + "\n".join(
        ("  - " if i == 0 else "    ") + line for i, line in enumerate(plan_lines)
    )
    (tmp_path / "inventory.yaml").write_text(inventory + inline.replace("10.2.2.11", "10.2.2.300") + "\n")
    errors = check_files([tmp_path / "inventory.yaml"])
    assert [e.field for e in errors] == ["plans[0].groups[1].vms[0].nics[0].ip.ip"]
    (tmp_path / "inventory.yaml").write_text(inventory + inline + "\n")
    report = check([tmp_path / "inventory.yaml"])
    assert report.ok and report.files[0].plans[0].name == "app-dr"


def test_errors_sorted_by_file_and_line() -> None:
    names = ["plan-unknown-key.yaml", "empty.yaml", "inventory-key-none.yaml"]
    errors = check_files([BROKEN / name for name in names])
    assert errors == sorted(errors)
    assert [Path(e.file).name for e in errors] == sorted(names)


def test_error_str_format() -> None:
    error = PlanError("plans/erp.yaml", 14, "groups[1].vms[0].ip", "10.9.0.5 is outside subnet 10.2.0.0/24")
    assert str(error) == "plans/erp.yaml:14: groups[1].vms[0].ip: 10.9.0.5 is outside subnet 10.2.0.0/24"
    assert str(PlanError("a.yaml", 1, "", "file is empty")) == "a.yaml:1: file is empty"


def test_load_inventory_makes_paths_absolute() -> None:
    inventory = load_inventory(REPO / "examples/inventory.yaml")
    primary = inventory.site("primary")
    assert isinstance(primary, VSphereSite)
    assert primary.credentials == f"file:{REPO}/.seawall/lab/credentials/primary.json"
    assert inventory.replica_store("local").location == str(REPO / ".seawall/lab/replica")
    assert inventory.policy("rpo-30s").key_ref == f"file:{REPO}/.seawall/lab/keys/replica.key"
    assert isinstance(inventory.site("aws"), AwsSite)
    assert inventory.dns_zone("corp.example.com").site == "aws"


def test_load_plan_follows_inventory_and_accepts_one() -> None:
    plan = load_plan(REPO / "examples/erp-dr.yaml")
    assert isinstance(plan, RecoveryPlan) and type(plan) is RecoveryPlan
    assert [g.name for g in plan.groups] == ["db", "app", "web"]
    assert isinstance(plan.pre_hooks[0], HttpHook)
    inventory = load_inventory(REPO / "examples/inventory.yaml")
    assert load_plan(REPO / "examples/erp-aws.yaml", inventory).target_site == "aws"
    assert type(inventory) is Inventory


def test_loaders_raise_located_errors() -> None:
    with pytest.raises(PlanValidationError) as caught:
        load_plan(BROKEN / "plan-ip-outside-subnet.yaml")
    assert [e.line for e in caught.value.errors] == [34]
    assert "10.9.0.5 is outside subnet" in str(caught.value)
    with pytest.raises(PlanValidationError) as caught:
        load_inventory(BROKEN / "inventory-interval-too-short.yaml")
    assert caught.value.errors[0].field == "policies[0].interval"
    with pytest.raises(PlanValidationError):
        load_plan(GOOD / "inventory.yaml")


def test_check_plan_on_models() -> None:
    """The semantic checks work on models too (plans arriving over the API, not from files)."""
    inventory = load_inventory(REPO / "examples/inventory.yaml")
    plan = load_plan(REPO / "examples/erp-dr.yaml", inventory)
    assert check_plan(plan, inventory) == []
    broken = plan.model_copy(update={"target_site": "aws"})
    fields = {problem.field for problem in check_plan(broken, inventory)}
    assert "groups[0].vms[0].nics[0].target_network" in fields


def test_aws_reserved_address_and_drill_addressing(tmp_path: Path) -> None:
    text = (
        (REPO / "examples/erp-aws.yaml")
        .read_text()
        .replace("inventory.yaml", str(REPO / "examples/inventory.yaml"))
    )
    (tmp_path / "reserved.yaml").write_text(text.replace("ip: 10.3.3.10}", "ip: 10.3.3.2}"))
    (errors,) = [check_files([tmp_path / "reserved.yaml"])]
    assert len(errors) == 1 and "reserved by AWS" in errors[0].message
    (tmp_path / "drill.yaml").write_text(text.replace(", test_ip: {kind: static, ip: 10.3.100.10}", ""))
    (error,) = check_files([tmp_path / "drill.yaml"])
    assert error.field == "groups[0].vms[0].nics[0].test_network" and "give test_ip" in error.message


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    for name in ("inventory-inline-secret.yaml", "plan-inline-secret.yaml", "inventory-url-credentials.yaml"):
        result = CliRunner().invoke(app, ["plan", "check", "--json", str(BROKEN / name)])
        for secret in ("AKIAIOSFODNN7EXAMPLE", "s3cr3t-t0ken-value", "hunter22"):
            assert secret not in result.stdout
    inventory = (
        (REPO / GOOD / "inventory.yaml")
        .read_text()
        .replace("credentials: file:credentials/aws.json", "credentials: 123456789")
    )
    (tmp_path / "inventory.yaml").write_text(inventory)
    (error,) = check_files([tmp_path / "inventory.yaml"])
    assert "123456789" not in str(error)


def test_yaml_anchor_and_merge_keys_work(tmp_path: Path) -> None:
    text = (REPO / GOOD / "inventory.yaml").read_text()
    text = text.replace(
        "protected_vms:\n  - {name: db-01, source_site: primary, policy: rpo-5m, replica_store: local, "
        "target_sites: [dr, aws]}",
        "protected_vms:\n  - &vm {name: db-01, source_site: primary, policy: rpo-5m, replica_store: local, "
        "target_sites: [dr, aws]}\n  - {<<: *vm, name: db-02}",
    )
    (tmp_path / "inventory.yaml").write_text(text)
    assert check_files([tmp_path / "inventory.yaml"]) == []


@pytest.mark.parametrize("kind", ["plan", "inventory"])
def test_schema(kind: str) -> None:
    result = CliRunner().invoke(app, ["plan", "schema", "--kind", kind])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert "kind" in schema["required"]
    assert ("groups" if kind == "plan" else "sites") in schema["properties"]


def test_schema_rejects_unknown_kind() -> None:
    result = CliRunner().invoke(app, ["plan", "schema", "--kind", "nope"])
    assert result.exit_code == 2


@pytest.mark.parametrize("path", [*EXAMPLES, str(GOOD / "inventory.yaml"), str(GOOD / "plan.yaml")])
def test_valid_files_match_the_emitted_schema(path: str) -> None:
    """Editors validate with the JSON Schema: it must accept what the checker accepts."""
    jsonschema = pytest.importorskip("jsonschema")  # installed with the dev extras (moto[server])
    import yaml

    data = yaml.safe_load((REPO / path).read_text())
    kind = "plan" if data["kind"] == "RecoveryPlan" else "inventory"
    schema = json.loads(CliRunner().invoke(app, ["plan", "schema", "--kind", kind]).stdout)
    jsonschema.validate(data, schema)
    data["unknown_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_cname_cannot_share_a_name(tmp_path: Path) -> None:
    text = (
        (REPO / GOOD / "plan.yaml").read_text().replace("inventory.yaml", str(REPO / GOOD / "inventory.yaml"))
    )
    text = text.replace(
        "{zone: corp.example.com, name: app-01.corp.example.com}",
        "{zone: corp.example.com, name: app-01.corp.example.com}\n"
        "          - {zone: corp.example.com, name: app-01.corp.example.com, type: CNAME,"
        " value: db.corp.example.com}",
    )
    (tmp_path / "plan.yaml").write_text(text)
    (error,) = check_files([tmp_path / "plan.yaml"])
    assert error.field == "groups[1].vms[0].dns[1].name"
    assert error.message == "'app-01.corp.example.com' already has an A record, set by VM 'app-01'"


@pytest.mark.timeout(20)
def test_alias_bombs_and_recursive_aliases_are_errors(tmp_path: Path) -> None:
    lines = ["kind: Inventory", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    (error,) = check_files([tmp_path / "bomb.yaml"])
    assert "aliases expand to more than" in error.message
    (tmp_path / "loop.yaml").write_text("kind: Inventory\nsites: &s [*s]\n")
    errors = check_files([tmp_path / "loop.yaml"])
    assert len(errors) == 1 and errors[0].message.startswith("invalid YAML")


def test_a_file_given_twice_is_checked_once() -> None:
    report = check([GOOD / "inventory.yaml", GOOD / "plan.yaml", f"{REPO}/{GOOD}/plan.yaml"])
    assert report.ok and [f.kind for f in report.files] == ["Inventory", "RecoveryPlan"]
    errors = check_files([BROKEN / "empty.yaml", BROKEN / "empty.yaml"])
    assert len(errors) == 1


def test_per_run_drill_networks_need_a_target_that_makes_networks() -> None:
    inventory = load_inventory(REPO / "examples/inventory.yaml")
    vsphere = load_plan(REPO / "examples/erp-dr.yaml", inventory)
    aws = load_plan(REPO / "examples/erp-aws.yaml", inventory)
    assert check_plan(vsphere.model_copy(update={"drill_network": "per-run"}), inventory) == []
    assert check_plan(aws, inventory) == []  # auto: aws makes none, its drills use test networks
    (problem,) = check_plan(aws.model_copy(update={"drill_network": "per-run"}), inventory)
    assert problem.field == "drill_network" and "'aws' is aws, which cannot" in problem.message
    assert vsphere.per_run_network(inventory.site("dr")) and not aws.per_run_network(inventory.site("aws"))


def _locked_inventory(tmp_path: Path, period: str, where: str = "s3") -> Path:
    text = (REPO / GOOD / "inventory.yaml").read_text()
    lock = "\n    object_lock: {mode: compliance, period: " + period + "}" if where == "s3" else ""
    extra = "    object_lock: {mode: compliance, period: " + period + "}\n" if where == "directory" else ""
    text = text.replace(
        "    path: replica\n",
        "    path: replica\n"
        + extra
        + "  - name: vault\n    kind: s3\n    bucket: seawall-vault"
        + lock
        + "\n",
    ).replace(
        "policy: rpo-5m, replica_store: local, target_sites: [dr, aws]}",
        "policy: rpo-5m, replica_store: vault, target_sites: [dr, aws]}",
        1,
    )
    (tmp_path / "inventory.yaml").write_text(text)
    plan = (REPO / GOOD / "plan.yaml").read_text()
    (tmp_path / "plan.yaml").write_text(plan)
    return tmp_path / "plan.yaml"


def test_object_lock_shorter_than_retention_is_refused(tmp_path: Path) -> None:
    # rpo-5m keeps 12 points at 5 minutes: one hour. A 59-minute lock leaves the oldest exposed.
    errors = check_files([_locked_inventory(tmp_path, "59m")])
    assert len(errors) == 1, errors
    assert errors[0].file.endswith("inventory.yaml") and errors[0].field == "protected_vms[0].replica_store"
    assert errors[0].message.startswith(
        "replica store 'vault' locks points for 59m, shorter than policy 'rpo-5m'"
    )
    assert "at least 1h" in errors[0].message
    result = CliRunner().invoke(app, ["plan", "check", str(tmp_path / "plan.yaml")])
    assert result.exit_code == 2 and "locks points for 59m" in result.stdout


def test_object_lock_covering_retention_passes_and_only_s3_can_lock(tmp_path: Path) -> None:
    assert check_files([_locked_inventory(tmp_path, "1h")]) == []
    errors = check_files([_locked_inventory(tmp_path, "2h", where="directory")])
    assert len(errors) == 1 and errors[0].field == "replica_stores[0].object_lock", errors


def test_protect_with_a_longer_policy_than_the_lock_is_refused_at_the_worker(tmp_path: Path) -> None:
    from temporalio.exceptions import ApplicationError

    from activities.protection import resolve_protection_for
    from seawall.contract.messages import ProtectInput

    _locked_inventory(tmp_path, "1h")
    path = tmp_path / "inventory.yaml"
    path.write_text(
        path.read_text().replace(
            "protected_vms:\n",
            "  - {name: keep-2d, interval: 5m, retention_hours: 48, key_ref: file:keys/replica.key}\n"
            "protected_vms:\n",
        )
    )
    inv = load_inventory(path)
    assert resolve_protection_for(inv, ProtectInput(vm="db-01")).store == "vault"
    with pytest.raises(ApplicationError) as refused:
        resolve_protection_for(inv, ProtectInput(vm="db-01", policy="keep-2d"))
    assert refused.value.type == "ObjectLockTooShort" and refused.value.non_retryable
    assert "locks points for 1h, shorter than policy 'keep-2d' keeps them (2d)" in str(refused.value)


@pytest.mark.parametrize(
    ("mirror", "message"),
    [
        ("local", "replica store 'local' cannot mirror to itself"),
        ("nowhere", "unknown replica store 'nowhere'"),
        ("far", "mirror 'far' has a mirror of its own"),
    ],
)
def test_bad_mirrors_are_refused(tmp_path: Path, mirror: str, message: str) -> None:
    text = (REPO / GOOD / "inventory.yaml").read_text()
    text = text.replace(
        "    path: replica\n",
        f"    path: replica\n    mirror: {mirror}\n"
        "  - name: far\n    kind: directory\n    path: far\n    mirror: local\n",
    )
    (tmp_path / "inventory.yaml").write_text(text)
    (tmp_path / "plan.yaml").write_text((REPO / GOOD / "plan.yaml").read_text())
    errors = [e for e in check_files([tmp_path / "plan.yaml"]) if e.field == "replica_stores[0].mirror"]
    assert len(errors) == 1 and message in errors[0].message, errors


def _mirrored_to_vault(tmp_path: Path, period: str, extra_policy: str = "") -> Path:
    """Every VM on the directory store 'local', mirrored to the locking S3 store 'vault'."""
    import yaml

    tmp_path.mkdir()
    plan = _locked_inventory(tmp_path, period)
    path = tmp_path / "inventory.yaml"
    if extra_policy:
        path.write_text(path.read_text().replace("protected_vms:\n", extra_policy + "protected_vms:\n"))
    data = yaml.safe_load(path.read_text())
    for store in data["replica_stores"]:
        if store["name"] == "local":
            store["mirror"] = "vault"
    for vm in data["protected_vms"]:
        vm["replica_store"] = "local"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return plan


def test_a_mirror_whose_lock_is_shorter_than_the_retention_is_refused(tmp_path: Path) -> None:
    """The mirror keeps the points the policy keeps: its own lock must cover them too."""
    from temporalio.exceptions import ApplicationError

    from activities.protection import resolve_protection_for
    from seawall.contract.messages import ProtectInput

    errors = check_files([_mirrored_to_vault(tmp_path / "short", "59m")])
    # Every VM on the store (each policy keeps at least an hour) is named, and only for the mirror.
    assert errors and [e.field for e in errors] == [
        f"protected_vms[{i}].replica_store" for i in range(len(errors))
    ]
    assert all(
        e.message.startswith("mirror 'vault' of replica store 'local' locks points for 59m") for e in errors
    ), errors
    # A --policy override the mirror's lock does not cover is refused at the worker.
    keep_2d = "  - {name: keep-2d, interval: 5m, retention_hours: 48, key_ref: file:keys/replica.key}\n"
    _mirrored_to_vault(tmp_path / "long", "1h", keep_2d)
    inv = load_inventory(tmp_path / "long" / "inventory.yaml")
    assert resolve_protection_for(inv, ProtectInput(vm="db-01")).store == "local"
    with pytest.raises(ApplicationError) as refused:
        resolve_protection_for(inv, ProtectInput(vm="db-01", policy="keep-2d"))
    assert refused.value.type == "ObjectLockTooShort"
    assert "mirror 'vault' of 'local' locks points for 1h" in str(refused.value)
