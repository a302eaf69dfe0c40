"""EBS block regrouping, checksums, and the snapshot writer against an in-memory EBS with 512 KiB blocks."""

from __future__ import annotations

import base64
import hashlib
import io
import random
from typing import Any

import pytest
from botocore.exceptions import ClientError

from seawall.sites.aws import common as aws_common
from seawall.sites.aws import ebs as aws_ebs
from seawall.sites.aws import ebs_blocks
from seawall.sites.aws import target as aws

KiB = 1024


def _grouped(block_size: int, size: int, writes: list[tuple[int, bytes]]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}

    def emit(index: int, data: bytes) -> None:
        assert index not in out, "each block is emitted once"
        assert len(data) == block_size
        out[index] = data

    grouper = ebs_blocks.BlockGrouper(block_size, size, emit)
    for offset, data in writes:
        grouper.write(offset, data)
    grouper.close()
    assert grouper.emitted == len(out)
    return out


def _image(blocks: dict[int, bytes], block_size: int, size: int) -> bytes:
    image = bytearray(-(-size // block_size) * block_size)
    for index, data in blocks.items():
        image[index * block_size : (index + 1) * block_size] = data
    return bytes(image[:size])


def _restore_writes(disk: bytes, block: int = 64 * KiB) -> list[tuple[int, bytes]]:
    """What Repository.restore_disk(sparse=True) hands a writer: 64 KiB blocks, zero blocks skipped."""
    return [(o, disk[o : o + block]) for o in range(0, len(disk), block) if any(disk[o : o + block])]


def _disk(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    data = bytearray(size)
    for start in range(0, size, 16 * KiB):
        kind = rng.randrange(4)
        if kind == 0:
            continue  # zeros
        piece = rng.randbytes(16 * KiB) if kind == 1 else bytes(16 * KiB)
        if kind == 2:
            piece = b"\x01" + bytes(16 * KiB - 1)  # one non-zero byte at the start of a region
        if kind == 3:
            piece = bytes(16 * KiB - 1) + b"\x02"  # ... and at its end
        data[start : start + 16 * KiB] = piece[: size - start]
    return bytes(data)


@pytest.mark.parametrize("block_size", [512, 4 * KiB, 64 * KiB, 512 * KiB])
def test_regrouping_keeps_the_disk_and_drops_zero_blocks(block_size: int) -> None:
    size = 3 * 1024 * KiB + 5 * KiB  # not a multiple of the EBS block size
    disk = _disk(size)
    blocks = _grouped(block_size, size, _restore_writes(disk))
    assert _image(blocks, block_size, size) == disk
    expected = {i // block_size for i in range(0, size, block_size) if any(disk[i : i + block_size])}
    assert set(blocks) == expected
    assert all(any(b) for b in blocks.values())


def test_small_blocks_split_a_write_and_large_blocks_gather_writes() -> None:
    size = 1024 * KiB
    disk = bytes([7]) * size
    assert len(_grouped(512, size, [(0, disk)])) == 2048
    assert len(_grouped(512 * KiB, size, _restore_writes(disk))) == 2


def test_the_last_partial_block_is_padded_with_zeros() -> None:
    blocks = _grouped(512, 1000, [(0, b"\xff" * 1000)])
    assert sorted(blocks) == [0, 1]
    assert blocks[1] == b"\xff" * 488 + bytes(24)


def test_writes_must_move_forward_and_stay_inside_the_disk() -> None:
    grouper = ebs_blocks.BlockGrouper(512, 4096, lambda i, d: None)
    grouper.write(1024, b"x" * 10)
    with pytest.raises(ValueError, match="must move forward"):
        grouper.write(0, b"y")
    with pytest.raises(ValueError, match="past the disk's end"):
        grouper.write(4000, b"z" * 200)


def test_checksum_is_base64_sha256_and_tokens_are_deterministic() -> None:
    data = b"seawall" * 100
    assert ebs_blocks.block_checksum(data) == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert base64.b64decode(ebs_blocks.block_checksum(data)) == hashlib.sha256(data).digest()
    token = aws_common.client_token("run/vm/disk0")
    assert token == aws_common.client_token("run/vm/disk0") != aws_common.client_token("run/vm/disk1")
    assert len(token) <= 64


def test_instance_type_is_the_smallest_that_fits() -> None:
    assert aws.choose_instance_type(1, 512) == "t3.micro"
    assert aws.choose_instance_type(2, 8192) == "m6i.large"
    assert aws.choose_instance_type(4, 20000) == "r6i.xlarge"
    with pytest.raises(aws_common.AwsError, match="no instance type"):
        aws.choose_instance_type(1000, 1024)


# ---- the snapshot writer against an in-memory EBS ------------------------------------------------


def _not_found(op: str) -> ClientError:
    return ClientError({"Error": {"Code": "InvalidSnapshot.NotFound", "Message": "gone"}}, op)


class FakeAws:
    """Just enough EBS direct API + EC2 to drive write_ebs_snapshot; behaves like AWS, not like moto."""

    def __init__(self, block_size: int = 512 * KiB) -> None:
        self.block_size = block_size
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, dict[int, bytes]] = {}
        self.puts = 0
        self.tokens: dict[str, str] = {}
        self.corrupt_on_read: set[int] = set()
        self.started = 0
        self.fail_puts: set[int] = set()

    # ebs
    def start_snapshot(self, VolumeSize: int, Tags: list[dict[str, str]], ClientToken: str, **_: Any) -> Any:
        if ClientToken in self.tokens:
            sid = self.tokens[ClientToken]
        else:
            sid = f"snap-{self.started:04d}"
            self.started += 1
            self.tokens[ClientToken] = sid
            self.snapshots[sid] = {
                "SnapshotId": sid,
                "State": "pending",
                "VolumeSize": VolumeSize,
                "VolumeId": aws_ebs.PLACEHOLDER_VOLUME,
                "Tags": list(Tags),
            }
            self.blocks[sid] = {}
        return {"SnapshotId": sid, "BlockSize": self.block_size, "Status": "pending"}

    def put_snapshot_block(self, SnapshotId: str, BlockIndex: int, BlockData: bytes, **kw: Any) -> Any:
        assert kw["ChecksumAlgorithm"] == "SHA256" and kw["DataLength"] == len(BlockData) == self.block_size
        if BlockIndex in self.fail_puts:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "put")
        if self.snapshots[SnapshotId]["State"] != "pending":
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "not pending"}}, "put")
        if kw["Checksum"] != ebs_blocks.block_checksum(BlockData):
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "checksum"}}, "put")
        self.puts += 1
        self.blocks[SnapshotId][BlockIndex] = BlockData
        return {"Checksum": kw["Checksum"], "ChecksumAlgorithm": "SHA256"}

    def complete_snapshot(self, SnapshotId: str, ChangedBlocksCount: int) -> Any:
        assert ChangedBlocksCount == len(self.blocks[SnapshotId])
        self.snapshots[SnapshotId]["State"] = "completed"
        return {"Status": "completed"}

    def list_snapshot_blocks(
        self, SnapshotId: str, MaxResults: int = 100, NextToken: str | None = None
    ) -> Any:
        indexes = sorted(self.blocks[SnapshotId])
        start = int(NextToken or 0)
        page = indexes[start : start + MaxResults]
        answer: dict[str, Any] = {
            "Blocks": [{"BlockIndex": i, "BlockToken": f"t{i}"} for i in page],
            "BlockSize": self.block_size,
        }
        if start + MaxResults < len(indexes):
            answer["NextToken"] = str(start + MaxResults)
        return answer

    def get_snapshot_block(self, SnapshotId: str, BlockIndex: int, BlockToken: str) -> Any:
        assert BlockToken == f"t{BlockIndex}"
        data = self.blocks[SnapshotId][BlockIndex]
        checksum = ebs_blocks.block_checksum(data)
        if BlockIndex in self.corrupt_on_read:
            data = b"\xee" + data[1:]
        return {"BlockData": io.BytesIO(data), "Checksum": checksum, "DataLength": len(data)}

    # ec2
    def describe_snapshots(self, **kw: Any) -> Any:
        found = list(self.snapshots.values())
        if "SnapshotIds" in kw:
            found = [s for s in found if s["SnapshotId"] in kw["SnapshotIds"]]
        for f in kw.get("Filters", []):
            key = f["Name"].removeprefix("tag:")
            found = [
                s for s in found if any(t["Key"] == key and t["Value"] in f["Values"] for t in s["Tags"])
            ]
        return {"Snapshots": [dict(s) for s in found]}

    def create_tags(self, Resources: list[str], Tags: list[dict[str, str]]) -> None:
        for rid in Resources:
            snap = self.snapshots[rid]
            keys = {t["Key"] for t in Tags}
            snap["Tags"] = [t for t in snap["Tags"] if t["Key"] not in keys] + list(Tags)

    def delete_snapshot(self, SnapshotId: str) -> None:
        if SnapshotId not in self.snapshots:
            raise _not_found("DeleteSnapshot")
        del self.snapshots[SnapshotId]


