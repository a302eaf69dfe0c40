"""The lab's client-side secrets, written where the example inventory's references point.

``examples/inventory.yaml`` names ``file:../.seawall/lab/credentials/<site>.json`` and
``file:../.seawall/lab/keys/replica.key``; the lab writes them (mode 0600) so the examples run as-is.
The replica key is made once and kept across `lab up`s: replacing it would make every existing
recovery point unreadable, exactly as it would in production.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from seawall.lab import config as c


def write_client_secrets(state: Path) -> None:
    creds = state / "credentials"
    c.write_json_atomic(
        creds / "aws.json",
        {"aws_access_key_id": c.AWS_KEY_ID, "aws_secret_access_key": c.AWS_SECRET},
        mode=0o600,
    )
    c.write_json_atomic(
        creds / "azure.json",
        {"account_name": c.AZURITE_ACCOUNT, "account_key": c.AZURITE_KEY},
        mode=0o600,
    )
    key = state / "keys" / "replica.key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.replace(tmp, key)
