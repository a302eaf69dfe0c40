"""A throwaway Temporal namespace on the lab's dev server, and raw access to the histories in it.

Every lab test shares ``seawall-site-<site>`` task queues, so a worker started by another test (or
another checkout) may take an activity of ours. For the codec and secret-scan tests that is fatal:
that worker lacks our payload keys, and its logs are not the ones we scan. Task queues are per
namespace, so a namespace of our own gives our worker all our tasks and nobody else's.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import cast

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, DeleteNamespaceRequest
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

from seawall.contract.search import SEARCH_ATTRIBUTES


@contextlib.asynccontextmanager
async def isolated_namespace(address: str, prefix: str) -> AsyncIterator[str]:
    """A fresh namespace with Seawall's search attributes; deleted (with its workflows) afterwards."""
    client = await Client.connect(address)
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace,
            description="throwaway namespace of one Seawall test run",
            workflow_execution_retention_period=Duration(seconds=24 * 3600),
        )
    )
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={
                key.name: cast(IndexedValueType.ValueType, int(key.indexed_value_type))
                for key in SEARCH_ATTRIBUTES
            },
        )
    )
    try:
        yield namespace
    finally:
        # Best effort: a namespace left behind only costs a row in the lab's SQLite file.
        with contextlib.suppress(RPCError):
            await client.operator_service.delete_namespace(DeleteNamespaceRequest(namespace=namespace))


async def raw_history(client: Client, workflow_id: str, run_id: str = "") -> list[HistoryEvent]:
    """Every event of a run exactly as the server stores it: no data converter, no codec involved."""
    events: list[HistoryEvent] = []
    token = b""
    while True:
        resp = await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                next_page_token=token,
            )
        )
        events.extend(resp.history.events)
        token = resp.next_page_token
        if not token:
            return events


async def all_runs(client: Client) -> list[tuple[str, str, str]]:
    """(workflow id, run id, workflow type) of every run in the client's namespace."""
    return [(wf.id, wf.run_id, wf.workflow_type) async for wf in client.list_workflows()]


def payloads_in(message: Message, *, skip: frozenset[str] = frozenset()) -> Iterator[tuple[str, Payload]]:
    """Every Payload inside ``message``, with its field path (``details[result].payloads``); fields named
    in ``skip`` are not entered."""
    for field, value in message.ListFields():
        if field.name in skip or field.message_type is None:
            continue
        items: list[tuple[str, object]]
        if field.message_type.GetOptions().map_entry:
            items = [(f"{field.name}[{key}]", item) for key, item in value.items()]
        elif isinstance(value, Message):
            items = [(field.name, value)]
        else:
            items = [(field.name, item) for item in value]
        for name, item in items:
            if isinstance(item, Payload):
                yield name, item
            elif isinstance(item, Message):
                for path, payload in payloads_in(item, skip=skip):
                    yield f"{name}.{path}", payload
