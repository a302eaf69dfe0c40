"""Lab configuration: contract names, saved config, ports and command lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.lab import bind, temporal, vsphere_spec
from seawall.lab import config as c


def test_default_vm_names() -> None:
    assert c.default_vm_names(5) == ["web-01", "web-02", "app-01", "app-02", "db-01"]
    assert c.default_vm_names(2) == ["web-01", "web-02"]
    assert c.default_vm_names(7)[5:] == ["vm-06", "vm-07"]
    with pytest.raises(ValueError):
        c.default_vm_names(0)


def test_resolve_saves_and_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(c.ENV_PORT_OFFSET, raising=False)
    cfg = c.resolve_config(tmp_path, vms=10, disk_size=8 * c.MIB)
    assert len(cfg.vms) == 10 and cfg.second_disk_vm == "db-01"
    c.save_config(tmp_path, cfg)
    again = c.resolve_config(tmp_path)
    assert again == cfg
    small = c.resolve_config(tmp_path, vms=2)
    assert small.vms == ["web-01", "web-02"] and small.second_disk_vm is None
    monkeypatch.setenv(c.ENV_PORT_OFFSET, "100")
    assert c.resolve_config(tmp_path).vcsim_dr_port == 9090


def test_guests_choice_is_kept(tmp_path: Path) -> None:
    assert c.resolve_config(tmp_path).guests == "running"
    c.save_config(tmp_path, c.resolve_config(tmp_path, guests="paused"))
    assert c.resolve_config(tmp_path).guests == "paused"
    assert c.resolve_config(tmp_path, guests="running").guests == "running"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"guests": "frozen"}', "guests: Input should be 'running' or 'paused'"),
        ('{"vms": []}', "vms: Value error, the lab needs at least one protected VM"),
        ('{"port_offset": ', "the file: Invalid JSON"),
    ],
)
def test_a_broken_saved_config_names_the_file_and_the_field(tmp_path: Path, text: str, words: str) -> None:
    c.config_path(tmp_path).write_text(text)
    with pytest.raises(c.LabConfigInvalid) as caught:
        c.resolve_config(tmp_path)
    assert str(caught.value).startswith(f"{c.config_path(tmp_path)}: {words}"), caught.value


def test_ports() -> None:
    cfg = c.LabConfig()
    assert (cfg.temporal_port, cfg.temporal_ui_port, cfg.vcsim_primary_port, cfg.vcsim_dr_port) == (
        7233,
        8233,
        8989,
        8990,
    )
    assert (cfg.moto_port, cfg.azurite_port, cfg.dns_port) == (5000, 10000, 8053)
    assert c.LabConfig(port_offset=200).dns_port == 8253


def test_disk_size_must_be_whole_regions() -> None:
    with pytest.raises(ValueError):
        c.LabConfig(disk_size=c.MIB + 512)


def test_state_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(c.ENV_STATE_DIR, str(tmp_path / "env"))
    assert c.state_dir(tmp_path / "flag") == tmp_path / "flag"
    assert c.state_dir() == tmp_path / "env"
    monkeypatch.delenv(c.ENV_STATE_DIR)
    assert c.state_dir().parts[-2:] == (".seawall", "lab")


def test_site_specs_contract(tmp_path: Path) -> None:
    specs = vsphere_spec.site_specs(tmp_path, c.LabConfig())
    primary, dr = specs["primary"], specs["dr"]
    assert (primary.datacenter, primary.datastore, primary.port) == ("dc-primary", "ds-primary", 8989)
    assert (dr.datacenter, dr.datastore, dr.port) == ("dc-dr", "ds-dr", 8990)
    assert primary.networks == ("prod-web", "prod-app", "prod-db")
    assert dr.all_networks() == ("dr-web", "dr-app", "dr-db", "drill")
    assert primary.datastore_dir == tmp_path / "vcsim" / "primary" / "ds"
    assert [primary.network_for(vm, i) for i, vm in enumerate(primary.vms)] == [
        "prod-web",
        "prod-web",
        "prod-app",
        "prod-app",
        "prod-db",
    ]
    assert primary.disk_count("db-01") == 2 and primary.disk_count("web-01") == 1


def test_temporal_command_line(tmp_path: Path) -> None:
    argv = temporal.argv(tmp_path, c.LabConfig())
    assert argv[1:3] == ["server", "start-dev"]
    joined = " ".join(argv)
    assert "--ip 127.0.0.1 --port 7233 --ui-port 8233" in joined
    assert f"--db-filename {tmp_path / 'temporal.db'}" in joined
    # A write-ahead log, synced at checkpoints: the lab's Temporal writes without a sync per commit.
    assert "--sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal" in joined
    # One partition per task queue: a one-process server gains nothing from four.
    assert "--dynamic-config-value matching.numTaskqueueReadPartitions=1" in joined
    assert "--dynamic-config-value matching.numTaskqueueWritePartitions=1" in joined
    for name in ("SeawallPlan", "SeawallVM", "SeawallSite", "SeawallMode", "SeawallRun", "SeawallRequest"):
        assert f"--search-attribute {name}=Keyword" in joined


def test_bind_files_key_made_once_zone_kept(tmp_path: Path) -> None:
    cfg = c.LabConfig(port_offset=200)
    conf = bind.prepare(tmp_path, cfg)
    assert "listen-on port 8253 { 127.0.0.1; };" in conf and "listen-on-v6 { none; };" in conf
    assert "controls { };" in conf, "no rndc channel: port 953 would be shared by every lab"
    assert "update-policy { grant seawall-lab. zonesub ANY; };" in conf
    key = bind.key_path(tmp_path)
    assert key.stat().st_mode & 0o077 == 0 and "algorithm hmac-sha256;" in key.read_text()
    zone = bind.dns_dir(tmp_path) / "corp.example.com.zone"
    assert (
        "web-01 IN A 10.1.1.21" in zone.read_text()
        and "erp IN CNAME web-01.corp.example.com." in zone.read_text()
    )
    # A second `up` keeps the key (holders of it keep working) and the zone (BIND's journal goes with it).
    first_key = key.read_text()
    zone.write_text(zone.read_text() + "; changed by named\n")
    assert bind.prepare(tmp_path, cfg) == conf
    assert key.read_text() == first_key and zone.read_text().endswith("; changed by named\n")
    info = bind.info(tmp_path, cfg)
    assert (info.port, info.zone, info.tsig_key_file) == (8253, "corp.example.com", key)
    assert first_key.split('"')[3] not in info.model_dump_json(), (
        "lab.json names the key file, not the secret"
    )


@pytest.mark.parametrize("verb", ["up", "status"])
def test_a_broken_saved_config_is_one_line_and_exit_2_from_the_cli(tmp_path: Path, verb: str) -> None:
    from typer.testing import CliRunner

    from seawall.cli import app

    c.config_path(tmp_path).write_text('{"guests": "frozen"}')
    result = CliRunner().invoke(app, ["lab", verb, "--state-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert f"{c.config_path(tmp_path)}: guests: Input should be 'running' or 'paused'" in lines[0]
    # Nothing was started for a lab whose config could not be read.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
