"""Key references (file:/env:, raw/hex/base64), key ids, the key ring."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from seawall.blockstore.keys import KeyMaterial, KeyRefError, KeyRing, load_key

RAW = bytes(range(32))


@pytest.mark.parametrize("content", [RAW, RAW.hex().encode() + b"\n", base64.b64encode(RAW) + b"\n"])
def test_file_ref_accepts_raw_hex_and_base64(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "key"
    p.write_bytes(content)
    k = load_key(f"file:{p}")
    assert k.key == RAW
    assert k.key_id.startswith("k-")
    # The default id is derived from the key: two workers loading the same bytes agree.
    assert load_key(f"file:{p}").key_id == k.key_id


def test_env_ref_and_explicit_key_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAWALL_TEST_KEY", base64.b64encode(RAW).decode())
    k = load_key("env:SEAWALL_TEST_KEY#prod-2026")
    assert k.key == RAW and k.key_id == "prod-2026"
    monkeypatch.setenv("SEAWALL_TEST_KEY", RAW.hex())
    assert load_key("env:SEAWALL_TEST_KEY").key == RAW


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nothing", "must look like"),
        ("s3:bucket/key", "unknown scheme"),
        ("env:SEAWALL_UNSET_VARIABLE_X", "is not set"),
        ("file:/nonexistent/seawall/key", "cannot be read"),
    ],
)
def test_bad_refs_say_why(ref: str, message: str) -> None:
    with pytest.raises(KeyRefError, match=message):
        load_key(ref)


def test_wrong_length_key_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "short"
    p.write_bytes(base64.b64encode(bytes(16)))
    with pytest.raises(KeyRefError, match="16 bytes"):
        load_key(f"file:{p}")
    with pytest.raises(KeyRefError):
        KeyMaterial("x", bytes(31))


def test_subkeys_and_fingerprints_are_distinct() -> None:
    a, b = KeyMaterial("a", RAW), KeyMaterial("b", bytes(32))
    assert a.fingerprint != b.fingerprint
    assert len({a.id_key, a.enc_key, a.mac_key}) == 3
    assert "key=" not in repr(a).replace("key_id=", "")  # the key bytes never show in logs


def test_key_ring(tmp_path: Path) -> None:
    p = tmp_path / "k"
    p.write_bytes(RAW)
    ring = KeyRing(KeyMaterial.generate("old"))
    k = ring.add_ref(f"file:{p}#new")
    assert ring.ids() == ["new", "old"] and "new" in ring and len(ring) == 2
    assert ring.get("new") == k and ring.get("missing") is None


def test_package_exports_resolve_lazily() -> None:
    import seawall.blockstore as bs

    for name in bs.__all__:
        assert getattr(bs, name) is not None
    with pytest.raises(AttributeError):
        bs.nothing_here  # noqa: B018
