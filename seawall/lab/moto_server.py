"""moto's server with its S3 objects kept on disk: a restarted moto still holds every replica.

moto 5 keeps its state in memory and has no persistence of its own. Its request recorder is no
substitute: replaying the log re-creates EC2 objects under new random ids (so later requests that
name the old ids fail) and the log grows with every write forever. So this launcher runs the very
server of ``python -m moto.server`` and mirrors S3 into a directory:

- every change to a bucket or an object (put, copy, completed multipart upload, delete) is written
  through to ``<data>/<bucket>/`` before moto answers, so an acknowledged write survives a SIGKILL;
- at start the directory is loaded back into moto before the port opens.

Two more changes to what moto answers: ``RegisterImage`` keeps the ``BootMode`` it is given
(``install_boot_mode``), and the EBS direct API's snapshots have 64 KiB blocks (``install_block_size``).

Kept: buckets and the current content of each object, its ETag and modification time. Not kept: object
metadata, tags and ACLs, older versions, unfinished multipart uploads, and every other service (EC2,
EBS, Route53): the lab's bootstrap re-creates its VPC, subnets and hosted zone after a restart (with
new ids, which lab.json is rewritten with); what recoveries made there is gone, as before. moto's
own reset (``/moto-api/reset``) empties memory only: the next start loads the mirror again.

It is run by path (``python .../moto_server.py --data DIR -H HOST -p PORT``) and imports nothing
from Seawall, so the moto process does not depend on which checkout's ``seawall`` is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

_HEADER_LIMIT = 64 * 1024


class S3Mirror:
    """``<data>/<bucket>/bucket.json`` and one file per object: a JSON header line, then the bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.loading = False

    def _bucket_dir(self, bucket: str) -> Path:
        return self.root / bucket

    def _object_path(self, bucket: str, key: str) -> Path:
        # Keys may hold '/', '..' or be longer than a file name: the file is named by the key's hash.
        return self._bucket_dir(bucket) / "objects" / hashlib.sha256(key.encode()).hexdigest()

    @staticmethod
    def _replace(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def bucket_created(self, backend: Any, bucket: str) -> None:
        if self.loading:
            return
        with self.lock:
            found = backend.buckets.get(bucket)
            if found is None:
                return
            (self._bucket_dir(bucket) / "objects").mkdir(parents=True, exist_ok=True)
            meta = {
                "account": backend.account_id,
                "partition": backend.partition,
                "region": found.region_name,
            }
            self._replace(self._bucket_dir(bucket) / "bucket.json", json.dumps(meta).encode())

    def bucket_deleted(self, backend: Any, bucket: str) -> None:
        with self.lock:
            if bucket in backend.buckets:
                return  # not deleted (it was not empty)
            directory = self._bucket_dir(bucket)
            (directory / "bucket.json").unlink(missing_ok=True)
            for path in (directory / "objects").glob("*"):
                path.unlink()
            for path in (directory / "objects", directory):
                if path.is_dir():
                    path.rmdir()

    def object_changed(self, backend: Any, bucket: str, key: str) -> None:
        """Write what moto now holds under ``key`` (or remove it): the state, not the request."""
        if self.loading:
            return
        with self.lock:
            found = backend.buckets.get(bucket)
            current = found.keys.get(key) if found is not None else None
            path = self._object_path(bucket, key)
            # A delete marker (versioned bucket) or nothing: the object is gone.
            if current is None or not hasattr(current, "value"):
                path.unlink(missing_ok=True)
                return
            header = {
                "key": key,
                "etag": current.etag.strip('"'),
                "last_modified": current.last_modified.isoformat(),
            }
            try:
                value = current.value
            except ValueError:
                # A concurrent put replaced this version (moto closes its buffer) while we read it:
                # that put mirrors its own, newer version right after us.
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self._replace(path, json.dumps(header).encode() + b"\n" + value)

    def load(self, backends: Any, put_object: Any, create_bucket: Any) -> tuple[int, int]:
        """Every kept bucket and object back into moto; returns (buckets, objects)."""
        self.loading = True
        buckets = objects = 0
        try:
            for meta_path in sorted(self.root.glob("*/bucket.json")):
                meta = json.loads(meta_path.read_text())
                backend = backends[meta["account"]][meta["partition"]]
                name = meta_path.parent.name
                create_bucket(backend, name, meta["region"])
                buckets += 1
                for path in (meta_path.parent / "objects").glob("*"):
                    if path.name.startswith("."):
                        path.unlink()  # a write cut short by a kill: never acknowledged
                        continue
                    with path.open("rb") as handle:
                        header = json.loads(handle.readline(_HEADER_LIMIT))
                        body = handle.read()
                    key = put_object(
                        backend, name, header["key"], body, etag=header["etag"], disable_notification=True
                    )
                    key.last_modified = datetime.fromisoformat(header["last_modified"])
                    objects += 1
        finally:
            self.loading = False
        return buckets, objects


def install(mirror: S3Mirror) -> None:
    """Wrap moto's S3 backend so that every change it makes is mirrored, then load the mirror."""
    from moto.s3.models import S3Backend, s3_backends

    put_object, delete_object = S3Backend.put_object, S3Backend.delete_object
    create_bucket, delete_bucket = S3Backend.create_bucket, S3Backend.delete_bucket

    # Copies and completed multipart uploads go through put_object too; delete_objects through
    # delete_object. Wrapped at the class: moto creates its backends lazily, per account.
    # moto builds a PUT's response (ETag) from the key it just stored; a concurrent PUT of the same
    # key replaces it and closes its buffer in between (a 500 "I/O operation on closed file", more
    # likely now that each put also writes through to disk). PUTs of one key take turns; different
    # keys (striped over a few locks) still run side by side.
    from moto.s3.responses import S3Response

    key_put = S3Response._key_response_put
    stripes = [threading.Lock() for _ in range(64)]

    def key_put_in_turn(self: Any, query: Any, key_name: str) -> Any:
        bucket = str(getattr(self, "bucket_name", ""))
        with stripes[hash((bucket, key_name)) % len(stripes)]:
            return key_put(self, query, key_name)

    S3Response._key_response_put = key_put_in_turn  # type: ignore[method-assign]

    def put_object_kept(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        key = put_object(self, bucket_name, key_name, *args, **kwargs)
        mirror.object_changed(self, bucket_name, key_name)
        return key

    def delete_object_kept(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        result = delete_object(self, bucket_name, key_name, *args, **kwargs)
        mirror.object_changed(self, bucket_name, key_name)
        return result

    def create_bucket_kept(self: Any, bucket_name: str, *args: Any, **kwargs: Any) -> Any:
        bucket = create_bucket(self, bucket_name, *args, **kwargs)
        mirror.bucket_created(self, bucket_name)
        return bucket

    def delete_bucket_kept(self: Any, bucket_name: str) -> Any:
        result = delete_bucket(self, bucket_name)
        mirror.bucket_deleted(self, bucket_name)
        return result

    S3Backend.put_object = put_object_kept  # type: ignore[method-assign]
    S3Backend.delete_object = delete_object_kept  # type: ignore[method-assign]
    S3Backend.create_bucket = create_bucket_kept  # type: ignore[method-assign]
    S3Backend.delete_bucket = delete_bucket_kept  # type: ignore[method-assign]
    began = time.monotonic()
    buckets, objects = mirror.load(s3_backends, put_object, create_bucket)
    print(
        f"S3 kept in {mirror.root}: {buckets} bucket(s), {objects} object(s) loaded "
        f"in {time.monotonic() - began:.2f}s",
        file=sys.stderr,
        flush=True,
    )


def install_boot_mode() -> None:
    """moto's RegisterImage drops ``BootMode`` (every AMI reads back as its default): keep the one
    asked for, as EC2 does, so a recovery's boot mode (UEFI or legacy BIOS) can be read back."""
    from moto.ec2.responses.amis import AmisResponse

    register = AmisResponse.register_image

    def register_keeping_boot_mode(self: Any) -> Any:
        result = register(self)
        mode = self._get_param("BootMode")
        image_id = getattr(result, "result", {}).get("ImageId") if mode else None
        if image_id and image_id in self.ec2_backend.amis:
            self.ec2_backend.amis[image_id].boot_mode = mode
        return result

    AmisResponse.register_image = register_keeping_boot_mode  # type: ignore[method-assign]


EBS_BLOCK_SIZE = 64 * 1024


def install_block_size(size: int = EBS_BLOCK_SIZE) -> None:
    """moto's EBS snapshots answer a 512 B ``BlockSize`` (AWS: 512 KiB): a 4 MiB lab disk is then
    8,192 ``PutSnapshotBlock`` requests, minutes per recovery into AWS. 64 KiB cuts that 128-fold and
    is still smaller than the lab disks' all-zero regions, so skipping zero blocks stays exercised.
    Seawall writes in whatever block size ``StartSnapshot`` answers."""
    from moto.ebs import models

    init = models.EBSSnapshot.__init__

    def init_with_block_size(self: Any, account_id: str, snapshot: Any) -> None:
        init(self, account_id, snapshot)
        self.block_size = size

    models.EBSSnapshot.__init__ = init_with_block_size  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "--data":
        sys.exit("usage: moto_server.py --data DIR [moto.server options]")
    mirror = S3Mirror(Path(argv[1]).resolve())
    mirror.root.mkdir(parents=True, exist_ok=True)
    install(mirror)
    install_boot_mode()
    install_block_size()
    from moto.server import main as serve

    serve(argv[2:])


if __name__ == "__main__":
    # Run by path, Python puts this file's directory first on sys.path, where seawall/lab's modules
    # (config, info, ...) would shadow any same-named module moto imports.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    main(sys.argv[1:])
