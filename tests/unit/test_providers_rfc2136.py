"""The RFC 2136 provider's logic against an in-process zone that applies UPDATE semantics.

``FakeZone`` decodes each message from its wire form with the key (so a wrong key fails as at a real
server), checks prerequisites and applies updates as RFC 2136 sections 3.2 and 3.4 say, including
the silent refusal to put a CNAME beside other data. The real server is tested in
tests/integration/test_dns_rfc2136.py.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest

from seawall.model import Rfc2136Zone
from seawall.security.secrets import SecretError
from seawall.sites.dns import DnsConflictError, DnsError, DnsProvider, DnsRecordSet, sidecar_name
from seawall.sites.rfc2136 import DnsAuthError, Rfc2136Dns, parse_tsig_key

ZONE = "corp.example.com"
SECRET = base64.b64encode(bytes(range(32))).decode()
KEY = dns.tsig.Key("seawall-lab.", SECRET)
Records = dict[tuple[str, str], tuple[int, frozenset[str]]]


class FakeZone:
    """One authoritative zone; ``records`` maps (name, type) to (ttl, values)."""

    def __init__(self, records: Records | None = None, *, authoritative: bool = True) -> None:
        self.records: Records = dict(records or {})
        self.authoritative = authoritative
        self.updates = 0
        self.before_update: Callable[[], None] | None = None  # runs once, as a concurrent writer would

    def __call__(self, message: dns.message.Message, where: str, *, port: int, timeout: float) -> object:
        assert (where, port) == ("127.0.0.1", 5353)
        wire = message.to_wire()
        try:
            request = dns.message.from_wire(wire, keyring={KEY.name: KEY})
        except (dns.tsig.BadSignature, dns.message.UnknownTSIGKey):
            # A server answers NOTAUTH with a TSIG error, which dnspython raises as this at the client.
            raise dns.tsig.PeerBadSignature from None
        response = dns.message.make_response(request)
        if request.opcode() == dns.opcode.UPDATE:
            self.updates += 1
            if self.before_update is not None:
                hook, self.before_update = self.before_update, None
                hook()
            response.set_rcode(self._update(request))
        else:
            self._answer(request, response)
        # Through the wire as dns.query does: signed by the server, verified against the request.
        return dns.message.from_wire(response.to_wire(), keyring=message.keyring, request_mac=message.mac)

    def _names(self) -> set[str]:
        return {name for name, _ in self.records}

    def _answer(self, request: dns.message.Message, response: dns.message.Message) -> None:
        if self.authoritative:
            response.flags |= dns.flags.AA
        question = request.question[0]
        name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        if name not in self._names():
            response.set_rcode(dns.rcode.NXDOMAIN)
            return
        if (name, rdtype) in self.records:
            ttl, values = self.records[(name, rdtype)]
            response.answer.append(dns.rrset.from_text_list(name, ttl, "IN", rdtype, sorted(values)))

    def _update(self, request: dns.message.Message) -> dns.rcode.Rcode:
        wanted: dict[tuple[str, str], set[str]] = {}
        for rrset in request.sections[1]:  # prerequisites
            name, rdtype = rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)
            in_use = name in self._names()
            if rrset.deleting == dns.rdataclass.ANY:
                exists = in_use if rdtype == "ANY" else (name, rdtype) in self.records
                if not exists:
                    return dns.rcode.NXDOMAIN if rdtype == "ANY" else dns.rcode.NXRRSET
            elif rrset.deleting == dns.rdataclass.NONE:
                exists = in_use if rdtype == "ANY" else (name, rdtype) in self.records
                if exists:
                    return dns.rcode.YXDOMAIN if rdtype == "ANY" else dns.rcode.YXRRSET
            else:
                wanted.setdefault((name, rdtype), set()).update(r.to_text() for r in rrset)
        for key, values in wanted.items():
            if key not in self.records or self.records[key][1] != frozenset(values):
                return dns.rcode.NXRRSET
        for rrset in request.sections[2]:  # updates, in order
            name, rdtype = rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)
            if rrset.deleting == dns.rdataclass.ANY:
                self.records.pop((name, rdtype), None)
            elif rrset.deleting is None:
                types = {t for n, t in self.records if n == name}
                if (rdtype == "CNAME" and types - {"CNAME"}) or (rdtype != "CNAME" and "CNAME" in types):
                    continue  # RFC 2136 3.4.2.2: ignored, not refused
                _, old = self.records.get((name, rdtype), (0, frozenset()))
                self.records[(name, rdtype)] = (rrset.ttl, old | {r.to_text() for r in rrset})
        return dns.rcode.NOERROR

    def value(self, name: str, rdtype: str = "A") -> tuple[int, frozenset[str]] | None:
        return self.records.get((name + ".", rdtype))

    def set(self, name: str, rdtype: str, ttl: int, *values: str) -> None:
        self.records[(name + ".", rdtype)] = (ttl, frozenset(values))


def provider(zone: FakeZone, key: dns.tsig.Key = KEY) -> Rfc2136Dns:
    return Rfc2136Dns("127.0.0.1", key, port=5353, query=zone)


def fqdn(label: str) -> str:
    return f"{label}.{ZONE}"


def test_is_a_dns_provider() -> None:
    # The recovery activity holds it as the protocol; mypy checks this assignment.
    dns_provider: DnsProvider = provider(FakeZone())
    assert dns_provider.get(ZONE, fqdn("web-01"), "A") is None


def test_new_record_is_created_then_deleted_on_restore() -> None:
    zone = FakeZone()
    dns_provider = provider(zone)
    change = dns_provider.upsert(ZONE, fqdn("web-01"), "A", ["10.2.1.21"], 60)
    assert change.previous is None
    assert zone.value(fqdn("web-01")) == (60, frozenset({"10.2.1.21"}))
    assert zone.value(sidecar_name(fqdn("web-01"), "A"), "TXT") == (
        60,
        frozenset({'"seawall-prev v1 absent set=10.2.1.21"'}),
    )
    # The activity crashed before recording the change: the retry is a no-op that returns it again.
    updates = zone.updates
    assert dns_provider.upsert(ZONE, fqdn("web-01"), "A", ["10.2.1.21"], 60) == change
    assert zone.updates == updates

    assert dns_provider.restore(change) is None
    assert zone.records == {}
    assert dns_provider.restore(change) is None, "restoring twice is a no-op"


def test_existing_record_keeps_the_value_from_before_the_first_change() -> None:
    zone = FakeZone()
    zone.set(fqdn("db"), "A", 300, "10.1.3.10")
    dns_provider = provider(zone)
    original = DnsRecordSet(fqdn("db"), "A", 300, ("10.1.3.10",))
    first = dns_provider.upsert(ZONE, fqdn("DB") + ".", "A", ["10.2.3.10"], 60)
    assert first.previous == original and first.name == fqdn("db")
    # A second failover (another target) still goes back to the production value.
    second = dns_provider.upsert(ZONE, fqdn("db"), "A", ["10.3.3.10", "10.3.3.11"], 30)
    assert second.previous == original
    assert zone.value(fqdn("db")) == (30, frozenset({"10.3.3.10", "10.3.3.11"}))
    assert dns_provider.restore(second) == original
    assert set(zone.records) == {(fqdn("db") + ".", "A")}
    assert zone.value(fqdn("db")) == (300, frozenset({"10.1.3.10"}))


def test_cname_values_are_absolute_and_clashes_are_errors() -> None:
    zone = FakeZone()
    zone.set(fqdn("erp"), "CNAME", 300, fqdn("web-01") + ".")
    zone.set(fqdn("web-02"), "A", 300, "10.1.1.22")
    dns_provider = provider(zone)
    change = dns_provider.upsert(ZONE, fqdn("erp"), "CNAME", [fqdn("web-02")], 60)
    assert change.new.values == (fqdn("web-02") + ".",)
    assert change.previous == DnsRecordSet(fqdn("erp"), "CNAME", 300, (fqdn("web-01") + ".",))
    with pytest.raises(DnsError, match="is a CNAME: it cannot hold an A record"):
        dns_provider.upsert(ZONE, fqdn("erp"), "A", ["10.2.1.1"], 60)
    with pytest.raises(DnsError, match="already holds other records"):
        dns_provider.upsert(ZONE, fqdn("web-02"), "CNAME", [fqdn("web-01")], 60)
    assert zone.value(fqdn("web-02")) == (300, frozenset({"10.1.1.22"}))
    assert dns_provider.restore(change) == change.previous


def test_restore_leaves_a_record_someone_else_changed_unless_forced() -> None:
    zone = FakeZone()
    dns_provider = provider(zone)
    change = dns_provider.upsert(ZONE, fqdn("app-01"), "A", ["10.2.2.11"], 60)
    zone.set(fqdn("app-01"), "A", 60, "10.9.9.9")
    with pytest.raises(DnsConflictError, match=r"now holds 10\.9\.9\.9"):
        dns_provider.restore(change)
    assert zone.value(fqdn("app-01")) == (60, frozenset({"10.9.9.9"}))
    assert dns_provider.restore(change, force=True) is None
    assert zone.records == {}


def test_a_concurrent_change_between_read_and_update_is_read_again() -> None:
    zone = FakeZone()
    zone.set(fqdn("web-01"), "A", 300, "10.1.1.21")
    dns_provider = provider(zone)
    # Another writer changes the record after Seawall read it: the prerequisite catches it, and the
    # value recorded as "previous" is the one really there before Seawall's change.
    zone.before_update = lambda: zone.set(fqdn("web-01"), "A", 120, "10.1.1.99")
    change = dns_provider.upsert(ZONE, fqdn("web-01"), "A", ["10.2.1.21"], 60)
    assert change.previous == DnsRecordSet(fqdn("web-01"), "A", 120, ("10.1.1.99",))
    assert zone.updates == 2
    zone.before_update = lambda: zone.set(fqdn("web-01"), "A", 60, "10.7.7.7")
    with pytest.raises(DnsConflictError, match=r"10\.7\.7\.7"):
        dns_provider.restore(change)


def test_wrong_key_and_refusals_are_auth_errors() -> None:
    zone = FakeZone()
    wrong = dns.tsig.Key("seawall-lab.", base64.b64encode(b"x" * 32).decode())

    def bad_signature(message: dns.message.Message, where: str, **_: object) -> object:
        raise dns.tsig.PeerBadSignature

    with pytest.raises(DnsAuthError, match="BADSIG"):
        Rfc2136Dns("127.0.0.1", wrong, port=5353, query=bad_signature).get(ZONE, fqdn("a"), "A")
    # The fake, like a server, cannot verify the request: nothing is read, nothing changes.
    with pytest.raises(DnsAuthError, match=r"refused TSIG key seawall-lab\. \(BADSIG"):
        provider(zone, wrong).upsert(ZONE, fqdn("a"), "A", ["10.0.0.1"], 60)
    assert zone.records == {} and zone.updates == 0

    def refused(message: dns.message.Message, where: str, **_: object) -> object:
        response = dns.message.make_response(message)
        response.set_rcode(dns.rcode.REFUSED)
        return response

    with pytest.raises(DnsAuthError, match="refused"):
        Rfc2136Dns("127.0.0.1", KEY, query=refused).upsert(ZONE, fqdn("a"), "A", ["10.0.0.1"], 60)


def test_transport_failures_and_a_non_authoritative_server_are_dns_errors() -> None:
    def timeout(message: dns.message.Message, where: str, **_: object) -> object:
        raise dns.exception.Timeout

    def closed(message: dns.message.Message, where: str, **_: object) -> object:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(DnsError, match="did not answer within 10s"):
        Rfc2136Dns("127.0.0.1", KEY, query=timeout).get(ZONE, fqdn("a"), "A")
    with pytest.raises(DnsError, match="unreachable"):
        Rfc2136Dns("127.0.0.1", KEY, query=closed).get(ZONE, fqdn("a"), "A")
    resolver = FakeZone(authoritative=False)
    resolver.set(fqdn("a"), "A", 60, "10.0.0.1")
    with pytest.raises(DnsError, match="not authoritative"):
        provider(resolver).get(ZONE, fqdn("a"), "A")
    with pytest.raises(DnsError, match="outside zone"):
        provider(FakeZone()).upsert(ZONE, "web-01.example.org", "A", ["10.0.0.1"], 60)


BIND_KEY_FILE = f"""key "other-key" {{
\talgorithm hmac-sha512;
\tsecret "{base64.b64encode(b"o" * 64).decode()}";
}};
key "seawall-lab" {{
\talgorithm hmac-sha256;
\tsecret "{SECRET}";
}};
"""


def test_parse_tsig_key_bare_secret_and_bind_key_file() -> None:
    bare = parse_tsig_key(SECRET + "\n", "seawall-lab", "hmac-sha256")
    from_file = parse_tsig_key(BIND_KEY_FILE, "seawall-lab.", "hmac-sha256")
    for key in (bare, from_file):
        assert key.name == dns.name.from_text("seawall-lab.")
        assert key.secret == bytes(range(32))
        assert key.algorithm == dns.tsig.HMAC_SHA256
    assert parse_tsig_key(BIND_KEY_FILE, "other-key", "hmac-sha512").algorithm == dns.tsig.HMAC_SHA512


def test_parse_tsig_key_errors_name_the_reference_never_the_secret() -> None:
    has = r"no key named nope\. in it \(it has: other-key\., seawall-lab\.\)"
    with pytest.raises(SecretError, match=has):
        parse_tsig_key(BIND_KEY_FILE, "nope", "hmac-sha256", ref="file:/k")
    with pytest.raises(SecretError, match=r"other-key\. is hmac-sha512, but the zone says hmac-sha256"):
        parse_tsig_key(BIND_KEY_FILE, "other-key", "hmac-sha256", ref="file:/k")
    typo = SECRET[:-3] + "!!="
    with pytest.raises(SecretError, match="not a base64 TSIG secret") as caught:
        parse_tsig_key(typo, "seawall-lab", "hmac-sha256", ref="env:TSIG")
    assert typo not in str(caught.value) and "env:TSIG" in str(caught.value)


def test_from_zone_resolves_the_key_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "tsig.key"
    key_file.write_text(BIND_KEY_FILE)
    zone = Rfc2136Zone(
        name=ZONE, server="127.0.0.1", port=5353, tsig_key_name="seawall-lab", credentials=f"file:{key_file}"
    )
    built = Rfc2136Dns.from_zone(zone)
    assert (built.server, built.port, built.key.secret) == ("127.0.0.1", 5353, bytes(range(32)))
    monkeypatch.setenv("SEAWALL_TEST_TSIG", SECRET)
    by_env = Rfc2136Dns.from_zone(zone.model_copy(update={"credentials": "env:SEAWALL_TEST_TSIG"}))
    assert by_env.key.secret == bytes(range(32))
    monkeypatch.delenv("SEAWALL_TEST_TSIG")
    with pytest.raises(SecretError, match="SEAWALL_TEST_TSIG is not set"):
        Rfc2136Dns.from_zone(zone.model_copy(update={"credentials": "env:SEAWALL_TEST_TSIG"}))
