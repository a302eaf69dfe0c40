"""Plan and inventory errors: one problem located at a file's line, and the plain domain errors of
looking a plan up by name.

The lookup errors (``InventoryInvalid``, ``PlanNotFound``, ``PlanInvalid``) say what went wrong and
nothing about who asked: each door maps them to its own answer (the API to 404/422/500 problems, the
activities to non-retryable ``ApplicationError``s, the CLI to exit code 2).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Loc = tuple[str | int, ...]
"""A path into a model or a document: keys and list indexes."""


@dataclass(frozen=True, order=True)
class PlanError:
    """One problem in a file, at a 1-based line; ``field`` is a dotted/indexed path or empty."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:"
        return f"{where} {self.field}: {self.message}" if self.field else f"{where} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class PlanValidationError(Exception):
    """A plan or inventory is invalid; ``errors`` says where and why."""

    def __init__(self, errors: Sequence[PlanError]) -> None:
        self.errors = sorted(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


@dataclass(frozen=True)
class Problem:
    """A semantic problem in a model, not yet tied to a file: ``loc`` is its path in the model."""

    loc: Loc
    message: str

    @property
    def field(self) -> str:
        return format_loc(self.loc)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.loc else self.message


def format_loc(loc: Iterable[str | int]) -> str:
    """``('groups', 1, 'vms', 0, 'name')`` -> ``groups[1].vms[0].name``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest candidate, or nothing: appended to a message."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""


class PlanLookupError(Exception):
    """Looking a plan up by name failed: the base of the three below, for a door that maps them alike."""


class InventoryInvalid(PlanLookupError):
    """The configured inventory is invalid, so no plan can be looked up."""

    def __init__(self, errors: Sequence[PlanError]) -> None:
        self.errors = list(errors)
        super().__init__("inventory is invalid: " + "; ".join(map(str, self.errors[:5])))


class PlanNotFound(PlanLookupError):
    """No plan has this name: not inline in the inventory, not in a plan file of ``folder``.

    ``in_files`` names the plans of the plan files, in file order, as their headers spell them.
    """

    def __init__(self, name: str, folder: Path, in_files: Sequence[str]) -> None:
        self.name, self.folder, self.in_files = name, folder, list(in_files)
        listed = ", ".join(self.in_files) or "none"
        super().__init__(f"no recovery plan named {name!r} (plans: {listed} in {folder})")


class PlanInvalid(PlanLookupError):
    """The plan exists but does not validate (schema or references); ``errors`` says where and why."""

    def __init__(self, name: str, errors: Sequence[PlanError]) -> None:
        self.name, self.errors = name, list(errors)
        super().__init__(f"plan {name!r} is invalid: " + "; ".join(map(str, self.errors[:5])))
