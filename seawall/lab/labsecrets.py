"""The lab's credential files and replica key, written into the state dir for inventories to reference.

Inventories name them (``file:``) rather than holding secrets; ``parts.py`` hands the cloud parts'
paths to their set-up and ``manager.up`` writes them. Separate so both can import them without a cycle.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from seawall.lab import config as c


def credentials_path(state: Path, name: str) -> Path:
    return state / "credentials" / f"{name}.json"


def replica_key_path(state: Path) -> Path:
    return state / "keys" / "replica.key"


def write_secrets(state: Path) -> None:
    """Lab credentials as files, so inventories reference them (``file:``) instead of holding them."""
    files = {
        "primary": {"user": c.VSPHERE_USER, "password": c.VSPHERE_PASSWORD},
        "dr": {"user": c.VSPHERE_USER, "password": c.VSPHERE_PASSWORD},
        "aws": {"aws_access_key_id": c.AWS_KEY_ID, "aws_secret_access_key": c.AWS_SECRET},
        "azure": {"account_name": c.AZURITE_ACCOUNT, "account_key": c.AZURITE_KEY},
    }
    for name, data in files.items():
        c.write_json_atomic(credentials_path(state, name), data, mode=0o600)
    key = replica_key_path(state)
    if not key.exists():
        # Made once and kept: a new key would make every replica already written unreadable.
        key.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
