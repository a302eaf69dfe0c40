"""The lab's authoritative DNS server: BIND 9 (Debian's ``bind9``) serving the lab zone on 127.0.0.1.

It is what most data centres run, so the RFC 2136 provider is tested against the real thing. named
starts in ~60 ms here, so nothing lighter (Knot) was needed. Everything lives in ``<state>/dns``:

- ``named.conf``: written on every `lab up` (its text is part of the part's fingerprint, so a
  changed config restarts named); no rndc control channel (``controls {}``: port 953 would be
  shared by every lab on the machine), no recursion, no pid file outside the state dir.
- ``tsig.key``: a ``key`` clause in tsig-keygen's format (hmac-sha256), made once per lab and kept:
  the only credential that may update the zone (``update-policy``), and what inventories reference
  (``file:``) for the provider.
- ``<zone>.zone``: the zone as seeded, written only when missing. named keeps dynamic updates in its
  journal (``.jnl``) beside it, so a restarted named serves the zone as it was, not as seeded.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
from pathlib import Path

from seawall.lab import config as c
from seawall.lab.info import DnsInfo

__all__ = [
    "argv",
    "check",
    "dns_dir",
    "info",
    "key_path",
    "named_binary",
    "ping",
    "prepare",
    "seed_records",
]

# A record's production value, before any failover: what the ERP plan (examples/erp-dr.yaml) changes.
# The addresses are the ones the lab gives the primary VMs (seawall.lab.vsphere_spec.production_ip).
_SEED = {
    "web-01": "10.1.1.21",
    "web-02": "10.1.1.22",
    "app-01": "10.1.2.11",
    "app-02": "10.1.2.12",
    "db-01": "10.1.3.10",
    "db": "10.1.3.10",
    "erp": "web-01",  # CNAME: users type erp, which follows web-01
}


def dns_dir(state: Path) -> Path:
    return state / "dns"


def key_path(state: Path) -> Path:
    return dns_dir(state) / "tsig.key"


def conf_path(state: Path) -> Path:
    return dns_dir(state) / "named.conf"


def zone_path(state: Path) -> Path:
    return dns_dir(state) / f"{c.DNS_ZONE.removesuffix('.')}.zone"


def named_binary() -> Path | None:
    # /usr/sbin is not on every user's PATH, and Debian puts named there.
    found = shutil.which("named") or ("/usr/sbin/named" if os.access("/usr/sbin/named", os.X_OK) else None)
    return Path(found) if found else None


def argv(state: Path) -> list[str]:
    binary = named_binary()
    if binary is None:
        raise FileNotFoundError(
            "BIND is not installed (no named): run scripts/setup.sh (apt-get install bind9)"
        )
    # -g: foreground, log to stderr (our log file); -4: the lab is IPv4 loopback only.
    return [str(binary), "-g", "-4", "-c", str(conf_path(state))]


def seed_records() -> dict[str, str]:
    """Fully qualified name (no trailing dot) -> value; CNAME values are fully qualified too."""
    zone = c.DNS_ZONE.removesuffix(".")
    records = {}
    for label, value in _SEED.items():
        is_address = re.fullmatch(r"[\d.]+", value) is not None
        records[f"{label}.{zone}"] = value if is_address else f"{value}.{zone}"
    return records


def _key_secret(state: Path, *, create: bool = False) -> str:
    """The TSIG secret (base64), from the key file; made once: a new one would lock out every holder."""
    path = key_path(state)
    if path.exists():
        match = re.search(r'secret\s+"([^"]+)"', path.read_text())
        if match:
            return match.group(1)
    if not create:
        raise FileNotFoundError(f"no TSIG key in {path}: run `seawall lab up`")
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f'key "{c.TSIG_KEY_NAME}" {{\n\talgorithm {c.TSIG_ALGORITHM};\n\tsecret "{secret}";\n}};\n')
    os.replace(tmp, path)
    return secret


def _zone_text() -> str:
    zone = c.DNS_ZONE
    lines = [
        "$TTL 300",
        # serial 1: named bumps it on every dynamic update (and keeps it in the journal).
        f"@ IN SOA ns.{zone} hostmaster.{zone} 1 3600 600 86400 60",
        f"@ IN NS ns.{zone}",
        f"ns IN A {c.HOST}",
    ]
    for name, value in seed_records().items():
        label = name.removesuffix("." + zone.removesuffix("."))
        if re.fullmatch(r"[\d.]+", value):
            lines.append(f"{label} IN A {value}")
        else:
            lines.append(f"{label} IN CNAME {value}.")
    return "\n".join(lines) + "\n"


def _conf_text(state: Path, cfg: c.LabConfig) -> str:
    directory = dns_dir(state)
    zone = c.DNS_ZONE.removesuffix(".")
    return f"""// Written by `seawall lab up`; changes are overwritten.
