"""Recover a VM into AWS: its disks become EBS snapshots (EBS direct API), then an AMI, then an instance.

Plain boto3, blocking, called from activity threads. Every resource is tagged with the plan, run and
source VM (``seawall:plan``/``seawall:run``/``seawall:vm``) plus ``seawall:key``, a deterministic
identity of that one resource; a retried call looks the key up first and finds what an earlier
attempt made, so it never makes a second one. ``terminate_run`` removes everything tagged with a run.

Disk upload: ``start_snapshot`` (VolumeSize in GiB), ``put_snapshot_block`` for each *non-zero*
block with its SHA-256 (base64, ``ChecksumAlgorithm='SHA256'``), ``complete_snapshot`` with the
count, then a deterministic sample of blocks is read back (``get_snapshot_block``) and compared. The
block size is whatever ``start_snapshot`` answers (AWS: 512 KiB; moto: 512 B): the restore's writes
(64 KiB blocks, zero runs skipped) are regrouped into blocks of that size by ``BlockGrouper``.
Nothing reads ``list_changed_blocks`` (moto's answer is not trustworthy). ``import_snapshot`` is not
used (moto does not implement it, and it needs an S3 staging copy of the whole disk).

Observed on moto 5.2 (the lab), which the code tolerates:

- ``start_snapshot`` ignores ``ClientToken`` (a repeat makes a second snapshot), EC2 shows the
  snapshot ``completed`` from the start (before any block or ``complete_snapshot``), and it creates a
  placeholder EC2 volume for each snapshot; lookups by tag give the idempotency, and the placeholder
  volume is tagged with the run so cleanup removes it too (on AWS the snapshot names vol-ffffffff).
- ``put_snapshot_block`` accepts a wrong checksum: the read-back sample is what verifies the data.
- ``register_image`` ignores the block device mappings and ``TagSpecifications`` (the AMI gets a
  fake 15 GiB root snapshot) and allows duplicate names: tags are added by ``create_tags`` after.
- ``run_instances`` ignores ``ClientToken`` and a ``client-token`` filter makes the server fail;
  instances are found by tag instead.
- A terminated instance keeps its private IP taken (moto frees it only when the object is garbage
  collected, and terminated instances stay listed): a planned address can be used once per moto
  process, and asking again answers an HTML 500 page (botocore ``ResponseParserError``), which is
  reported as ``AwsError``. AWS frees the address on termination.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

__all__ = [
    "AwsError",
    "BlockGrouper",
    "CleanupResult",
    "EbsSnapshot",
    "InstanceInfo",
    "ResourceTags",
    "block_checksum",
    "choose_instance_type",
    "client_token",
    "find_subnet",
    "register_image",
    "run_instance",
    "terminate_run",
    "wait_running",
    "write_ebs_snapshot",
]

log = logging.getLogger(__name__)

GiB = 1024**3
TAG_PLAN = "seawall:plan"
TAG_RUN = "seawall:run"
TAG_VM = "seawall:vm"
TAG_KEY = "seawall:key"
TAG_BLOCK_SIZE = "seawall:block-size"
TAG_VERIFIED = "seawall:verified-blocks"  # set once the blocks were completed and read back
AWS_BLOCK_SIZE = 512 * 1024  # what AWS documents and answers; used when a snapshot lacks our tag
PLACEHOLDER_VOLUME = "vol-ffffffff"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]

Writer = Callable[[int, bytes], None]
RestoreFn = Callable[[Writer], object]


class AwsError(Exception):
    """An AWS call failed or AWS holds something other than what Seawall expects."""


@dataclass(frozen=True)
class ResourceTags:
    """The tags every resource of one recovered VM carries."""

    plan: str
    run: str
    vm: str
    extra: dict[str, str] = field(default_factory=dict)

    def tags(self, key: str | None = None, name: str | None = None) -> list[dict[str, str]]:
        pairs = {TAG_PLAN: self.plan, TAG_RUN: self.run, TAG_VM: self.vm, **self.extra}
        if key is not None:
            pairs[TAG_KEY] = key
        if name is not None:
            pairs["Name"] = name
        return [{"Key": k, "Value": v} for k, v in sorted(pairs.items())]


def client_token(key: str) -> str:
    """A deterministic ClientToken for ``key`` (AWS allows at most 64 characters for EC2)."""
    return "seawall-" + hashlib.sha256(key.encode()).hexdigest()[:48]


def block_checksum(data: bytes) -> str:
    """Base64 SHA-256, as ``put_snapshot_block`` wants it."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ClientError as exc:
        raise AwsError(f"{what} failed: {_code(exc)}: {exc}") from exc
    except BotoCoreError as exc:
        # Connection failures, and endpoints that answer an error page instead of an AWS error
        # (moto does for a private IP that is taken): still our error type, with the reason.
        raise AwsError(f"{what} failed: {type(exc).__name__}: {str(exc)[:300]}") from exc