def _restore(disk: bytes) -> ebs_blocks.RestoreFn:
    def restore(writer: ebs_blocks.Writer) -> object:
        for offset, data in _restore_writes(disk):
            writer(offset, data)
        return None

    return restore


TAGS = aws_common.ResourceTags(plan="erp", run="r1", vm="db-01")


def test_writes_only_non_zero_aws_sized_blocks_and_reads_a_sample_back() -> None:
    fake = FakeAws()
    size = 5 * 1024 * KiB + 3 * KiB
    disk = _disk(size, seed=3)
    snap = aws_ebs.write_ebs_snapshot(
        fake, fake, size=size, restore=_restore(disk), tags=TAGS, key="r1/db-01/d0"
    )
    assert (snap.block_size, snap.volume_size_gib, snap.reused) == (512 * KiB, 1, False)
    assert _image(fake.blocks[snap.snapshot_id], 512 * KiB, size) == disk
    assert snap.blocks_written == len(fake.blocks[snap.snapshot_id]) == fake.puts
    assert snap.blocks_checked >= 2
    tags = {t["Key"]: t["Value"] for t in fake.snapshots[snap.snapshot_id]["Tags"]}
    assert tags["seawall:run"] == "r1" and tags["seawall:key"] == "r1/db-01/d0"
    assert tags["seawall:verified-blocks"] == str(snap.blocks_written)

    again = aws_ebs.write_ebs_snapshot(
        fake, fake, size=size, restore=_restore(b""), tags=TAGS, key="r1/db-01/d0"
    )
    assert again.reused and again.snapshot_id == snap.snapshot_id
    assert fake.puts == snap.blocks_written, "a verified snapshot is not written again"