options {{
\tdirectory "{directory}";
\tlisten-on port {cfg.dns_port} {{ {c.HOST}; }};
\tlisten-on-v6 {{ none; }};
\tpid-file none;
\tsession-keyfile none;
\tmanaged-keys-directory "{directory}";
\tdump-file "{directory}/named_dump.db";
\tstatistics-file "{directory}/named.stats";
\trecursion no;
\tdnssec-validation no;
\tnotify no;
\tallow-transfer {{ none; }};
}};
controls {{ }};
include "{key_path(state)}";
zone "{zone}" {{
\ttype primary;
\tfile "{zone_path(state)}";
\t// Only the key may change the zone, any name in it (RFC 2136 with TSIG, RFC 8945).
\tupdate-policy {{ grant {c.TSIG_KEY_NAME} zonesub ANY; }};
}};
"""


def prepare(state: Path, cfg: c.LabConfig) -> str:
    """Write the key (once), the config (always) and the zone (when missing); returns the config text."""
    dns_dir(state).mkdir(parents=True, exist_ok=True)
    _key_secret(state, create=True)
    text = _conf_text(state, cfg)
    c.write_text_atomic(conf_path(state), text)
    if not zone_path(state).exists():
        c.write_text_atomic(zone_path(state), _zone_text())
    return text


def info(state: Path, cfg: c.LabConfig) -> DnsInfo:
    return DnsInfo(
        server=c.HOST,
        port=cfg.dns_port,
        zone=c.DNS_ZONE.removesuffix("."),
        tsig_key_name=c.TSIG_KEY_NAME,
        tsig_algorithm=c.TSIG_ALGORITHM,
        tsig_key_file=key_path(state),
        zone_file=zone_path(state),
        records=seed_records(),
    )


def _soa(state: Path, cfg: c.LabConfig, *, signed: bool) -> str:
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
    import dns.tsig

    query = dns.message.make_query(c.DNS_ZONE, "SOA")
    if signed:
        query.use_tsig(dns.tsig.Key(c.TSIG_KEY_NAME, _key_secret(state), c.TSIG_ALGORITHM))
    answer = dns.query.udp(query, c.HOST, port=cfg.dns_port, timeout=2)
    if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
        raise RuntimeError(f"BIND answers {dns.rcode.to_text(answer.rcode())} for the SOA of {c.DNS_ZONE}")
    if not answer.flags & dns.flags.AA:
        raise RuntimeError(f"BIND is not authoritative for {c.DNS_ZONE} (zone not loaded?)")
    return str(answer.answer[0][0].serial)


def ping(state: Path, cfg: c.LabConfig) -> str:
    return f"BIND serves {c.DNS_ZONE} (serial {_soa(state, cfg, signed=False)})"


def check(state: Path, cfg: c.LabConfig) -> str:
    # A signed query proves the server holds the lab's key: updates signed with it will be accepted.
    serial = _soa(state, cfg, signed=True)
    return f"zone {c.DNS_ZONE.removesuffix('.')} serial {serial}, TSIG key {c.TSIG_KEY_NAME} accepted"
