"""The two file kinds (``kind: Inventory``, ``kind: RecoveryPlan``) and their schema: a file parsed
into its model, or pydantic's errors turned into located ones.

Pydantic's locations name discriminated-union tags that the file does not have, and its messages
name Python types; here they become the file's own paths and words (``unknown key 'nmae'; did you
mean 'name'?``), never echoing a secret field's value.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, Tag, ValidationError

from seawall.model import Inventory, RecoveryPlan
from seawall.plans.errors import Loc, PlanError, did_you_mean
from seawall.plans.yamlsource import Document, read_yaml


class InventoryFile(Inventory):
    """An inventory file: the inventory plus its header."""

    kind: Literal["Inventory"] = Field(description="this file is an inventory")
    version: Literal[1] = 1


class PlanFile(RecoveryPlan):
    """A plan file: one recovery plan, its header, and where its inventory is."""

    kind: Literal["RecoveryPlan"] = Field(description="this file is a recovery plan")
    version: Literal[1] = 1
    inventory: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="the inventory file, relative to this file"
    )


_FILE_KINDS: dict[str, type[BaseModel]] = {"Inventory": InventoryFile, "RecoveryPlan": PlanFile}


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the type that matters for a location."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [arg for arg in get_args(tp) if arg is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _explicit_tags(member: Any) -> dict[str, Any]:
    """``Annotated[Model, Tag("x")]`` members of a union with a callable discriminator (DNS zones)."""
    if get_origin(member) is not Annotated:
        return {}
    model, *metadata = get_args(member)
    return {meta.tag: model for meta in metadata if isinstance(meta, Tag)}


def _walk(model: type[BaseModel], loc: Loc) -> tuple[Loc, type[BaseModel] | None]:
    """Translate a pydantic error location into a file location.

    Pydantic puts the tag of a discriminated union into the location (``sites.0.vsphere.host``);
    the file has no such level. Walking the model types tells tags from keys. Also returns the model
    that holds the last key, for "did you mean" suggestions.
    """
    tp: Any = model
    clean: list[str | int] = []
    holder: type[BaseModel] | None = None
    for part in loc:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            by_tag = {}
            for member in get_args(tp):
                by_tag.update(_explicit_tags(member))
                member = _unwrap(member)
                if (
                    isinstance(member, type)
                    and issubclass(member, BaseModel)
                    and "kind" in member.model_fields
                ):
                    for tag in get_args(member.model_fields["kind"].annotation):
                        by_tag[tag] = member
            if part in by_tag:
                tp = by_tag[part]
                continue
            clean.append(part)
            tp = None
        elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
            clean.append(part)
            tp = get_args(tp)[0] if get_args(tp) else None
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            clean.append(part)
            holder = tp
            info = tp.model_fields.get(part)
            tp = info.annotation if info is not None else None
        else:
            clean.append(part)
            holder = None
            tp = None
    return tuple(clean), holder


_SECRET_FIELDS = {"credentials", "key_ref", "connection_string"}
_QUOTED = re.compile(r"'([^']*)'")


def _schema_errors(doc: Document, model: type[BaseModel], exc: ValidationError) -> list[PlanError]:
    errors = []
    for detail in exc.errors(include_url=False):
        loc, holder = _walk(model, tuple(detail["loc"]))
        kind = detail["type"]
        ctx = detail.get("ctx") or {}
        given = detail.get("input")
        message = str(detail["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            key = str(loc[-1]) if loc else "?"
            fields = list(holder.model_fields) if holder is not None else []
            message = f"unknown key '{key}'{did_you_mean(key, fields)}"
        elif kind == "missing":
            message = "required key is missing"
        elif kind in ("time_delta_parsing", "time_delta_type"):
            message = "not a duration: write e.g. 30s, 5m, 1h30m, 2d, or a number of seconds"
            if isinstance(given, str | int | float):
                message += f" (got {given!r})"
        elif kind == "seawall_dns_provider":
            loc = (*loc, "provider")
            got = given.get("provider") if isinstance(given, dict) else None
            message += f" (got {got!r})"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "kind")
            expected = _QUOTED.findall(str(ctx.get("expected_tags", "")))
            listed = ", ".join(f"'{tag}'" for tag in expected)
            if kind == "union_tag_not_found":
                message = f"'kind' is missing: one of {listed}"
            else:
                tag = str(ctx.get("tag", ""))
                message = f"unknown kind '{tag}': expected one of {listed}{did_you_mean(tag, expected)}"
        elif kind in ("literal_error", "enum") and isinstance(given, str):
            expected = _QUOTED.findall(str(ctx.get("expected", "")))
            message = f"{message} (got '{given}'){did_you_mean(given, expected)}"
        elif (
            not kind.startswith("seawall_")
            and isinstance(given, str | int | float | bool)
            and not _SECRET_FIELDS.intersection(str(part) for part in loc)
        ):
            # The value helps find the typo; secret fields never echo it (it may be the secret).
            message = f"{message} (got {given!r})"
        errors.append(doc.error(loc, message))
    return errors


def as_inventory(parsed: InventoryFile) -> Inventory:
    """The inventory without its file header (already validated: nothing is checked again)."""
    return Inventory.model_construct(**{name: getattr(parsed, name) for name in Inventory.model_fields})


def as_plan(parsed: PlanFile) -> RecoveryPlan:
    """The plan without its file header (already validated: nothing is checked again)."""
    return RecoveryPlan.model_construct(**{name: getattr(parsed, name) for name in RecoveryPlan.model_fields})


@dataclass
class ParsedFile:
    """One file read and validated against its kind's schema: the model, or the errors."""

    doc: Document | None
    model: InventoryFile | PlanFile | None
    errors: list[PlanError]


def parse_file(path: str | Path) -> ParsedFile:
    """Read a file, recognise its kind by its header, and validate it against that kind's schema."""
    doc, errors = read_yaml(path)
    if doc is None:
        return ParsedFile(None, None, errors)
    kind = doc.data.get("kind")
    if kind is None:
        return ParsedFile(
            doc, None, [doc.error((), "missing header: 'kind: Inventory' or 'kind: RecoveryPlan'")]
        )
    model_type = _FILE_KINDS.get(kind) if isinstance(kind, str) else None
    if model_type is None:
        message = f"unknown kind {kind!r}: expected 'Inventory' or 'RecoveryPlan'"
        message += did_you_mean(str(kind), _FILE_KINDS)
        return ParsedFile(doc, None, [doc.error(("kind",), message)])
    try:
        model = model_type.model_validate(doc.data)
    except ValidationError as exc:
        return ParsedFile(doc, None, _schema_errors(doc, model_type, exc))
    assert isinstance(model, InventoryFile | PlanFile)
    return ParsedFile(doc, model, [])