def test_a_block_that_reads_back_differently_fails_the_write() -> None:
    fake = FakeAws(block_size=64 * KiB)
    disk = bytes([9]) * (256 * KiB)
    fake.corrupt_on_read = {0, 1, 2, 3}
    with pytest.raises(aws_common.AwsError, match="reads back different bytes"):
        aws_ebs.write_ebs_snapshot(fake, fake, size=len(disk), restore=_restore(disk), tags=TAGS, key="k")
    (snapshot,) = fake.snapshots.values()
    assert "seawall:verified-blocks" not in {t["Key"] for t in snapshot["Tags"]}


def test_a_failed_restore_leaves_a_pending_snapshot_that_the_retry_resumes() -> None:
    fake = FakeAws()
    disk = _disk(2 * 1024 * KiB, seed=5)

    def broken(writer: ebs_blocks.Writer) -> object:
        writer(0, disk[: 64 * KiB] or b"\x01")
        raise RuntimeError("block 3 does not verify")

    with pytest.raises(RuntimeError, match="does not verify"):
        aws_ebs.write_ebs_snapshot(fake, fake, size=len(disk), restore=broken, tags=TAGS, key="k")
    (first,) = fake.snapshots
    assert fake.snapshots[first]["State"] == "pending"
    snap = aws_ebs.write_ebs_snapshot(fake, fake, size=len(disk), restore=_restore(disk), tags=TAGS, key="k")
    assert snap.snapshot_id == first and not snap.reused
    assert _image(fake.blocks[first], 512 * KiB, len(disk)) == disk


def test_an_unverified_completed_snapshot_is_replaced() -> None:
    fake = FakeAws()
    disk = _disk(1024 * KiB, seed=6)
    snap = aws_ebs.write_ebs_snapshot(fake, fake, size=len(disk), restore=_restore(disk), tags=TAGS, key="k")
    # A crash between complete_snapshot and the read-back: completed, never verified.
    fake.snapshots[snap.snapshot_id]["Tags"] = [
        t for t in fake.snapshots[snap.snapshot_id]["Tags"] if t["Key"] != "seawall:verified-blocks"
    ]
    again = aws_ebs.write_ebs_snapshot(fake, fake, size=len(disk), restore=_restore(disk), tags=TAGS, key="k")
    assert again.snapshot_id != snap.snapshot_id and not again.reused
    assert list(fake.snapshots) == [again.snapshot_id]


def test_a_failed_block_put_is_an_aws_error_and_the_snapshot_stays_incomplete() -> None:
    fake = FakeAws(block_size=64 * KiB)
    disk = bytes([3]) * (1024 * KiB)
    fake.fail_puts = {2}
    with pytest.raises(
        aws_common.AwsError, match="put_snapshot_block into snap-0000 failed: ThrottlingException"
    ):
        aws_ebs.write_ebs_snapshot(
            fake, fake, size=len(disk), restore=_restore(disk), tags=TAGS, key="k", workers=1
        )
    assert fake.snapshots["snap-0000"]["State"] == "pending"
