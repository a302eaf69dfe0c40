"""A recovery point's disk written into an EBS snapshot with the EBS direct API, idempotent by a key.

``start_snapshot`` (VolumeSize in GiB), ``put_snapshot_block`` for each *non-zero* block with its
SHA-256 (base64, ``ChecksumAlgorithm='SHA256'``), ``complete_snapshot`` with the count, then a
deterministic sample of blocks is read back (``get_snapshot_block``) and compared. The block size is
whatever ``start_snapshot`` answers (AWS: 512 KiB; moto: 512 B; the lab's moto: 64 KiB): the
restore's writes (64 KiB blocks, zero runs skipped) are regrouped into blocks of that size by
``BlockGrouper`` and put by ``put_blocks`` (both in ``ebs_blocks``). See
``seawall.sites.aws.target`` for what moto does differently and how that is tolerated.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from seawall.sites.aws.common import (
    TAG_KEY,
    AwsError,
    ResourceTags,
    SuppressNotFound,
    call,
    client_token,
    tag_value,
)
from seawall.sites.aws.ebs_blocks import RestoreFn, block_checksum, put_blocks

__all__ = ["EbsSnapshot", "write_ebs_snapshot"]

log = logging.getLogger(__name__)

GiB = 1024**3
TAG_BLOCK_SIZE = "seawall:block-size"
TAG_VERIFIED = "seawall:verified-blocks"  # set once the blocks were completed and read back
AWS_BLOCK_SIZE = 512 * 1024  # what AWS documents and answers; used when a snapshot lacks our tag
PLACEHOLDER_VOLUME = "vol-ffffffff"


@dataclass(frozen=True)
class EbsSnapshot:
    snapshot_id: str
    volume_size_gib: int
    block_size: int
    blocks_written: int  # non-zero blocks stored (listed by list_snapshot_blocks)
    blocks_checked: int  # blocks read back and compared
    reused: bool  # a completed snapshot of the same key was found; nothing was written


def _find_snapshots(ec2: Any, key: str) -> list[dict[str, Any]]:
    answer = call(
        "describe_snapshots",
        lambda: ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [key]}]
        ),
    )
    return list(answer.get("Snapshots", []))


def _block_size_of(snapshot: dict[str, Any]) -> int:
    value = tag_value(snapshot, TAG_BLOCK_SIZE) or ""
    return int(value) if value.isdigit() else AWS_BLOCK_SIZE


def _list_blocks(ebs: Any, snapshot_id: str) -> Iterator[tuple[int, str]]:
    kwargs: dict[str, Any] = {"SnapshotId": snapshot_id, "MaxResults": 10000}
    while True:
        answer = call("list_snapshot_blocks", lambda: ebs.list_snapshot_blocks(**kwargs))
        for block in answer.get("Blocks", []):
            yield int(block["BlockIndex"]), str(block["BlockToken"])
        token = answer.get("NextToken")
        if not token:
            return
        kwargs["NextToken"] = token


def _adopt_placeholder_volume(ec2: Any, snapshot: dict[str, Any], tags: list[dict[str, str]]) -> None:
    """Tag the volume an endpoint made for a direct-API snapshot (moto does), so cleanup finds it.

    Only a volume that is detached and untagged is adopted: a snapshot started from scratch has no
    real source volume, so anything else there is not ours.
    """
    volume_id = snapshot.get("VolumeId")
    if not volume_id or volume_id == PLACEHOLDER_VOLUME:
        return
    try:
        volumes = ec2.describe_volumes(VolumeIds=[volume_id]).get("Volumes", [])
    except ClientError:
        return
    for volume in volumes:
        if volume.get("State") == "available" and not volume.get("Attachments") and not volume.get("Tags"):
            call("create_tags", lambda: ec2.create_tags(Resources=[volume_id], Tags=tags))


def _wait_snapshot(ec2: Any, snapshot_id: str, timeout: float, sleep: Callable[[float], None]) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        snaps = call("describe_snapshots", lambda: ec2.describe_snapshots(SnapshotIds=[snapshot_id])).get(
            "Snapshots", []
        )
        state = snaps[0]["State"] if snaps else "missing"
        if state == "completed":
            return
        if state in ("error", "missing"):
            raise AwsError(f"snapshot {snapshot_id} is {state}")
        if time.monotonic() > deadline:
            raise AwsError(f"snapshot {snapshot_id} still {state} after {timeout:.0f}s")
        sleep(delay)
        delay = min(delay * 2, 10.0)


def write_ebs_snapshot(
    ebs: Any,
    ec2: Any,
    *,
    size: int,
    restore: RestoreFn,
    tags: ResourceTags,
    key: str,
    description: str = "",
    sample: int = 16,
    workers: int = 8,
    snapshot_timeout_minutes: int = 60,
    wait_timeout: float = 3600.0,
    on_progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> EbsSnapshot:
    """Write a disk into a new EBS snapshot with the EBS direct API; idempotent by ``key``.

    ``restore(writer)`` writes the disk's bytes at increasing offsets (zero runs may be skipped) and
    raises if the recovery point does not verify; only then is the snapshot completed, read back
    and tagged ``seawall:verified-blocks``. A retry returns a snapshot of ``key`` with that tag
    (``reused``), resumes one EC2 still shows pending by writing every block again (a block put is
    idempotent per index), and deletes any other attempt before starting afresh.
    """
    if size <= 0:
        raise ValueError("an EBS snapshot needs a disk of at least one byte")
    gib = -(-size // GiB)
    all_tags = tags.tags(key=key)
    existing = _find_snapshots(ec2, key)
    for snap in existing:
        if snap.get("State") == "completed" and tag_value(snap, TAG_VERIFIED) is not None:
            sid = str(snap["SnapshotId"])
            listed = sum(1 for _ in _list_blocks(ebs, sid))
            if str(listed) == tag_value(snap, TAG_VERIFIED):
                return EbsSnapshot(sid, int(snap["VolumeSize"]), _block_size_of(snap), listed, 0, reused=True)
    pending = [s for s in existing if s.get("State") == "pending"]
    # Anything else of this key is an attempt that did not finish verification. EC2's "completed"
    # does not prove the blocks are all there (moto reports it before complete_snapshot, and on
    # AWS a crash may fall between complete and verify), and a completed snapshot takes no more
    # blocks: it is deleted and a fresh one started.
    stale = sorted(str(s["SnapshotId"]) for s in existing if s not in pending)
    for snapshot_id in stale:
        with SuppressNotFound():
            ec2.delete_snapshot(SnapshotId=snapshot_id)
    # The token changes with what was thrown away, so AWS does not hand back a deleted snapshot.
    token = client_token(key + "".join(f"/{sid}" for sid in stale))
    if pending:
        snapshot_id = str(pending[0]["SnapshotId"])
        block_size = _block_size_of(pending[0])
        started = pending[0]
    else:
        description = description or f"seawall {tags.run} {tags.vm}"
        snapshot_id, block_size, started = _start(
            ebs, ec2, gib, all_tags, description, token, snapshot_timeout_minutes
        )
    _adopt_placeholder_volume(ec2, started, tags.tags(key=key + "/placeholder-volume"))
    written = put_blocks(ebs, snapshot_id, block_size, size, restore, token, sample, workers, on_progress)
    count, samples = written
    call("complete_snapshot", lambda: ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=count))
    _wait_snapshot(ec2, snapshot_id, wait_timeout, sleep)
    _read_back(ebs, snapshot_id, count, samples)
    # Only now may a retry reuse it.
    call(
        "create_tags",
        lambda: ec2.create_tags(Resources=[snapshot_id], Tags=[{"Key": TAG_VERIFIED, "Value": str(count)}]),
    )
    return EbsSnapshot(snapshot_id, gib, block_size, count, len(samples), reused=False)


def _start(
    ebs: Any,
    ec2: Any,
    gib: int,
    tags: list[dict[str, str]],
    description: str,
    token: str,
    timeout_minutes: int,
) -> tuple[str, int, dict[str, Any]]:
    """A new pending snapshot: its id, its block size (kept as a tag), and how EC2 describes it."""
    answer = call(
        "start_snapshot",
        lambda: ebs.start_snapshot(
            VolumeSize=gib,
            Tags=tags,
            Description=description,
            ClientToken=token,
            Timeout=timeout_minutes,
        ),
    )
    snapshot_id = str(answer["SnapshotId"])
    block_size = int(answer["BlockSize"])
    # Kept on the snapshot: a resumed attempt must regroup exactly as this one did, and a
    # pending snapshot cannot be asked (list_snapshot_blocks wants a completed one).
    call(
        "create_tags",
        lambda: ec2.create_tags(
            Resources=[snapshot_id], Tags=[{"Key": TAG_BLOCK_SIZE, "Value": str(block_size)}]
        ),
    )
    snaps = ec2.describe_snapshots(SnapshotIds=[snapshot_id]).get("Snapshots", [])
    return snapshot_id, block_size, snaps[0] if snaps else {}


def _read_back(ebs: Any, snapshot_id: str, count: int, samples: list[tuple[int, str]]) -> None:
    """The completed snapshot lists ``count`` blocks and the sampled ones read back as written."""
    # Count every listed block, keep tokens only for the sample (a 1 TiB disk lists 2M blocks).
    wanted = dict(samples)
    tokens: dict[int, str] = {}
    listed = 0
    for index, block_token in _list_blocks(ebs, snapshot_id):
        listed += 1
        if index in wanted:
            tokens[index] = block_token
    if listed != count:
        raise AwsError(f"snapshot {snapshot_id} lists {listed} blocks, {count} were written")
    for index, checksum in samples:
        if index not in tokens:
            raise AwsError(f"snapshot {snapshot_id} lacks block {index}")
        got = call(
            "get_snapshot_block",
            functools.partial(
                ebs.get_snapshot_block, SnapshotId=snapshot_id, BlockIndex=index, BlockToken=tokens[index]
            ),
        )
        data = got["BlockData"].read()
        if block_checksum(data) != checksum or got.get("Checksum", checksum) != checksum:
            raise AwsError(
                f"snapshot {snapshot_id} block {index} reads back different bytes than were written"
            )
