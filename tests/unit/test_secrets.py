"""Secret references: resolution at the worker, errors that name the reference only, redaction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from seawall.security.secrets import (
    ResolvedSecret,
    SecretError,
    redact,
    resolve,
    resolve_credentials,
    resolve_text,
)

PASSWORD = "correct-horse-battery"


def test_none_resolves_to_nothing() -> None:
    assert resolve("none") is None
    assert resolve_text("none") is None
    assert resolve_credentials("none") == {}


def test_env_reference() -> None:
    env = {"SEAWALL_TOKEN": PASSWORD + "\n"}
    assert resolve_text("env:SEAWALL_TOKEN", environ=env) == PASSWORD
    assert resolve_text("env:SEAWALL_TOKEN#k1", environ=env) == PASSWORD  # a key id is not part of the name


def test_env_reference_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAWALL_TEST_SECRET", PASSWORD)
    assert resolve_text("env:SEAWALL_TEST_SECRET") == PASSWORD


@pytest.mark.parametrize(("env", "problem"), [({}, "is not set"), ({"X_TOKEN": ""}, "is empty")])
def test_env_reference_missing_or_empty(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SecretError) as caught:
        resolve("env:X_TOKEN", environ=env)
    assert str(caught.value) == f"secret reference 'env:X_TOKEN': environment variable X_TOKEN {problem}"
    assert caught.value.ref == "env:X_TOKEN"


def test_file_reference_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "token").write_text(PASSWORD + "\n")
    assert resolve_text("file:creds/token", base_dir=tmp_path) == PASSWORD
    assert resolve_text(f"file:{tmp_path}/creds/token") == PASSWORD


def test_file_reference_raw_bytes(tmp_path: Path) -> None:
    key = bytes(range(200, 232))  # not UTF-8
    (tmp_path / "replica.key").write_bytes(key)
    secret = resolve("file:replica.key", base_dir=tmp_path)
    assert secret is not None and secret.raw == key
    with pytest.raises(SecretError, match="not UTF-8"):
        secret.text()


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        (lambda d: None, "does not exist"),
        (lambda d: (d / "f").mkdir(), "is a directory"),
        (lambda d: (d / "f").write_text("  \n"), "is empty"),
    ],
)
def test_file_reference_problems(tmp_path: Path, setup: object, problem: str) -> None:
    setup(tmp_path)  # type: ignore[operator]
    with pytest.raises(SecretError) as caught:
        resolve("file:f", base_dir=tmp_path)
    assert problem in str(caught.value) and "'file:f'" in str(caught.value)


def test_file_reference_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file this process may not read. Root reads any file (and this suite runs as root in CI), so
    there the kernel's answer is stood in for: the error the OS gives a service account."""
    (tmp_path / "f").write_text(PASSWORD)
    (tmp_path / "f").chmod(0)
    if os.geteuid() == 0:

        def denied(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(SecretError, match="not readable") as caught:
        resolve("file:f", base_dir=tmp_path)
    assert PASSWORD not in str(caught.value)


def test_credentials_json(tmp_path: Path) -> None:
    (tmp_path / "dr.json").write_text(json.dumps({"user": "user", "password": PASSWORD}))
    creds = resolve_credentials("file:dr.json", base_dir=tmp_path, required=["user", "password"])
    assert creds == {"user": "user", "password": PASSWORD}
    env = {"AWS_CREDS": json.dumps({"aws_access_key_id": "AKIA", "aws_secret_access_key": PASSWORD})}
    assert resolve_credentials("env:AWS_CREDS", environ=env)["aws_secret_access_key"] == PASSWORD


def test_credentials_errors_never_show_values(tmp_path: Path) -> None:
    (tmp_path / "raw").write_text(PASSWORD)
    with pytest.raises(SecretError) as caught:
        resolve_credentials("file:raw", base_dir=tmp_path)
    assert "not valid JSON (line 1, column 1)" in str(caught.value) and PASSWORD not in str(caught.value)

    (tmp_path / "list.json").write_text(json.dumps([PASSWORD]))
    with pytest.raises(SecretError, match="expected a JSON object, found a JSON list") as caught:
        resolve_credentials("file:list.json", base_dir=tmp_path)
    assert PASSWORD not in str(caught.value)

    (tmp_path / "partial.json").write_text(json.dumps({"user": "u", "password": ""}))
    with pytest.raises(SecretError) as caught:
        resolve_credentials("file:partial.json", base_dir=tmp_path, required=["user", "password"])
    assert "missing key(s) password (present: password, user)" in str(caught.value)

    with pytest.raises(SecretError, match="required here"):
        resolve_credentials("none", required=["user"])


def test_malformed_reference_is_not_echoed() -> None:
    with pytest.raises(SecretError) as caught:
        resolve(PASSWORD)
    assert PASSWORD not in str(caught.value)
    assert "not a secret reference" in str(caught.value)


def test_resolved_secret_repr_hides_the_value() -> None:
    secret = ResolvedSecret("env:X", PASSWORD.encode())
    assert PASSWORD not in repr(secret) and "env:X" in repr(secret)


def test_redact() -> None:
    text = f"login user=admin password={PASSWORD} failed; retry with {PASSWORD}"
    assert redact(text, [PASSWORD]) == "login user=admin password=*** failed; retry with ***"
    assert redact("a pin 123 here", ["123"]) == "a pin 123 here"  # too short to mask safely
    assert redact("nothing", [None, ""]) == "nothing"


def test_redact_overlapping_longest_first() -> None:
    assert redact("abcdefgh", ["abcd", "abcdefgh"]) == "***"


def test_redact_resolved_json_secret() -> None:
    secret = ResolvedSecret(
        "env:C", json.dumps({"user": "operator", "password": PASSWORD, "n": [PASSWORD + "2"]}).encode()
    )
    text = f"connect operator:{PASSWORD} and {PASSWORD}2"
    assert redact(text, [secret]) == "connect ***:*** and ***"
    assert PASSWORD not in redact(json.dumps({"user": "operator", "password": PASSWORD}), [secret])
