"""S3 Object Lock for S3Store: lock a point's objects, read a lock, delete every version of a key.

Kept apart from s3.py so the plain store stays small. With Object Lock the bucket is versioned: a
plain DELETE only hides an object behind a delete marker, and S3 refuses to delete a locked
*version* until its retain-until date (compliance: nobody can; governance: only a principal with
s3:BypassGovernanceRetention that asks for the bypass, which this store never does).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from seawall.blockstore.stores.backend import ObjectLockedError, StoreError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_ACCESS_CODES = frozenset({"AccessDenied", "403", "Forbidden"})


class S3ObjectLock:
    """Mixed into S3Store: everything it needs from the store is declared here."""

    bucket: str
    object_lock: bool
    _where: str
    _locks: dict[str, datetime]
    _client: S3Client

    if TYPE_CHECKING:  # S3Store's own methods; declared for the type checker only

        def _full(self, key: str) -> str: ...

        def _error(self, exc: BaseException, op: str, key: str | None = None) -> StoreError: ...

    def _delete_versions(self, key: str) -> None:
        """In a versioned bucket a plain DELETE only hides an object behind a marker (the data stays
        billed); removing every version frees it, and S3 refuses that for a locked version."""
        full = self._full(key)
        try:
            resp = self._client.list_object_versions(Bucket=self.bucket, Prefix=full)
        except Exception as exc:
            raise self._error(exc, "list versions", key) from exc
        entries = [*resp.get("Versions", []), *resp.get("DeleteMarkers", [])]
        for v in entries:
            if v.get("Key") != full:
                continue
            try:
                self._client.delete_object(Bucket=self.bucket, Key=full, VersionId=str(v["VersionId"]))
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in _ACCESS_CODES:
                    raise ObjectLockedError(key, self._where) from exc
                if code in {"NoSuchKey", "NoSuchVersion", "404"}:
                    continue
                raise self._error(exc, "delete version", key) from exc
            except Exception as exc:
                raise self._error(exc, "delete version", key) from exc
        self._locks.pop(key, None)

    def check_lock_support(self) -> None:
        """Fail unless the bucket has Object Lock enabled (it can only be turned on at creation or
        by AWS support, and versioning comes with it)."""
        if not self.object_lock:
            raise StoreError(f"{self._where}: the store is not configured for object lock")
        try:
            conf = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "ObjectLockConfigurationNotFoundError":
                raise StoreError(
                    f"S3 bucket {self.bucket!r} does not have Object Lock enabled ({self._where}): "
                    "create the bucket with object lock, or drop object_lock from the store"
                ) from exc
            raise self._error(exc, "get_object_lock_configuration") from exc
        except Exception as exc:
            raise self._error(exc, "get_object_lock_configuration") from exc
        if conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise StoreError(f"S3 bucket {self.bucket!r} does not have Object Lock enabled ({self._where})")

    def locked_until(self, key: str) -> datetime | None:
        """The retain-until date of the key's current version, None when it has no lock.

        Read from HEAD (the lock headers), which every S3 implementation answers, instead of
        GetObjectRetention, which errors for an object that has no retention."""
        try:
            resp = self._client.head_object(Bucket=self.bucket, Key=self._full(key))
        except Exception as exc:
            raise self._error(exc, "head", key) from exc
        until = resp.get("ObjectLockRetainUntilDate")
        if until is None:
            return None
        return until if until.tzinfo else until.replace(tzinfo=UTC)

    def lock(self, key: str, mode: str, until: datetime) -> None:
        if mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise ValueError(f"object lock mode must be GOVERNANCE or COMPLIANCE, not {mode!r}")
        known = self._locks.get(key)
        if known is not None and known >= until:
            return
        current = self.locked_until(key)
        if current is not None and current >= until:
            self._locks[key] = current
            return
        try:
            self._client.put_object_retention(
                Bucket=self.bucket,
                Key=self._full(key),
                Retention={"Mode": mode, "RetainUntilDate": until},  # type: ignore[misc,arg-type]
            )
        except Exception as exc:
            raise self._error(exc, "put_object_retention", key) from exc
        self._locks[key] = until
