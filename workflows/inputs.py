"""Workflow inputs decoded leniently and validated inside the workflow.

A typed ``run(self, inp: Model)`` makes the SDK decode the input before any workflow code runs: a
wrong field from the Temporal UI (``{"mode": "tset"}``) then fails the *workflow task*, which Temporal
retries forever, and the run sits "Running" holding its id (a plan can start no new failover). Taking
the raw JSON and validating here fails the *run* at once, with the field named.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from seawall.contract.validation import INVALID_INPUT, validate

M = TypeVar("M", bound=BaseModel)


def decode_input(cls: type[M], raw: Any) -> M:
    """``raw`` (a JSON object, or the model itself) as ``cls``; else the run fails as InvalidInput."""
    try:
        return validate(cls, raw)
    except ValueError as exc:
        raise ApplicationError(f"invalid input: {exc}", type=INVALID_INPUT, non_retryable=True) from None