# ---- EBS block regrouping ---------------------------------------------------------------------


class BlockGrouper:
    """Regroup writes at increasing offsets into ``block_size``-aligned blocks; all-zero blocks dropped.

    Writes may be larger (64 KiB restore blocks into 512 B EBS blocks) or smaller (into 512 KiB
    blocks) than a block, and may leave gaps (zero runs a sparse restore skipped): gaps read as
    zeros, as an EBS block never written does. ``emit(index, data)`` gets each non-zero block, the
    last one padded with zeros to a full block. Call ``close`` after the last write.
    """

    def __init__(self, block_size: int, size: int, emit: Callable[[int, bytes], None]) -> None:
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self.block_size = block_size
        self.size = size
        self._emit = emit
        self._index = -1  # block being gathered
        self._buf = bytearray()
        self._dirty = False
        self._next = 0
        self.emitted = 0

    def _flush(self) -> None:
        if self._index >= 0 and self._dirty and any(self._buf):
            self._emit(self._index, bytes(self._buf))
            self.emitted += 1
        self._index = -1
        self._dirty = False

    def write(self, offset: int, data: bytes) -> None:
        if offset < self._next:
            raise ValueError(f"write at {offset} after {self._next}: writes must move forward")
        if offset + len(data) > self.size:
            raise ValueError(f"write past the disk's end ({offset + len(data)} > {self.size})")
        view = memoryview(data)
        pos = offset
        bs = self.block_size
        while view:
            index, within = divmod(pos, bs)
            if index != self._index:
                self._flush()
                self._index = index
                self._buf = bytearray(bs)
            n = min(len(view), bs - within)
            piece = view[:n]
            self._buf[within : within + n] = piece
            self._dirty = True
            view = view[n:]
            pos += n
            if within + n == bs:
                self._flush()
        self._next = offset + len(data)

    def close(self) -> None:
        self._flush()


# ---- snapshots --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EbsSnapshot:
    snapshot_id: str
    volume_size_gib: int
    block_size: int
    blocks_written: int  # non-zero blocks stored (listed by list_snapshot_blocks)
    blocks_checked: int  # blocks read back and compared
    reused: bool  # a completed snapshot of the same key was found; nothing was written


def _find_snapshots(ec2: Any, key: str) -> list[dict[str, Any]]:
    answer = _call(
        "describe_snapshots",
        lambda: ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [key]}]
        ),
    )
    return list(answer.get("Snapshots", []))


def _tag(resource: dict[str, Any], key: str) -> str | None:
    for tag in resource.get("Tags", []):
        if tag.get("Key") == key:
            return str(tag.get("Value", ""))
    return None


def _block_size_of(snapshot: dict[str, Any]) -> int:
    value = _tag(snapshot, TAG_BLOCK_SIZE) or ""
    return int(value) if value.isdigit() else AWS_BLOCK_SIZE


def _list_blocks(ebs: Any, snapshot_id: str) -> Iterator[tuple[int, str]]:
    kwargs: dict[str, Any] = {"SnapshotId": snapshot_id, "MaxResults": 10000}
    while True:
        answer = _call("list_snapshot_blocks", lambda: ebs.list_snapshot_blocks(**kwargs))
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
            _call("create_tags", lambda: ec2.create_tags(Resources=[volume_id], Tags=tags))


