"""kms: keys on the lab's moto KMS: envelope encryption, rotation end to end, a disabled key.

Each test creates its own KMS key and an S3 prefix of its own in the lab's bucket.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from seawall.blockstore.envelope import CURRENT_KEY, KmsKeys
from seawall.blockstore.keys import KeyRefError
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.s3 import S3Store
from seawall.cli import app
from seawall.lab import LabInfo
from seawall.model import ReplicationPolicy
from seawall.sites.replica import open_keys
from tests.datapath_scenario import BytesSource

pytestmark = pytest.mark.lab

MiB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def aws_env(lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> LabInfo:
    for k, v in lab.env().items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    return lab


@pytest.fixture
def kms_key(aws_env: LabInfo) -> str:
    client = boto3.client("kms")
    return str(client.create_key(Description="seawall test")["KeyMetadata"]["Arn"])


@pytest.fixture
def store(aws_env: LabInfo) -> Iterator[S3Store]:
    lab = aws_env
    s = S3Store(
        lab.s3.bucket,
        f"test-kms/{uuid.uuid4().hex[:12]}",
        endpoint_url=lab.s3.endpoint_url,
        region=lab.s3.region,
        access_key_id=lab.s3.access_key_id,
        secret_access_key=lab.s3.secret_access_key,
    )
    yield s
    for k in list(s.list()):
        s.delete(k)


def _policy(ref: str) -> ReplicationPolicy:
    return ReplicationPolicy(name="p", interval="5m", retention_count=3, key_ref=ref)  # type: ignore[arg-type]


def _open(store: S3Store, kms_key: str) -> Repository:
    key, ring = open_keys(store, _policy("kms:" + kms_key))
    return Repository(store, key, ring=ring, pack_target=256 * 1024)


def _ship(repo: Repository, data: bytes, point_id: str) -> Any:
    shipped = repo.ship(BytesSource(data), "vm-a", "disk0")
    return repo.commit_point("vm-a", point_id, [shipped])


def _inventory(tmp_path: Path, lab: LabInfo, kms_key: str, prefix: str) -> Path:
    text = (REPO_ROOT / "tests/data/plans/good/inventory.yaml").read_text()
    text = text.replace(
        "    path: replica\n",
        "    path: replica\n  - name: vault\n    kind: s3\n"
        f"    bucket: {lab.s3.bucket}\n    prefix: {prefix}/\n    endpoint_url: {lab.s3.endpoint_url}\n",
    ).replace("key_ref: file:keys/replica.key", f"key_ref: kms:{kms_key}")
    text = text.replace("replica_store: local", "replica_store: vault")
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


def test_kms_store_rotates_and_restores_points_from_before_and_after(
    aws_env: LabInfo, kms_key: str, store: S3Store, tmp_path: Path
) -> None:
    repo = _open(store, kms_key)
    before = os.urandom(MiB)
    _ship(repo, before, "p0")
    first = repo.read_manifest("vm-a", "p0").key_id
    assert first.startswith("kms-")
    # Only the wrapped data key is stored: the plaintext key bytes are nowhere in the store.
    wrapped = json.loads(store.get(f"keys/{first}.json"))
    assert wrapped["kms_key_id"] == kms_key and repo.key.key not in store.get(f"keys/{first}.json")
    # A second opener (another worker) agrees on the same key without making a new one.
    assert _open(store, kms_key).key.key_id == first

    # Rotate through the CLI (the operator's door), against an inventory naming this store.
    inv = _inventory(tmp_path, aws_env, kms_key, store.prefix)
    result = CliRunner().invoke(app, ["keys", "rotate", "vault", "--json", "-i", str(inv)])
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.stdout)
    assert rotated["previous_key_id"] == first and rotated["key_id"] != first and rotated["keys_in_ring"] == 2
    assert json.loads(store.get(CURRENT_KEY))["key_id"] == rotated["key_id"]

    repo2 = _open(store, kms_key)
    assert repo2.key.key_id == rotated["key_id"]
    after = os.urandom(MiB)
    _ship(repo2, after, "p1")
    assert repo2.read_manifest("vm-a", "p1").key_id == rotated["key_id"]
    for point, data in (("p0", before), ("p1", after)):
        assert repo2.verify_point("vm-a", point).ok
        out = tmp_path / f"{point}.raw"
        repo2.restore_disk("vm-a", point, "disk0", out)
        assert out.read_bytes() == data


def test_disabled_kms_key_is_a_clear_error_naming_it(kms_key: str, store: S3Store) -> None:
    _ship(_open(store, kms_key), os.urandom(256 * 1024), "p0")
    boto3.client("kms").disable_key(KeyId=kms_key.rsplit("/", 1)[-1])
    with pytest.raises(KeyRefError) as refused:
        _open(store, kms_key)
    assert kms_key in str(refused.value) and "is disabled" in str(refused.value)
    assert "kms-" in str(refused.value)  # the data key id too
    boto3.client("kms").enable_key(KeyId=kms_key.rsplit("/", 1)[-1])
    assert _open(store, kms_key).read_manifest("vm-a", "p0").point_id == "p0"


def test_rotate_refuses_a_store_not_keyed_by_kms(aws_env: LabInfo, kms_key: str, tmp_path: Path) -> None:
    inv = _inventory(tmp_path, aws_env, kms_key, "unused")
    inv.write_text(inv.read_text().replace(f"key_ref: kms:{kms_key}", "key_ref: file:keys/replica.key"))
    result = CliRunner().invoke(app, ["keys", "rotate", "vault", "-i", str(inv)])
    assert result.exit_code == 2
    assert "previous_key_refs" in result.stderr
    result = CliRunner().invoke(app, ["keys", "rotate", "nope", "-i", str(inv)])
    assert result.exit_code == 2 and "no replica store named 'nope'" in result.stderr


def test_rotation_between_ship_and_commit_still_commits(kms_key: str, store: S3Store, tmp_path: Path) -> None:
    """A ship opened with the old key, a rotation, then the commit (a new activity, a new repository
    under the new key): the point is committed under the key its data is sealed with."""
    old = _open(store, kms_key)
    data = os.urandom(512 * 1024)
    shipped = old.ship(BytesSource(data), "vm-a", "disk0")
    KmsKeys(store, kms_key).rotate()
    new = _open(store, kms_key)
    assert new.key.key_id != old.key.key_id
    new.commit_point("vm-a", "p0", [shipped])
    assert new.read_manifest("vm-a", "p0").key_id == old.key.key_id
    out = tmp_path / "p0.raw"
    new.restore_disk("vm-a", "p0", "disk0", out)
    assert out.read_bytes() == data