def _wait_snapshot(ec2: Any, snapshot_id: str, timeout: float, sleep: Callable[[float], None]) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        snaps = _call("describe_snapshots", lambda: ec2.describe_snapshots(SnapshotIds=[snapshot_id])).get(
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
        if snap.get("State") == "completed" and _tag(snap, TAG_VERIFIED) is not None:
            sid = str(snap["SnapshotId"])
            listed = sum(1 for _ in _list_blocks(ebs, sid))
            if str(listed) == _tag(snap, TAG_VERIFIED):
                return EbsSnapshot(sid, int(snap["VolumeSize"]), _block_size_of(snap), listed, 0, reused=True)
    pending = [s for s in existing if s.get("State") == "pending"]
    # Anything else of this key is an attempt that did not finish verification. EC2's "completed"
    # does not prove the blocks are all there (moto reports it before complete_snapshot, and on
    # AWS a crash may fall between complete and verify), and a completed snapshot takes no more
    # blocks: it is deleted and a fresh one started.
    stale = sorted(str(s["SnapshotId"]) for s in existing if s not in pending)
    for snapshot_id in stale:
        with _SuppressNotFound():
            ec2.delete_snapshot(SnapshotId=snapshot_id)
    # The token changes with what was thrown away, so AWS does not hand back a deleted snapshot.
    token = client_token(key + "".join(f"/{sid}" for sid in stale))
    if pending:
        snapshot_id = str(pending[0]["SnapshotId"])
        block_size = _block_size_of(pending[0])
        started = pending[0]
    else:
        answer = _call(
            "start_snapshot",
            lambda: ebs.start_snapshot(
                VolumeSize=gib,
                Tags=all_tags,
                Description=description or f"seawall {tags.run} {tags.vm}",
                ClientToken=token,
                Timeout=snapshot_timeout_minutes,
            ),
        )
        snapshot_id = str(answer["SnapshotId"])
        block_size = int(answer["BlockSize"])
        # Kept on the snapshot: a resumed attempt must regroup exactly as this one did, and a
        # pending snapshot cannot be asked (list_snapshot_blocks wants a completed one).
        _call(
            "create_tags",
            lambda: ec2.create_tags(
                Resources=[snapshot_id], Tags=[{"Key": TAG_BLOCK_SIZE, "Value": str(block_size)}]
            ),
        )
        snaps = ec2.describe_snapshots(SnapshotIds=[snapshot_id]).get("Snapshots", [])
        started = snaps[0] if snaps else {}
    _adopt_placeholder_volume(ec2, started, tags.tags(key=key + "/placeholder-volume"))
    written = _put_blocks(ebs, snapshot_id, block_size, size, restore, token, sample, workers, on_progress)
    count, samples = written
    _call(
        "complete_snapshot", lambda: ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=count)
    )
    _wait_snapshot(ec2, snapshot_id, wait_timeout, sleep)
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
        got = _call(
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
    # Only now may a retry reuse it.
    _call(
        "create_tags",
        lambda: ec2.create_tags(Resources=[snapshot_id], Tags=[{"Key": TAG_VERIFIED, "Value": str(count)}]),
    )
    return EbsSnapshot(snapshot_id, gib, block_size, count, len(samples), reused=False)


class _SuppressNotFound:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return isinstance(exc, ClientError) and "NotFound" in _code(exc)


def _put_blocks(
    ebs: Any,
    snapshot_id: str,
    block_size: int,
    size: int,
    restore: RestoreFn,
    seed: str,
    sample: int,
    workers: int,
    on_progress: Callable[[int], None] | None,
) -> tuple[int, list[tuple[int, str]]]:
    """Put every non-zero block; (blocks put, a reservoir sample of (index, checksum) to read back)."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, str]] = []
    first: tuple[int, str] | None = None
    last: tuple[int, str] | None = None
    seen = 0
    slots = threading.BoundedSemaphore(workers * 4)
    futures: list[Future[None]] = []
    errors: list[BaseException] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seawall-ebs-put")

    def put(index: int, data: bytes, checksum: str) -> None:
        try:
            answer = ebs.put_snapshot_block(
                SnapshotId=snapshot_id,
                BlockIndex=index,
                BlockData=data,
                DataLength=len(data),
                Checksum=checksum,
                ChecksumAlgorithm="SHA256",
            )
            if answer.get("Checksum", checksum) != checksum:
                raise AwsError(f"block {index} of {snapshot_id}: the service computed another checksum")
        except BaseException as exc:
            errors.append(exc)
        finally:
            slots.release()

    def failed() -> BaseException:
        err = errors[0]
        if isinstance(err, ClientError):
            return AwsError(f"put_snapshot_block into {snapshot_id} failed: {_code(err)}: {err}")
        return err

    def emit(index: int, data: bytes) -> None:
        nonlocal seen, first, last
        if errors:
            # Stops the restore at the first failed put instead of streaming the rest of the disk.
            raise failed()
        checksum = block_checksum(data)
        entry = (index, checksum)
        first = first or entry
        last = entry
        seen += 1
        if len(reservoir) < sample:
            reservoir.append(entry)
        else:
            j = rng.randrange(seen)
            if j < sample:
                reservoir[j] = entry
        slots.acquire()
        futures.append(pool.submit(put, index, data, checksum))
        if len(futures) > 4096:
            futures[:] = [f for f in futures if not f.done()]

    grouper = BlockGrouper(block_size, size, emit)
    next_report = 64 * 1024 * 1024

    def writer(offset: int, data: bytes) -> None:
        nonlocal next_report
        grouper.write(offset, data)
        if on_progress is not None and offset + len(data) >= next_report:
            on_progress(offset + len(data))
            next_report += 64 * 1024 * 1024

    try:
        restore(writer)
        grouper.close()
    finally:
        pool.shutdown(wait=True)
    if errors:
        raise failed()
    picks = {e[0]: e for e in reservoir}
    for edge in (first, last):
        if edge is not None:
            picks[edge[0]] = edge
    return grouper.emitted, sorted(picks.values())


# ---- images and instances ---------------------------------------------------------------------


def register_image(
    ec2: Any,
    *,
    name: str,
    snapshots: list[EbsSnapshot],
    tags: ResourceTags,
    key: str,
    architecture: str = "x86_64",
    boot_mode: str | None = None,
) -> str:
    """An AMI over ``snapshots`` (the first is the root disk, /dev/xvda; then xvdb, ...); its id.

    Idempotent by ``name`` (AWS keeps AMI names unique per account and region) and by the key tag.
    """
    if not snapshots:
        raise ValueError("an image needs at least a root snapshot")
    found = _call(
        "describe_images",
        lambda: ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]),
    ).get("Images", [])
    found = [i for i in found if i.get("State") not in ("deregistered", "failed")]
    if found:
        image_id = str(found[0]["ImageId"])
    else:
        mappings = [
            {
                "DeviceName": f"/dev/xvd{chr(ord('a') + i)}",
                "Ebs": {
                    "SnapshotId": s.snapshot_id,
                    "VolumeSize": s.volume_size_gib,
                    "DeleteOnTermination": True,
                    "VolumeType": "gp3",
                },
            }
            for i, s in enumerate(snapshots)
        ]
        extra: dict[str, Any] = {"BootMode": boot_mode} if boot_mode else {}
        answer = _call(
            "register_image",
            lambda: ec2.register_image(
                Name=name,
                Description=f"seawall {tags.run} {tags.vm}",
                Architecture=architecture,
                RootDeviceName="/dev/xvda",
                VirtualizationType="hvm",
                EnaSupport=True,
                BlockDeviceMappings=mappings,
                TagSpecifications=[{"ResourceType": "image", "Tags": tags.tags(key=key, name=name)}],
                **extra,
            ),
        )
        image_id = str(answer["ImageId"])
    # Again by create_tags: an endpoint may ignore TagSpecifications (moto does), and cleanup finds
    # images by tag.
    _call("create_tags", lambda: ec2.create_tags(Resources=[image_id], Tags=tags.tags(key=key, name=name)))
    return image_id


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    state: str
    private_ip: str | None
    subnet_id: str | None
    instance_type: str
    image_id: str
    tags: dict[str, str]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> InstanceInfo:
        return cls(
            instance_id=str(raw["InstanceId"]),
            state=str(raw.get("State", {}).get("Name", "unknown")),
            private_ip=raw.get("PrivateIpAddress"),
            subnet_id=raw.get("SubnetId"),
            instance_type=str(raw.get("InstanceType", "")),
            image_id=str(raw.get("ImageId", "")),
            tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
        )


def find_subnet(ec2: Any, name: str, vpc_id: str | None = None) -> str:
    """The id of the one subnet tagged ``Name=name`` (in ``vpc_id`` if given)."""
    filters = [{"Name": "tag:Name", "Values": [name]}]
    if vpc_id is not None:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    subnets = _call("describe_subnets", lambda: ec2.describe_subnets(Filters=filters)).get("Subnets", [])
    if len(subnets) != 1:
        raise AwsError(f"{len(subnets)} subnets are tagged Name={name}; expected exactly one")
    return str(subnets[0]["SubnetId"])


def _describe_instances(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Filters": filters}
    while True:
        answer = _call("describe_instances", lambda: ec2.describe_instances(**kwargs))
        for reservation in answer.get("Reservations", []):
            out.extend(reservation.get("Instances", []))
        token = answer.get("NextToken")
        if not token:
            return out
        kwargs["NextToken"] = token


def run_instance(
    ec2: Any,
    *,
    image_id: str,
    subnet_id: str,
    private_ip: str | None,
    instance_type: str,
    tags: ResourceTags,
    key: str,
    name: str | None = None,
    security_group_ids: list[str] | None = None,
) -> InstanceInfo:
    """Launch one instance (idempotent by ``key``: a live instance with that tag is returned)."""
    live = _describe_instances(
        ec2,
        [
            {"Name": f"tag:{TAG_KEY}", "Values": [key]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ],
    )
    if live:
        return InstanceInfo.of(live[0])
    params: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": subnet_id,
        "ClientToken": client_token(key),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags.tags(key=key, name=name)},
            {"ResourceType": "volume", "Tags": tags.tags(key=key + "/volume", name=name)},
        ],
    }
    if private_ip is not None:
        params["PrivateIpAddress"] = private_ip
        holders = _describe_instances(
            ec2,
            [
                {"Name": "subnet-id", "Values": [subnet_id]},
                {"Name": "private-ip-address", "Values": [private_ip]},
                {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]},
            ],
        )
        if holders:
            raise AwsError(
                f"{private_ip} in {subnet_id} is taken by {holders[0]['InstanceId']}, "
                "not by this run's instance"
            )
    if security_group_ids:
        params["SecurityGroupIds"] = security_group_ids
    answer = _call("run_instances", lambda: ec2.run_instances(**params))
    instance = InstanceInfo.of(answer["Instances"][0])
    if private_ip is not None and instance.private_ip != private_ip:
        raise AwsError(f"instance {instance.instance_id} got {instance.private_ip}, not {private_ip}")
    return instance


def wait_running(
    ec2: Any, instance_id: str, *, timeout: float = 600.0, sleep: Callable[[float], None] = time.sleep
) -> InstanceInfo:
    deadline = time.monotonic() + timeout
    delay = 1.0
    while True:
        found = _describe_instances(ec2, [{"Name": "instance-id", "Values": [instance_id]}])
        if not found:
            raise AwsError(f"instance {instance_id} does not exist")
        info = InstanceInfo.of(found[0])
        if info.state == "running":
            return info
        if info.state in ("shutting-down", "terminated", "stopping", "stopped"):
            raise AwsError(f"instance {instance_id} is {info.state}, not starting")
        if time.monotonic() > deadline:
            raise AwsError(f"instance {instance_id} still {info.state} after {timeout:.0f}s")
        sleep(delay)
        delay = min(delay * 2, 10.0)


@dataclass
class CleanupResult:
    instances: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.instances or self.images or self.snapshots or self.volumes)


def terminate_run(
    ec2: Any, run_id: str, *, timeout: float = 600.0, sleep: Callable[[float], None] = time.sleep
) -> CleanupResult:
    """Delete everything tagged ``seawall:run=run_id``: instances, then AMIs, snapshots, volumes.

    Idempotent (a second call finds nothing). Order matters on AWS: an AMI must go before its
    snapshots, and an instance's volumes are only free once it is terminated.
    """
    run_filter = [{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
    result = CleanupResult()
    instances = _describe_instances(
        ec2, [*run_filter, {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]}]
    )
    ids = [str(i["InstanceId"]) for i in instances]
    if ids:
        _call("terminate_instances", lambda: ec2.terminate_instances(InstanceIds=ids))
        result.instances = ids
        deadline = time.monotonic() + timeout
        while True:
            left = [
                i
                for i in _describe_instances(ec2, [{"Name": "instance-id", "Values": ids}])
                if i.get("State", {}).get("Name") != "terminated"
            ]
            if not left:
                break
            if time.monotonic() > deadline:
                raise AwsError(f"instances {', '.join(i['InstanceId'] for i in left)} not terminated")
            sleep(2.0)
    images = _call("describe_images", lambda: ec2.describe_images(Owners=["self"], Filters=run_filter))
    for image in images.get("Images", []):
        with _SuppressNotFound():
            ec2.deregister_image(ImageId=image["ImageId"])
            result.images.append(str(image["ImageId"]))
    snaps = _call("describe_snapshots", lambda: ec2.describe_snapshots(OwnerIds=["self"], Filters=run_filter))
    for snap in snaps.get("Snapshots", []):
        with _SuppressNotFound():
            ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])
            result.snapshots.append(str(snap["SnapshotId"]))
    volumes = _call("describe_volumes", lambda: ec2.describe_volumes(Filters=run_filter))
    for volume in volumes.get("Volumes", []):
        if volume.get("State") in ("available", "error"):
            with _SuppressNotFound():
                ec2.delete_volume(VolumeId=volume["VolumeId"])
                result.volumes.append(str(volume["VolumeId"]))
    return result


# (vCPUs, MiB) of general-purpose and memory-optimised sizes, smallest first per family.
_INSTANCE_TYPES: list[tuple[str, int, int]] = [
    ("t3.micro", 2, 1024),
    ("t3.small", 2, 2048),
    ("t3.medium", 2, 4096),
    ("m6i.large", 2, 8192),
    ("r6i.large", 2, 16384),
    ("m6i.xlarge", 4, 16384),
    ("r6i.xlarge", 4, 32768),
    ("m6i.2xlarge", 8, 32768),
    ("r6i.2xlarge", 8, 65536),
    ("m6i.4xlarge", 16, 65536),
    ("r6i.4xlarge", 16, 131072),
    ("m6i.8xlarge", 32, 131072),
    ("r6i.8xlarge", 32, 262144),
    ("m6i.16xlarge", 64, 262144),
    ("r6i.16xlarge", 64, 524288),
    ("m6i.32xlarge", 128, 524288),
    ("r6i.32xlarge", 128, 1048576),
]


def choose_instance_type(cpus: int, memory_mib: int) -> str:
    """The smallest listed type with at least ``cpus`` vCPUs and ``memory_mib`` MiB."""
    fits = [t for t in _INSTANCE_TYPES if t[1] >= cpus and t[2] >= memory_mib]
    if not fits:
        raise AwsError(f"no instance type has {cpus} vCPUs and {memory_mib} MiB; give instance_type")
    return min(fits, key=lambda t: (t[2], t[1]))[0]
